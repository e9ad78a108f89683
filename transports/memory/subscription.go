package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// subBuffer is how many messages a subscription takes from its queues, for
// its run goroutine to hand over, once its channel is full (or, without a
// prefetch limit, has no room at all). RabbitMQ pushes every message it can
// to a consumer without a prefetch limit; keeping the rest ready in the
// queue instead lets an idle consumer take them, and Get, Purge and the
// ready count see them.
const subBuffer = 1

// chanBuffer is the room in the Deliveries channel of a subscription with a
// prefetch limit. Queues put deliveries straight into it, under the broker
// lock, while it has room and nothing is waiting to be handed over before
// them, so that a message costs no goroutine switch on its way to the
// consumer; the prefetch limit, not this room, bounds how many it holds.
// It is fixed when the subscription starts, and a prefetch raised past it
// (SetPrefetch) hands over the excess through the run goroutine.
const chanBuffer = 256

// consumer is a subscription's registration on one of its queues.
type consumer struct {
	tag       string
	q         *queue
	sub       *subscription
	exclusive bool
}

// held is a message a subscription took from a queue for a consumer.
type held struct {
	c *consumer
	e *entry
}

// subscription delivers from its consumers' queues on one channel. Queues
// push messages into it under the broker lock: straight into the channel's
// buffer while it has room, otherwise into buf, from which run moves them
// to the channel one at a time with the lock released, so a slow reader
// holds up nobody else.
type subscription struct {
	conn      *conn
	acks      ackScope
	consumers []*consumer
	autoAck   bool
	prefetch  int
	buf       []held
	sending   bool      // run is handing a message over, the lock released
	wake      sync.Cond // signalled when buf fills or the subscription ends
	ch        chan *transport.Delivery
	stop      chan struct{} // closed when the subscription ends
	done      chan struct{} // closed when run has returned
	stopped   bool
	exited    bool  // run has returned
	err       error // why the broker ended it
}

var _ transport.PrefetchSetter = (*subscription)(nil)

func (c *conn) subscribe(spec transport.ConsumeSpec, queues []*queue) *subscription {
	b := c.b
	room := 0
	if spec.Prefetch > 0 && !spec.AutoAck {
		room = chanBuffer
	}
	s := &subscription{
		conn: c, autoAck: spec.AutoAck, prefetch: spec.Prefetch,
		ch: make(chan *transport.Delivery, room), stop: make(chan struct{}), done: make(chan struct{}),
	}
	s.acks = ackScope{conn: c, sub: s}
	s.wake.L = &b.mu
	prefix := spec.Tag
	if prefix == "" {
		prefix = "ctag-"
	}
	for _, q := range queues {
		b.lastCtag++
		cs := &consumer{tag: prefix + strconv.FormatUint(b.lastCtag, 10), q: q, sub: s, exclusive: spec.Exclusive}
		s.consumers = append(s.consumers, cs)
		q.addConsumer(cs)
	}
	c.subs[s] = struct{}{}
	go s.run()
	return s
}

// canTake reports whether a queue may push another message to s: AMQP's
// prefetch counts unsettled deliveries (those waiting in the channel
// included), and does not apply with auto-ack.
func (s *subscription) canTake() bool {
	if s.stopped || len(s.buf) >= subBuffer {
		return false
	}
	return s.autoAck || s.prefetch == 0 || len(s.buf)+len(s.acks.unacked) < s.prefetch
}

// push takes e for s: into the channel's buffer if it has room and nothing
// is waiting to go before e, otherwise into buf for run.
func (s *subscription) push(c *consumer, e *entry) {
	if !s.sending && len(s.buf) == 0 && len(s.ch) < cap(s.ch) {
		d := s.handOut(c, e)
		// Only the holder of the broker lock sends while run is not
		// sending, and readers only make room: this never blocks.
		select {
		case s.ch <- d:
			return
		default:
			s.acks.forget(d.Tag)
		}
	}
	s.buf = append(s.buf, held{c, e})
	s.wake.Signal()
}

