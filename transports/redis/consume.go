package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

const (
	// unlimitedBatch is how many messages a subscription without a
	// prefetch limit takes per round trip.
	unlimitedBatch = 64
	// autoAckBatch is how many auto-acked messages a subscription takes
	// per round trip. They are out of Redis once taken, so it keeps few.
	autoAckBatch = 16
)

// subscription consumes from its queues in a goroutine of its own: it takes
// up to its free prefetch in one takeScript call, hands the messages over
// one at a time, and when the queues are empty waits for a wake-up (a
// write to one of its lists, announced by Redis client tracking, see
// wakeHub) or its polling interval.
type subscription struct {
	c        *conn
	acks     ackScope
	queues   []string // in rotation order (round robin, as Kombu)
	quoted   map[string]string
	tags     map[string]string // consumer tag per queue
	keys     []string          // every bucket key, for wake-ups
	autoAck  bool
	prefetch atomic.Int64 // read before each take: SetPrefetch changes it while the subscription runs
	receipt  string       // the key of its takes' receipts (receipt.go)
	tookAll  bool         // every take answered: the receipt is not needed

	ch        chan *transport.Delivery
	wakeCh    chan struct{}
	settledCh chan struct{}
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once

	errMu sync.Mutex
	err   error
}

// Consume starts a subscription. A queue bound to a fanout exchange is
// consumed like any other: the connection that bound it copies the
// exchange's broadcasts into its lists from the moment Bind returns (see
// fanout.go), so broadcasts sent before Consume are waiting there.
func (c *conn) Consume(ctx context.Context, spec transport.ConsumeSpec) (transport.Subscription, error) {
	// Amongst others, RabbitMQ's direct reply-to is refused (no
	// FeatureDirectReplyTo) rather than served as an ordinary list every
	// requester would share.
	if err := virtual.CheckConsumeSpec(spec); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	for _, q := range spec.Queues {
		if err := c.ks.checkQueue(q); err != nil {
			return nil, err
		}
	}
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	c.startBackground()

	s := &subscription{
		c:         c,
		queues:    slices.Clone(spec.Queues),
		quoted:    make(map[string]string, len(spec.Queues)),
		tags:      make(map[string]string, len(spec.Queues)),
		autoAck:   spec.AutoAck,
		receipt:   c.receipts.key(),
		tookAll:   true,
		ch:        make(chan *transport.Delivery),
		wakeCh:    make(chan struct{}, 1),
		settledCh: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.prefetch.Store(int64(spec.Prefetch))
	s.acks = ackScope{c: c, sub: s}
	prefix := spec.Tag
	if prefix == "" {
		prefix = "ctag-"
	}
	c.mu.Lock()
	switch {
	case c.lost != nil:
		c.mu.Unlock()
		return nil, c.lost
	case c.closed:
		c.mu.Unlock()
		return nil, transport.ErrClosed
	}
	for _, q := range s.queues {
		c.lastCtag++
		s.tags[q] = prefix + strconv.FormatUint(c.lastCtag, 10)
		s.quoted[q] = pyQuote(q)
		for step := range numSteps {
			s.keys = append(s.keys, c.ks.bucket(q, step))
		}
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	c.hub.register(s)
	go s.run()
	return s, nil
}

// poke signals a channel of capacity one without blocking.
func (s *subscription) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *subscription) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// capacity is how many messages the subscription may take now.
func (s *subscription) capacity() int {
	p := int(s.prefetch.Load())
	switch {
	case s.autoAck:
		return autoAckBatch
	case p == 0:
		return unlimitedBatch
	}
	return p - s.acks.count()
}

var _ transport.PrefetchSetter = (*subscription)(nil)

// SetPrefetch changes the prefetch of the running subscription; the next
// take honours it.
func (s *subscription) SetPrefetch(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("redis: set prefetch: negative prefetch %d", n)
	}
	s.prefetch.Store(int64(n))
	s.poke(s.settledCh) // it may be waiting for a free slot
	return nil
}

