package amqp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

// brokerError is an AMQP exception (channel.close or connection.close) with
// what was being done when it came. Its text keeps the broker's reply text,
// which names the entity and, for PRECONDITION_FAILED, the argument that
// differs. It matches the transport sentinel for its reply code with
// errors.Is, and *amqp091.Error with errors.As.
type brokerError struct {
	op   string      // "declare queue \"orders\""
	err  *amqp.Error // the broker's exception
	kind error       // a transport sentinel, or nil
	hint string      // advice appended to the text, or ""
}

func (e *brokerError) Error() string {
	var b strings.Builder
	b.WriteString("amqp: ")
	if e.op != "" {
		b.WriteString(e.op)
		b.WriteString(": ")
	}
	b.WriteString(e.err.Reason)
	if e.err.Code != 0 {
		fmt.Fprintf(&b, " (%d)", e.err.Code)
	}
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	return b.String()
}

func (e *brokerError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// kindOf maps an AMQP reply code to the transport's sentinel error.
func kindOf(ae *amqp.Error) error {
	if ae == amqp.ErrClosed {
		return transport.ErrClosed
	}
	switch ae.Code {
	case amqp.NotFound:
		return transport.ErrNotFound
	case amqp.PreconditionFailed:
		return transport.ErrPrecondition
	case amqp.ResourceLocked:
		return transport.ErrResourceLocked
	case amqp.AccessRefused:
		return nil // a permission problem: retrying will not help
	case amqp.ConnectionForced, amqp.InvalidPath, amqp.FrameError, amqp.SyntaxError,
		amqp.CommandInvalid, amqp.ChannelError, amqp.UnexpectedFrame, amqp.ResourceError,
		amqp.NotAllowed, amqp.NotImplemented, amqp.InternalError:
		// Hard errors: the broker closed the whole connection.
		return transport.ErrClosed
	}
	return nil
}

// closedError is why a connection ended: the broker's connection.close, or
// a network failure. It matches transport.ErrClosed.
type closedError struct {
	reason error // *amqp.Error or a network error; nil: closed
}

func (e *closedError) Error() string {
	var ae *amqp.Error
	switch {
	case e.reason == nil:
		return "amqp: connection closed"
	case errors.As(e.reason, &ae):
		return fmt.Sprintf("amqp: connection lost: %s (%d)", ae.Reason, ae.Code)
	}
	return "amqp: connection lost: " + e.reason.Error()
}

func (e *closedError) Unwrap() []error {
	if e.reason == nil {
		return []error{transport.ErrClosed}
	}
	return []error{transport.ErrClosed, e.reason}
}

// errConnClosed is what calls on a connection closed by Close return.
var errConnClosed = &closedError{}

// fail describes err, returned by amqp091-go while doing op, for the caller.
func (c *conn) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("amqp: %s: %w", op, err)
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		kind := kindOf(ae)
		if kind == transport.ErrClosed && c != nil && c.shut.Load() {
			return fmt.Errorf("amqp: %s: %w", op, c.closedErr())
		}
		if kind == transport.ErrPrecondition && strings.Contains(op, "delete") &&
			(strings.Contains(ae.Reason, "in use") || strings.Contains(ae.Reason, "not empty")) {
			return &brokerError{op: op, err: ae, kind: errors.Join(transport.ErrInUse, transport.ErrPrecondition)}
		}
		return &brokerError{op: op, err: ae, kind: kind}
	}
	if c != nil && c.shut.Load() {
		return fmt.Errorf("amqp: %s: %w", op, c.closedErr())
	}
	if lostNetwork(err) {
		// The write failed before the connection's reader noticed the loss
		// (amqp091-go then shuts the connection down): a lost connection
		// all the same, so that the runtime makes the call again on the
		// next one.
		return fmt.Errorf("amqp: %s: the connection failed: %w: %w", op, transport.ErrClosed, err)
	}
	return fmt.Errorf("amqp: %s: %w", op, err)
}

// lostNetwork reports whether err is the network failing under the
// connection: a reset, a broken pipe, an end of stream.
func lostNetwork(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// channelClosed describes a channel the broker closed under a call: the
// call's outcome is unknown.
func channelClosed(op string, ae *amqp.Error) error {
	if ae == nil {
		return fmt.Errorf("amqp: %s: channel closed before the broker answered: %w", op, transport.ErrClosed)
	}
	return &brokerError{op: op, err: ae, kind: transport.ErrClosed,
		hint: "the channel was closed before the broker answered, so the outcome is unknown"}
}
