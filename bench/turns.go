package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kombubenchv1 "github.com/kombu-go/kombu/bench/gen/kombubench/v1"
	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// turn holds a running consumer between its side's turns, so that a
// consuming workload can be interleaved in chunks like a publishing one.
// A held consumer keeps its prefetched messages, so every side starts
// every turn alike: with a full prefetch window.
type turn struct {
	mu      sync.Mutex
	cond    sync.Cond
	left    int           // messages left in the current turn
	over    chan struct{} // closed once the current turn's last message is handled
	stopped bool
	failed  chan error // the consumer's own failure, if it has one
}

func newTurn() *turn {
	t := &turn{failed: make(chan error, 1)}
	t.cond.L = &t.mu
	return t
}

// begin gives the consumer a turn of count messages, and returns a
// function that waits until it has handled them.
func (t *turn) begin(count int) (wait func() error) {
	over := make(chan struct{})
	t.mu.Lock()
	t.left, t.over = count, over
	t.cond.Broadcast()
	t.mu.Unlock()
	return func() error {
		select {
		case <-over:
			return nil
		case err := <-t.failed:
			return fmt.Errorf("consumer failed during its turn: %w", err)
		case <-time.After(time.Minute):
			t.mu.Lock()
			defer t.mu.Unlock()
			return fmt.Errorf("consumer stalled during its turn: %d of %d messages left", t.left, count)
		}
	}
}

// take gives the consumer a turn of count messages and waits until it has
// handled them.
func (t *turn) take(count int) error { return t.begin(count)() }

// wait blocks the consumer until its turn. It reports false once the turn
// is stopped: the consumer should then let the message go unhandled.
func (t *turn) wait() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.left == 0 && !t.stopped {
		t.cond.Wait()
	}
	return !t.stopped
}

// handled counts a message of the current turn.
func (t *turn) handled() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.left--; t.left == 0 {
		close(t.over)
	}
}

// stop releases the consumer for good.
func (t *turn) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.cond.Broadcast()
}

// isStopped reports whether stop was called.
func (t *turn) isStopped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

// fail reports the consumer's failure to whoever waits for its turn.
func (t *turn) fail(err error) {
	select {
	case t.failed <- err:
	default:
	}
}

// held is a consumer side that runs from its round's setup to its
// teardown, held by a turn in between its turns.
type held struct {
	name  string                                       // the side, for -cpuprofile
	start func(t *turn) (stop func() error, err error) // starts the consumer
	t     *turn
	stop  func() error
}

// begin starts the consumer for a round.
func (h *held) begin() error {
	h.t = newTurn()
	var err error
	as(h.name, func() { h.stop, err = h.start(h.t) })
	return err
}

// end stops the consumer; what it holds unsettled goes back to its queue.
func (h *held) end() error {
	if h.stop == nil {
		return nil
	}
	err := h.stop()
	h.stop = nil
	return err
}

// take is the side's turn of a consuming workload.
func (h *held) take(count int) error { return h.t.take(count) }

// beginAll starts consumers; on failure it stops those it started.
func beginAll(hs ...*held) (endAll func() error, err error) {
	endAll = func() error {
		var errs []error
		for _, h := range hs {
			errs = append(errs, h.end())
		}
		return errors.Join(errs...)
	}
	for _, h := range hs {
		if err := h.begin(); err != nil {
			return nil, errors.Join(err, endAll())
		}
	}
	return endAll, nil
}

// serve runs a held consumer's loop over msgs in a goroutine of its own,
// and returns a channel closed when the loop ends. In the side's turns it
// decodes each message's body and settles it. Once the turn is stopped it
// hands each message still arriving to release, until msgs is closed, or,
// if release is nil, stops reading.
func serve[M any](t *turn, msgs <-chan M, body func(M) []byte, settle func(M) error, release func(M)) <-chan struct{} {
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for m := range msgs {
			if !t.wait() {
				if release == nil {
					return
				}
				release(m)
				continue
			}
			if err := decode(body(m)); err != nil {
				t.fail(err)
				return
			}
			if err := settle(m); err != nil {
				t.fail(err)
				return
			}
			t.handled()
		}
		if !t.isStopped() {
			t.fail(errors.New("the consumer's channel closed during the round"))
		}
	}()
	return ended
}

// heldHandler is the benchmark's handler, held by a turn.
type heldHandler struct {
	kombubenchv1.UnimplementedBenchHandler
	t *turn
}

func (h heldHandler) PlaceOrder(context.Context, *quickstartv1.OrderPlaced, *kombu.Message) error {
	if h.t.wait() {
		h.t.handled()
	}
	return nil
}

// sdkConsumer is a held side running the benchmark's generated consumer
// on conn with opts (none: the SDK at its defaults).
func sdkConsumer(ctx context.Context, k kind, conn *kombu.Connection, opts ...kombu.ConsumerOption) *held {
	return &held{name: k.String(), start: func(t *turn) (func() error, error) {
		consumer, err := kombubenchv1.NewBenchConsumer(conn, heldHandler{t: t}, opts...)
		if err != nil {
			return nil, err
		}
		ended := make(chan error, 1)
		go func() {
			err := consumer.Run(ctx)
			if err != nil {
				t.fail(err)
			}
			ended <- err
		}()
		return func() error {
			t.stop()
			return errors.Join(consumer.Close(), <-ended)
		}, nil
	}}
}
