package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Losing the connection. go-redis reconnects by itself, so a connection
// could go on for ever failing every command while Redis is down: a
// publish would fail at once rather than wait for Redis to come back. So
// a connection whose command fails because Redis cannot be reached, after
// go-redis's own retries, is lost, as an AMQP connection is when its
// socket breaks: Done closes, Err says why, its subscriptions end, and
// every operation fails with an error that is transport.ErrClosed. The
// runtime then opens a new connection (retrying until Redis answers),
// makes a publish caught by the loss again on it, and resumes its
// consumers there.
//
// A lost connection still holds what it took: settlements made after the
// loss (acknowledgements above all, since handlers go on) are kept and
// sent once Redis answers, by its ackFlusher or at the latest when it is
// closed, which the runtime does once the new connection is up; messages
// it still holds unsettled then go back to their queues at once, not
// after the visibility timeout.

// lostError is why a connection was lost. It is transport.ErrClosed.
type lostError struct{ cause error }

func (e *lostError) Error() string { return "redis: connection lost: " + e.cause.Error() }

func (e *lostError) Unwrap() []error { return []error{transport.ErrClosed, e.cause} }

// unreachable reports whether err says that Redis could not be reached or
// the connection to it broke: refused, reset, closed by the server, a dial
// that failed or timed out. A reply from Redis (a command error, LOADING),
// a read that timed out on a connection that is up (a slow or paused
// server), the caller's context ending and our own Close are not.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // checked first: go-redis wraps a dial timeout in context.DeadlineExceeded
	}
	var rerr goredis.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, goredis.ErrClosed), errors.As(err, &rerr):
		return false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && !ne.Timeout()
}

// unanswered reports whether err says that Redis did not answer (it is
// unreachable, timed out, or is not ready: LOADING, BUSY, ...), rather
// than answered with an error: what to try again once it answers.
func unanswered(err error) bool {
	if err == nil || !transient(err) {
		return false
	}
	if unreachable(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	var rerr goredis.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.As(err, &rerr)
}

// lossHook watches every command and pipeline of a connection's client
// for a failure that means Redis is unreachable, and loses the connection
// before the failure reaches the caller, so that the caller's error
// already finds Done closed.
type lossHook struct{ c *conn }

var _ goredis.Hook = lossHook{}

func (h lossHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h lossHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		h.notice(ctx, err)
		return err
	}
}

func (h lossHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		h.notice(ctx, err)
		return err
	}
}

func (h lossHook) notice(ctx context.Context, err error) {
	if ctx.Err() == nil && unreachable(err) {
		h.c.lose(err)
	}
}

// lose marks the connection lost, once, unless it is closed: new
// operations fail, subscriptions end (what they took and did not hand
// over goes back to its queue once Redis answers), broadcasts are no
// longer copied, and Done closes. It does not wait for anything, since it
// runs inside a failing command.
func (c *conn) lose(cause error) {
	c.mu.Lock()
	if c.closed || c.lost != nil {
		c.mu.Unlock()
		return
	}
	lost := &lostError{cause: cause}
	c.lost = lost
	subs := make([]*subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.log.Warn("redis: connection lost: Redis unreachable", "error", cause)
	c.relay.cancel()
	for _, s := range subs {
		s.end(lost)
	}
	c.doneOnce.Do(func() { close(c.done) })
}

// lostErr returns why the connection was lost, or nil.
func (c *conn) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost == nil {
		return nil
	}
	return c.lost
}
