package sqs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Error is a request SQS refused or that did not reach it: what was done,
// to which queue, and SQS's error code where it answered. It matches
// transport.ErrAccessRefused for refused credentials and
// transport.ErrNotFound for a queue that does not exist, with errors.Is,
// whichever protocol the SDK in use speaks: the query protocol of the
// service/sqs versions this module requires at least (and goaws answers),
// and the JSON protocol of later ones, whose codes differ.
type Error struct {
	Op    string // the SQS action: "SendMessage"
	Queue string // the SQS queue name, "" when the request named none
	Code  string // SQS's error code, "" when SQS did not answer
	Err   error  // the SDK's error, secrets masked
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Queue != "" {
		fmt.Fprintf(&b, " %q", e.Queue)
	}
	switch {
	case isAccessCode(e.Code):
		b.WriteString(": SQS refused the credentials (check the access key id and secret in the URL, or the AWS environment)")
	case e.Code == "" && isCredentialsFailure(e.Err):
		b.WriteString(": no AWS credentials (put them in the URL, sqs://KEY_ID:SECRET@, or in the AWS environment)")
	case isMissingQueueCode(e.Code):
		b.WriteString(": no such queue")
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Is(target error) bool {
	switch target {
	case transport.ErrAccessRefused:
		return isAccessCode(e.Code) || e.Code == "" && isCredentialsFailure(e.Err)
	case transport.ErrNotFound:
		return isMissingQueueCode(e.Code)
	}
	return false
}

// Error codes, in both protocols. The query protocol names some with an
// "AWS.SimpleQueueService." prefix that the JSON protocol drops.
func code(c string) string { return strings.TrimPrefix(c, "AWS.SimpleQueueService.") }

func isAccessCode(c string) bool {
	switch code(c) {
	case "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "AccessDenied",
		"AccessDeniedException", "MissingAuthenticationToken", "InvalidSecurity", "IncompleteSignature",
		"ExpiredToken", "RequestExpired", "KMS.AccessDeniedException":
		return true
	}
	return false
}

// isCredentialsFailure: the SDK found no credentials to sign with (it has
// no error type of its own for it across versions: its text says so).
func isCredentialsFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "failed to retrieve credentials") || strings.Contains(s, "failed to refresh cached credentials")
}

func isMissingQueueCode(c string) bool {
	switch code(c) {
	case "NonExistentQueue", "QueueDoesNotExist":
		return true
	}
	return false
}

// isGoneReceipt: a receipt SQS no longer knows (the message was deleted, or
// its visibility ran out and another consumer has it).
func isGoneReceipt(c string) bool {
	switch code(c) {
	case "MessageNotInFlight", "MessageNotInflight", "ReceiptHandleIsInvalid", "InvalidReceiptHandle":
		return true
	}
	return false
}

// errorCode is SQS's code for err, "" when SQS did not answer.
func errorCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// masker hides a connection's secret in the errors it returns.
type masker struct{ secret string }

// wrap makes err an *Error for op on queue, with the secret masked. A
// context's error still matches context.Canceled or DeadlineExceeded
// through it.
func (m masker) wrap(op, queue string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Queue: queue, Code: errorCode(err), Err: err}
	if strings.Contains(err.Error(), "not found: ComputePayloadHash") {
		// service/sqs of the query-protocol era (this module's minimum)
		// under a newer SDK core, which another AWS package brought in.
		e.Err = fmt.Errorf("%w (github.com/aws/aws-sdk-go-v2/service/sqs is older than the SDK core it runs with: run go get github.com/aws/aws-sdk-go-v2/service/sqs@latest)", err)
	}
	if m.secret != "" && strings.Contains(err.Error(), m.secret) {
		e.Err = maskedError{msg: strings.ReplaceAll(err.Error(), m.secret, "****"), err: err}
	}
	return e
}

// maskedError is an error whose text had a secret in it.
type maskedError struct {
	msg string
	err error
}

func (e maskedError) Error() string { return e.msg }
func (e maskedError) Unwrap() error { return e.err }
