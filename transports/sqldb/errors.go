package sqldb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "modernc.org/sqlite"

	"github.com/kombu-go/kombu/runtime/transport"
)

// ErrLeaseLost is what a reject or requeue of a message fails with when
// the connection no longer holds the message's lease: another connection
// took it for dead (its lease ran out, see lease_timeout) and made the
// message ready again, or the row was deleted. The message may be
// delivered again. An ack, written in the background, logs it instead.
var ErrLeaseLost = errors.New("sqldb: the message's lease was lost; it may be delivered again")

// ErrForeignTx is what a publish under WithTx fails with when the
// transaction is not on the database the connection publishes to, or is
// not a transaction the package takes. It is transport.ErrPrecondition.
var ErrForeignTx = fmt.Errorf("sqldb: the transaction given to WithTx is not on this connection's database: %w", transport.ErrPrecondition)

// lostError is why a connection was lost: the database could not be
// reached. It is transport.ErrClosed, so that the runtime opens a new
// connection and does again what failed.
type lostError struct{ cause error }

func (e *lostError) Error() string { return "sqldb: connection lost: " + e.cause.Error() }

func (e *lostError) Unwrap() []error { return []error{transport.ErrClosed, e.cause} }

// unreachable reports whether err says that the database could not be
// reached or the connection to it broke: refused, reset, closed, a server
// shutting down or a backend terminated. An answer from the database (a
// constraint, a syntax error, a refused login), the caller's context
// ending and a closed pool are not.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin shutdown, crash shutdown, cannot connect now
			return true
		}
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1053, 1927, 2006, 2013: // server shutdown, connection killed, gone away, lost during query
			return true
		}
		return false
	}
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne *net.OpError
	return errors.As(err, &ne)
}

// refusedLogin reports whether err is the database refusing a login or a
// database: a wrong password, an unknown user or database.
func refusedLogin(err error) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000":
			return "the server refused the login (wrong user name or password)", true
		case "3D000":
			return "the database does not exist", true
		case "42501":
			return "the user may not connect to the database", true
		}
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045:
			return "the server refused the login (wrong user name or password)", true
		case 1049:
			return "the database does not exist", true
		case 1044:
			return "the user may not use the database", true
		}
	}
	return "", false
}

// noPrivilege reports whether err is the database refusing to create or
// change something for want of a privilege.
func noPrivilege(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "42501"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1142, 1044, 1227: // command denied, database access denied, need a privilege
			return true
		}
	}
	var se *sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 8, 23: // SQLITE_READONLY, SQLITE_AUTH
			return true
		}
	}
	return false
}

// retryable reports whether err is the database giving up a transaction
// that may succeed when made again: a deadlock, a lock wait that timed
// out, a serialization failure.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40P01" || pe.Code == "40001"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1213 || me.Number == 1205
	}
	return false
}

// masked returns err's text with the password replaced by "**", should a
// driver ever quote it.
func masked(text, password string) string {
	if len(password) < 3 {
		return text
	}
	return strings.ReplaceAll(text, password, "**")
}

// maskedError is masked for an error.
func maskedError(err error, password string) string { return masked(err.Error(), password) }

// maskErr wraps err so that its text hides the password, while errors.Is
// and errors.As still see what it wraps.
type maskErr struct {
	err      error
	password string
}

func (e *maskErr) Error() string { return masked(e.err.Error(), e.password) }

func (e *maskErr) Unwrap() error { return e.err }
