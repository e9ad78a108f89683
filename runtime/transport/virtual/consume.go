package virtual

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// takeRetryFor is how long a subscription keeps taking after its store
// failed, before it ends with the error: a store that is briefly
// unavailable (a network filesystem, a database restarting) should not end
// every consumer.
const takeRetryFor = 30 * time.Second

// subscription consumes from its queues in a goroutine of its own: it takes
// one message at a time from the queues in turn, hands it over, and when
// the queues are empty waits for the store's wake-up or its polling
// interval.
type subscription struct {
	c        *conn
	acks     scope
	queues   []string          // in rotation order (round robin, as Kombu)
	tags     map[string]string // consumer tag per queue
	autoAck  bool
	prefetch atomic.Int64 // read before each take: SetPrefetch changes it while the subscription runs

	// ahead are messages a batch took that are not handed over yet,
	// delivered before the next take and put back when the subscription
	// ends (BatchTaker).
	ahead     []*held
	aheadD    []*transport.Delivery
	ch        chan *transport.Delivery
	settledCh chan struct{} // a prefetch slot was freed
	ctx       context.Context
	cancel    context.CancelFunc // ends the store calls under way
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once

	errMu sync.Mutex
	err   error
}

var _ transport.PrefetchSetter = (*subscription)(nil)

