package memory

import (
	"context"
	"strconv"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// subBuffer is how many messages a subscription takes from its queues ahead
// of the one it is handing over. RabbitMQ pushes every message it can to a
// consumer without a prefetch limit; keeping the rest ready in the queue
// instead lets an idle consumer take them, and Get, Purge and the ready
// count see them.
const subBuffer = 1

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
// push messages into buf under the broker lock; run moves them to the
// Deliveries channel one at a time with the lock released, so a slow reader
// holds up nobody else.
type subscription struct {
	conn      *conn
	acks      ackScope
	consumers []*consumer
	autoAck   bool
	prefetch  int
	buf       []held
	wake      sync.Cond // signalled when buf fills or the subscription ends
	ch        chan *transport.Delivery
	stop      chan struct{} // closed when the subscription ends
	done      chan struct{} // closed when run has returned
	stopped   bool
	exited    bool  // run has returned
	err       error // why the broker ended it
}

func (c *conn) subscribe(spec transport.ConsumeSpec, queues []*queue) *subscription {
	b := c.b
	s := &subscription{
		conn: c, autoAck: spec.AutoAck, prefetch: spec.Prefetch,
		ch: make(chan *transport.Delivery), stop: make(chan struct{}), done: make(chan struct{}),
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
// prefetch counts unsettled deliveries, and does not apply with auto-ack.
func (s *subscription) canTake() bool {
	if s.stopped || len(s.buf) >= subBuffer {
		return false
	}
	return s.autoAck || s.prefetch == 0 || len(s.buf)+len(s.acks.unacked) < s.prefetch
}

func (s *subscription) push(c *consumer, e *entry) {
	s.buf = append(s.buf, held{c, e})
	s.wake.Signal()
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

// run hands messages over one at a time. A message is recorded as unsettled
// before it is sent, so that the consumer can ack it the moment it arrives;
// if the subscription ends before the consumer takes it, run takes the
// record back and returns the message to its queue as never delivered.
func (s *subscription) run() {
	b := s.conn.b
	b.mu.Lock()
	for {
		for len(s.buf) == 0 && !s.stopped {
			s.wake.Wait()
		}
		if s.stopped {
			break
		}
		h := s.buf[0]
		s.buf = append(s.buf[:0], s.buf[1:]...)
		d := h.e.delivery(h.c.q, h.c.tag, s.acks.nextTag())
		if !s.autoAck {
			s.acks.track(d.Tag, h.c.q, h.e)
			d.Acknowledger = &s.acks
		}
		s.refill()
		b.unlock()
		select {
		case s.ch <- d:
			b.mu.Lock()
		case <-s.stop:
			b.mu.Lock()
			s.acks.forget(d.Tag)
			h.c.q.requeue(h.e)
		}
	}
	s.exited = true
	close(s.ch)
	close(s.done)
	s.conn.forgetIfDone(s)
	b.unlock()
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
