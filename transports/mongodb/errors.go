package mongodb

import (
	"errors"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Error is a MongoDB request that failed: what was done and the driver's
// error, the password masked. It matches transport.ErrAccessRefused when
// the server refused the credentials or the operation (codes 13, 18).
type Error struct {
	Op   string
	Code int // MongoDB's error code, 0 when the server did not answer
	Err  error
}

func (e *Error) Error() string {
	if e.Code == 18 || e.Code == 13 {
		return "mongodb: " + e.Op + ": the server refused the credentials or the operation: " + e.Err.Error()
	}
	return "mongodb: " + e.Op + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Is(target error) bool {
	return target == transport.ErrAccessRefused && (e.Code == 18 || e.Code == 13)
}

func wrapErr(op string, err error, password string) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Err: err}
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, c := range []int{18, 13} {
			if se.HasErrorCode(c) {
				e.Code = c
			}
		}
	}
	if password != "" && strings.Contains(err.Error(), password) {
		e.Err = maskedError{msg: mask(err.Error(), password), err: err}
	}
	return e
}

func mask(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, "****")
}

type maskedError struct {
	msg string
	err error
}

func (e maskedError) Error() string { return e.msg }
func (e maskedError) Unwrap() error { return e.err }