// Consume starts a subscription.
func (c *conn) Consume(ctx context.Context, spec transport.ConsumeSpec) (transport.Subscription, error) {
	if err := CheckConsumeSpec(spec); err != nil {
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{
		c:         c,
		queues:    slices.Clone(spec.Queues),
		tags:      make(map[string]string, len(spec.Queues)),
		autoAck:   spec.AutoAck,
		ch:        make(chan *transport.Delivery),
		settledCh: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.prefetch.Store(int64(spec.Prefetch))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.acks = scope{c: c, sub: s}
	prefix := spec.Tag
	if prefix == "" {
		prefix = "ctag-"
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.cancel()
		return nil, transport.ErrClosed
	}
	for _, q := range s.queues {
		c.lastCtag++
		s.tags[q] = prefix + strconv.FormatUint(c.lastCtag, 10)
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	var wake <-chan struct{}
	stopWatching := func() {}
	if c.waker != nil {
		// Before the first take, so that nothing put after it is missed.
		wake, stopWatching = c.waker.Watch(s.queues)
	}
	go s.run(wake, stopWatching)
	return s, nil
}

func (s *subscription) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// full reports whether the subscription has as many unsettled deliveries
// as its prefetch allows.
func (s *subscription) full() bool {
	p := int(s.prefetch.Load())
	return !s.autoAck && p > 0 && s.acks.count() >= p
}

// SetPrefetch changes the prefetch of the running subscription; the next
// take honours it.
func (s *subscription) SetPrefetch(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("%s: set prefetch: negative prefetch %d", s.c.name, n)
	}
	s.prefetch.Store(int64(n))
	select { // wake the subscription if it waits for a free slot
	case s.settledCh <- struct{}{}:
	default:
	}
	return nil
}

func (s *subscription) run(wake <-chan struct{}, stopWatching func()) {
	defer func() {
		stopWatching()
		s.cancel()
		if len(s.ahead) > 0 {
			// Taken in a batch, never handed over: back as they were.
			s.c.restore(s.ahead)
			s.ahead, s.aheadD = nil, nil
		}
		close(s.ch)
		close(s.done)
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var failingSince time.Time
	backoff := 50 * time.Millisecond
	for !s.stopped() {
		if s.full() {
			select {
			case <-s.settledCh:
			case <-s.stop:
			}
			continue
		}
		// A wake-up from before this round is answered by the round.
		select {
		case <-wake:
		default:
		}
		h, d, err := s.takeNext()
		if err == nil && !failingSince.IsZero() {
			s.c.log.Info(s.c.name+": taking messages works again", "queues", s.queues)
			failingSince, backoff = time.Time{}, 50*time.Millisecond
		}
		wait, woken := s.c.poll, wake
		switch {
		case err != nil && s.stopped():
			return
		case err != nil:
			if failingSince.IsZero() {
				failingSince = time.Now()
				s.c.log.Warn(s.c.name+": taking messages failed; retrying", "queues", s.queues, "error", err)
			} else if time.Since(failingSince) > takeRetryFor {
				s.fail(s.c.wrap("take", err))
				return
			}
			wait, woken = backoff, nil // a wake-up does not cut a back-off short
			backoff = min(2*backoff, 2*time.Second)
		case h != nil:
			if !s.deliver(h, d) {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-woken:
		case <-timer.C:
		case <-s.stop:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// takeNext takes one message from the first of the queues, in rotation
// order, that has one, and moves that queue to the end of the order. From
// a BatchTaker it takes as many as the prefetch has room for and keeps
// the rest for the next calls.
func (s *subscription) takeNext() (*held, *transport.Delivery, error) {
	if len(s.ahead) > 0 {
		h, d := s.ahead[0], s.aheadD[0]
		s.ahead, s.aheadD = s.ahead[1:], s.aheadD[1:]
		return h, d, nil
	}
	b, batches := s.c.store.(BatchTaker)
	room := 0
	if p := int(s.prefetch.Load()); batches && !s.autoAck && p > 1 {
		room = p - s.acks.count()
	}
	for _, q := range s.queues {
		var h *held
		var d *transport.Delivery
		var err error
		if room > 1 {
			var hs []*held
			var ds []*transport.Delivery
			hs, ds, err = s.c.takeBatch(s.ctx, b, q, room)
			if err == nil && len(hs) == 0 {
				err = transport.ErrEmpty // all quarantined
			}
			if err == nil {
				h, d = hs[0], ds[0]
				for _, dd := range ds[1:] {
					dd.ConsumerTag = s.tags[q]
				}
				s.ahead, s.aheadD = hs[1:], ds[1:]
			}
		} else {
			h, d, err = s.c.take(s.ctx, q)
		}
		if errors.Is(err, transport.ErrEmpty) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if i := slices.Index(s.queues, q); i < len(s.queues)-1 {
			s.queues = append(append(s.queues[:i:i], s.queues[i+1:]...), q)
		}
		d.ConsumerTag = s.tags[q]
		return h, d, nil
	}
	return nil, nil, nil
}

// deliver hands a message over. It is numbered and recorded as unsettled
// before it is sent, so it can be acked the moment it arrives; an auto-acked
// one is acked in the store once it is handed over. If the subscription ends
// first, the message goes back to its queue as it was, and deliver reports
// false.
func (s *subscription) deliver(h *held, d *transport.Delivery) bool {
	if !s.autoAck {
		if !s.acks.track(h, d) {
			s.c.restore([]*held{h})
			return false
		}
		d.Acknowledger = &s.acks
	}
	select {
	case s.ch <- d:
	case <-s.stop:
		if !s.autoAck {
			s.acks.forget(d.Tag)
		}
		s.c.restore([]*held{h})
		return false
	}
	if s.autoAck {
		if err := s.c.ack(h); err != nil {
			s.c.log.Warn(s.c.name+": an auto-acked message could not be removed from the store; it will be delivered again", "queue", h.queue, "error", err)
		}
	}
	return true
}

func (s *subscription) fail(err error) {
	s.errMu.Lock()
	s.err = err
	s.errMu.Unlock()
	s.c.log.Warn(s.c.name+": subscription ended", "queues", s.queues, "error", err)
	s.end(nil)
}

// end stops the subscription; its goroutine puts back what it holds and
// closes the channel.
func (s *subscription) end(err error) {
	s.stopOnce.Do(func() {
		if err != nil {
			s.errMu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.errMu.Unlock()
		}
		close(s.stop)
		s.cancel()
	})
}

func (s *subscription) Deliveries() <-chan *transport.Delivery { return s.ch }

func (s *subscription) Done() <-chan struct{} { return s.done }

func (s *subscription) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Cancel stops deliveries and waits until the channel is closed and the
// message taken but not handed over is back in its queue. Delivered
// messages stay unsettled until settled or until the connection closes.
func (s *subscription) Cancel(ctx context.Context) error {
	s.end(nil)
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	c := s.c
	c.mu.Lock()
	if s.acks.count() == 0 {
		delete(c.subs, s)
	}
	c.mu.Unlock()
	return nil
}
