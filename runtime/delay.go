package kombu

import (
	"fmt"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// ErrInvalidDelay is returned by a publish whose WithDelay is negative, or
// whose WithDelay or WithETA lies more than MaxDelay ahead. It is also an
// ErrInvalidArgument (errors.Is reports both).
var ErrInvalidDelay error = invalidDelay{}

type invalidDelay struct{}

func (invalidDelay) Error() string        { return "kombu: invalid delay" }
func (invalidDelay) Is(target error) bool { return target == ErrInvalidArgument }

// MaxDelay is the longest delay WithDelay and WithETA accept: 2^28 − 1
// seconds (about 8.5 years), what Kombu 5.5's native delayed-delivery
// topology on RabbitMQ can spell. Every transport keeps to it, so that a
// delay valid on one is valid on all.
const MaxDelay = transport.MaxDelay

// delaySpec is what WithDelay or WithETA asked for; the later one wins.
type delaySpec struct {
	set   bool
	delay time.Duration
	eta   time.Time // non-zero: WithETA
}

// WithDelay delivers the message d after Publish: no consumer sees it
// before, and it reaches its queues within a second after (measured per
// transport in the README). A zero delay publishes at once; a negative one,
// or one longer than MaxDelay, fails the publish with ErrInvalidDelay.
//
// Given to a producer, it delays every message the producer publishes.
// Each transport keeps delayed messages where it keeps the others, so they
// survive what its messages survive:
//
//   - RabbitMQ (transports/amqp): Kombu 5.5's native delayed-delivery
//     topology, shared with Celery 5.5 workers, in whole seconds (a delay
//     is rounded up to the next second);
//   - memory://: a timer in the process;
//   - Redis and the filesystem: a layout of kombu-go's that Python Kombu
//     consumers do not read, so they see the message only when it is due
//     (see each transport's documentation).
//
// A transport without delayed delivery fails the publish with
// ErrNotSupported. A delayed message cannot be mandatory, nor carry an
// expiration (on RabbitMQ a message TTL would cut the delay short): both
// fail with ErrNotSupported.
func WithDelay(d time.Duration) PublishOption {
	return publishOption(func(c *publishConfig) { c.delay = delaySpec{set: true, delay: d} })
}

// WithETA delivers the message at t, as WithDelay(time.Until(t)) does when
// Publish is called. A time in the past publishes at once.
func WithETA(t time.Time) PublishOption {
	return publishOption(func(c *publishConfig) {
		if t.IsZero() {
			c.delay = delaySpec{}
			return
		}
		c.delay = delaySpec{set: true, eta: t}
	})
}

// resolve returns the delay to publish with, from now.
func (s delaySpec) resolve(now time.Time) (time.Duration, error) {
	if !s.set {
		return 0, nil
	}
	d := s.delay
	if !s.eta.IsZero() {
		d = max(s.eta.Sub(now), 0) // a time in the past is now
	} else if d < 0 {
		return 0, fmt.Errorf("%w: negative delay %v", ErrInvalidDelay, d)
	}
	if d > MaxDelay {
		return 0, fmt.Errorf("%w: a delay of %d s exceeds the longest, %d s (2^28 - 1 seconds, about 8.5 years)",
			ErrInvalidDelay, int64(d/time.Second), int64(MaxDelay/time.Second))
	}
	return d, nil
}

// applyDelay checks cfg's delay against the connection and the message,
// and sets pub.Delay.
func (p *Producer) applyDelay(pub *transport.Publishing, cfg *publishConfig) error {
	if !cfg.delay.set {
		return nil // no clock read on the common path: time.Now is a few % of a memory:// publish
	}
	d, err := cfg.delay.resolve(time.Now())
	if err != nil || d == 0 {
		return err
	}
	if err := p.conn.require(transport.FeatureDelay, "delayed delivery"); err != nil {
		return err
	}
	switch {
	case cfg.mandatory:
		return fmt.Errorf("%w: a delayed message cannot be mandatory: it is routed when it is due, after Publish has returned", ErrNotSupported)
	case cfg.props.Expiration > 0:
		return fmt.Errorf("%w: a delayed message cannot have an expiration (on RabbitMQ it would cut the delay short)", ErrNotSupported)
	}
	pub.Delay = d
	return nil
}