func (s *subscription) run() {
	defer func() {
		s.c.hub.unregister(s)
		s.dropReceipt()
		close(s.ch)
		close(s.done)
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for !s.stopped() {
		n := s.capacity()
		if n <= 0 {
			select {
			case <-s.settledCh:
			case <-s.stop:
			}
			continue
		}
		// A wake-up from before this take is answered by the take.
		select {
		case <-s.wakeCh:
		default:
		}
		entries, err := s.take(n)
		if err != nil {
			s.tookAll = false
			if !s.stopped() {
				s.fail(s.c.wrap("take", err))
			}
			return
		}
		for _, e := range entries {
			s.rotate(e.queue)
		}
		if !s.deliver(entries) {
			return
		}
		if len(entries) == n {
			continue // there may be more
		}
		timer.Reset(s.c.hub.pollInterval())
		select {
		case <-s.wakeCh:
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

// dropReceipt deletes the subscription's take receipt once it is not
// needed: when every take was answered and Redis is there. Otherwise the
// receipt expires by itself after the visibility timeout.
func (s *subscription) dropReceipt() {
	if s.autoAck || !s.tookAll || s.c.lostErr() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !s.c.ks.sharded {
		_ = s.c.rdb.Del(ctx, s.receipt).Err()
		return
	}
	// One receipt per queue, each in its queue's slot (conn.take).
	_, _ = s.c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, q := range s.queues {
			p.Del(ctx, s.c.ks.receiptOf(s.receipt, q))
		}
		return nil
	})
}

// takeRetryFor is how long a subscription keeps retrying takes that fail
// for want of Redis (connection refused or lost, a master that is loading
// or has just become a replica) before it ends with the error. go-redis
// reconnects by itself; a restart or a Sentinel failover should not end
// every consumer.
const takeRetryFor = 30 * time.Second

// take takes up to n messages, retrying while Redis is unreachable. A
// take whose reply was lost is recovered (its messages returned to their
// queues, see receipt.go) before the next take may overwrite its receipt;
// if the subscription ends first, the connection recovers it once Redis
// answers.
func (s *subscription) take(n int) (entries []*entry, err error) {
	quoted := make([]string, len(s.queues))
	for i, q := range s.queues {
		quoted[i] = s.quoted[q]
	}
	var pending *lostTake
	defer func() {
		if pending != nil {
			s.c.recoverLater(*pending)
		}
	}()
	var since time.Time
	backoff := 100 * time.Millisecond
	for {
		if pending == nil {
			var lost *lostTake
			entries, lost, err = s.c.take(context.Background(), s.queues, quoted, n, !s.autoAck, s.receipt)
			pending = lost
			if err == nil || !transient(err) {
				return entries, err
			}
		} else if err = s.recover(*pending); err == nil || !unanswered(err) {
			if err != nil {
				s.c.log.Warn("redis: a take's reply was lost, and what it took could not be returned; it will be restored after the visibility timeout",
					"queues", pending.queues, "error", err)
			}
			pending = nil
			continue
		}
		if since.IsZero() {
			since = time.Now()
			s.c.log.Warn("redis: taking messages failed; retrying", "queues", s.queues, "error", err)
		} else if time.Since(since) > takeRetryFor {
			return nil, err
		}
		select {
		case <-s.stop:
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// recover returns the messages of a take whose reply was lost.
func (s *subscription) recover(l lostTake) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return s.c.recoverAndLog(ctx, l)
}

// transient reports whether an error is Redis being unreachable or not
// ready, rather than a command failing.
func transient(err error) bool {
	if errors.Is(err, goredis.ErrClosed) {
		return false
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "BUSY "} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true // network errors, timeouts
}

// rotate moves a queue that yielded a message to the end of the order.
func (s *subscription) rotate(q string) {
	if i := slices.Index(s.queues, q); i >= 0 && i < len(s.queues)-1 {
		s.queues = append(append(s.queues[:i:i], s.queues[i+1:]...), q)
	}
}

// deliver hands the entries over one at a time. Each is numbered and
// recorded as unsettled before it is sent, so it can be acked the moment it
// arrives. If the subscription ends first, the rest go back to the front of
// their queues as they were, and deliver reports false.
func (s *subscription) deliver(entries []*entry) bool {
	for i, e := range entries {
		d := e.delivery(s.tags[e.queue])
		if !s.autoAck {
			if !s.acks.track(e, d) {
				s.c.returnEntries(entries[i:])
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
			e.delivered = false
			s.c.returnEntries(entries[i:])
			return false
		}
	}
	return true
}

func (s *subscription) fail(err error) {
	s.errMu.Lock()
	s.err = err
	s.errMu.Unlock()
	s.c.log.Warn("redis: subscription ended", "queues", s.queues, "error", err)
	s.end(nil)
}

// end stops the subscription; its goroutine returns the messages it holds
// and closes the channel.
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
// messages taken but not handed over are back in their queues. Delivered
// messages stay unsettled (their leases renewed) until settled or until
// the connection closes.
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