// handOut makes e's delivery, recorded as unsettled unless auto-acked, so
// that the consumer can settle it the moment it has it.
func (s *subscription) handOut(c *consumer, e *entry) *transport.Delivery {
	d := e.delivery(c.q, c.tag, s.acks.nextTag())
	if !s.autoAck {
		s.acks.track(d.Tag, c.q, e)
		d.Acknowledger = &s.acks
	}
	return d
}

// refill lets s's queues offer it messages again.
func (s *subscription) refill() {
	if s.stopped {
		return
	}
	for _, c := range s.consumers {
		s.conn.b.markDirty(c.q)
	}
}

// SetPrefetch changes the prefetch limit of the running subscription: a
// higher one lets its queues hand over more at once, a lower one holds
// back the next deliveries until enough of those made are settled.
func (s *subscription) SetPrefetch(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("memory: set prefetch: negative prefetch %d", n)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.conn.b
	b.mu.Lock()
	defer b.unlock()
	s.prefetch = n
	s.refill()
	return nil
}

// run hands over, one at a time, the messages that found no room in the
// channel. A message is recorded as unsettled before it is sent, so that
// the consumer can ack it the moment it arrives; if the subscription ends
// before the consumer takes it, run takes the record back and returns the
// message to its queue as never delivered.
func (s *subscription) run() {
	b := s.conn.b
	b.mu.Lock()
	for {
		// What the last hand-over made room for is dispatched before
		// waiting: Wait releases the lock without b.unlock's work.
		b.drain()
		for len(s.buf) == 0 && !s.stopped {
			s.wake.Wait()
		}
		if s.stopped {
			break
		}
		h := s.buf[0]
		s.buf = append(s.buf[:0], s.buf[1:]...)
		d := s.handOut(h.c, h.e)
		s.sending = true
		s.refill()
		b.unlock()
		select {
		case s.ch <- d:
			b.mu.Lock()
		case <-s.stop:
			b.mu.Lock()
			if !s.autoAck && s.acks.forget(d.Tag) {
				h.c.q.requeue(h.e)
			} else if s.autoAck {
				h.c.q.requeue(h.e)
			}
		}
		s.sending = false
		s.refill()
	}
	s.takeBack()
	s.exited = true
	close(s.ch)
	close(s.done)
	s.conn.forgetIfDone(s)
	b.unlock()
}

// takeBack returns the deliveries waiting in the channel's buffer to their
// queues, unmarked: they were never handed over.
func (s *subscription) takeBack() {
	for {
		select {
		case d := <-s.ch:
			if u, ok := s.acks.untrack(d.Tag); ok {
				u.q.requeue(u.e)
			}
		default:
			return
		}
	}
}

// end stops s: its consumers leave their queues and the messages it took
// but did not hand over go back, unmarked. Delivered ones stay unsettled.
func (s *subscription) end(err error) {
	if s.stopped {
		return
	}
	s.stopped, s.err = true, err
	close(s.stop)
	s.wake.Signal()
	for _, h := range s.buf {
		h.c.q.requeue(h.e)
	}
	s.buf = nil
	if cap(s.ch) > 0 {
		s.takeBack()
	}
	for _, c := range s.consumers {
		c.q.removeConsumer(c)
	}
}

func (s *subscription) Deliveries() <-chan *transport.Delivery { return s.ch }

func (s *subscription) Done() <-chan struct{} { return s.done }

func (s *subscription) Err() error {
	b := s.conn.b
	b.mu.Lock()
	defer b.unlock()
	return s.err
}

// Cancel ends the subscription and waits until its channel is closed and
// every message it held is back in its queue.
func (s *subscription) Cancel(ctx context.Context) error {
	b := s.conn.b
	b.mu.Lock()
	s.end(nil)
	b.unlock()
	select {
	case <-s.done:
		return nil
	default:
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
