package kombu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// RetryPolicy says how often, and how long apart, an operation that failed
// for a broker or network reason is tried again. It follows Kombu's
// arithmetic: the waits are IntervalStart, then IntervalStep more each time,
// up to IntervalMax+IntervalStart, which then repeats (Kombu's fxrange with
// repeatlast). With defaults that is 2s, 4s, … 30s, 32s, 32s, …
//
// With several broker URLs, every URL is tried once per round without
// waiting, and the wait comes only after a full round, as Kombu's
// completes_cycle does.
//
// The zero value is Kombu's ensure_connection default (start 2s, step 2s,
// max 30s), retrying until the context ends.
type RetryPolicy struct {
	// MaxRetries bounds the retries after the first attempt; 0 means no
	// bound but the context's. Use NoRetry() for a single attempt.
	MaxRetries    int
	IntervalStart time.Duration // first wait (default 2s)
	IntervalStep  time.Duration // added per wait (default 2s)
	IntervalMax   time.Duration // the waits stop growing past IntervalMax+IntervalStart (default 30s)
}

// NoRetry makes one attempt only.
func NoRetry() RetryPolicy { return RetryPolicy{MaxRetries: -1} }

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.IntervalStart == 0 {
		p.IntervalStart = 2 * time.Second
	}
	if p.IntervalStep == 0 {
		p.IntervalStep = 2 * time.Second
	}
	if p.IntervalMax == 0 {
		p.IntervalMax = 30 * time.Second
	}
	return p
}

// Interval returns the wait after the n-th failed round (n from 0).
func (p RetryPolicy) Interval(n int) time.Duration {
	p = p.withDefaults()
	if p.IntervalStep <= 0 {
		return p.IntervalStart
	}
	// fxrange with repeatlast: the waits grow while they stay within
	// IntervalMax+IntervalStart, then the last one repeats. Capping the step
	// count first keeps a huge n from overflowing.
	steps := time.Duration(max(n, 0))
	if last := p.IntervalMax / p.IntervalStep; steps > last {
		steps = last
	}
	return p.IntervalStart + steps*p.IntervalStep
}

// retries reports whether another retry is allowed after retries retries.
func (p RetryPolicy) allows(retries int) bool {
	return p.MaxRetries == 0 || (p.MaxRetries > 0 && retries < p.MaxRetries)
}

// FailoverStrategy orders a list of broker URLs for each round of
// connection attempts.
type FailoverStrategy int

const (
	// RoundRobin tries the URLs in the order given, as Kombu's default.
	RoundRobin FailoverStrategy = iota
	// Shuffle tries them in a new random order every round, as Kombu's
	// "shuffle", so that many clients do not all land on the first broker.
	Shuffle
)

// retry runs attempt with policy over a list of n targets (broker URLs):
// each retry moves to the next target, and the policy's wait comes only
// after a full round. attempt gets the index of the target to use. It
// stops at the first success, at an error that retrying cannot fix, when
// the policy has no retries left, or when ctx ends.
func retry(ctx context.Context, policy RetryPolicy, n int, order FailoverStrategy, attempt func(ctx context.Context, target int) error,
	onRetry func(err error, target int, wait time.Duration)) error {
	if n < 1 {
		n = 1
	}
	targets := make([]int, n)
	for i := range targets {
		targets[i] = i
	}
	var errs []error
	for tries, round := 0, 0; ; tries++ {
		pos := tries % n
		if pos == 0 && order == Shuffle {
			rand.Shuffle(n, func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
		}
		err := attempt(ctx, targets[pos])
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if len(errs) > n {
			errs = errs[1:] // the last round's errors say enough
		}
		// A deadline inside the attempt (a connect timeout, say) is worth
		// retrying while the caller's own context is alive: an outage longer
		// than one attempt must not end recovery for good.
		attemptTimedOut := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		var anyway retryAnyway
		forced := errors.As(err, &anyway)
		if (!Recoverable(err) && !attemptTimedOut && !forced) || !policy.allows(tries) || ctx.Err() != nil {
			return errors.Join(errs...)
		}
		var wait time.Duration
		if pos == n-1 { // a full round failed
			wait = policy.Interval(round)
			round++
		}
		if onRetry != nil {
			onRetry(err, targets[(pos+1)%n], wait)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return errors.Join(append(errs, fmt.Errorf("kombu: gave up retrying: %w", ctx.Err()))...)
			}
		}
	}
}

// Recoverable reports whether err is a broker or network failure that a
// new attempt, possibly on a new connection, may get past: a lost or closed
// connection or an *OperationalError that is not about what was asked
// (a missing queue, a refused declaration, a bad URL stay failures).
func Recoverable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, transport.ErrNotFound), errors.Is(err, transport.ErrPrecondition),
		errors.Is(err, transport.ErrAccessRefused), errors.Is(err, transport.ErrResourceLocked),
		errors.Is(err, transport.ErrInvalidURL), errors.Is(err, transport.ErrUnknownScheme),
		errors.Is(err, transport.ErrNotSupported), errors.Is(err, transport.ErrUnroutable),
		errors.Is(err, transport.ErrInUse), errors.Is(err, ErrEncode), errors.Is(err, ErrDecode):
		return false
	case errors.Is(err, transport.ErrClosed):
		return true
	}
	var oe *OperationalError
	return errors.As(err, &oe)
}

// Ensure runs fn, and runs it again while it fails for a reason retrying
// may get past (see Recoverable), waiting as policy says between tries;
// when the broker connection was lost meanwhile, it first waits for the
// next one. It is Kombu's Connection.ensure: wrap any operation in it.
//
//	err := conn.Ensure(ctx, kombu.RetryPolicy{MaxRetries: 5}, func(ctx context.Context) error {
//		_, err := queue.Declare(ctx, conn)
//		return err
//	})
func (c *Connection) Ensure(ctx context.Context, policy RetryPolicy, fn func(ctx context.Context) error) error {
	return retry(ctx, policy, 1, RoundRobin, func(ctx context.Context, _ int) error {
		s := c.session()
		err := fn(ctx)
		if err != nil && c.lostConnection(s, err) {
			if _, werr := c.nextSession(ctx, s); werr != nil {
				return errors.Join(err, werr)
			}
		}
		return err
	}, func(err error, _ int, wait time.Duration) {
		c.logger.Warn("kombu: operation failed; retrying", "error", err, "wait", wait)
	})
}
