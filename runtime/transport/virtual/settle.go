package virtual

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// held is a message this connection took from its store.
type held struct {
	queue     string
	taken     Taken
	delivered bool // handed to a consumer, or returned by Get
}

// take takes the next message of the queue and decodes it for its
// receiver. A message that is not a Kombu envelope is quarantined where the
// store can (and the next one taken), and otherwise delivered as
// UndecodableDelivery describes, for the runtime to reject.
func (c *conn) take(ctx context.Context, queue string) (*held, *transport.Delivery, error) {
	for {
		t, err := c.store.Take(ctx, queue)
		if err != nil {
			return nil, nil, err
		}
		h, d, err := c.decodeTaken(ctx, queue, t)
		if err != nil || h != nil {
			return h, d, err
		}
	}
}

// decodeTaken decodes a taken message for its receiver. A message that is
// not a Kombu envelope is quarantined where the store can (h is nil then),
// and otherwise delivered as UndecodableDelivery describes.
func (c *conn) decodeTaken(ctx context.Context, queue string, t Taken) (*held, *transport.Delivery, error) {
	// One allocation for both: a consumer pays per message for each.
	hd := &struct {
		h held
		d transport.Delivery
	}{h: held{queue: queue, taken: t}}
	h, d := &hd.h, &hd.d
	var err error
	if !decodeEnvelopeInto(t.Envelope, d) {
		var slow *transport.Delivery
		if slow, err = decodeEnvelopeSlow(t.Envelope); err == nil {
			*d = *slow
		}
	}
	if err != nil {
		if q, ok := c.store.(Quarantiner); ok {
			if qerr := q.Quarantine(ctx, t.Receipt, err); qerr != nil {
				c.restore([]*held{h})
				return nil, nil, fmt.Errorf("quarantine a message that is not a Kombu envelope (%v): %w", err, qerr)
			}
			c.log.Warn(c.name+": a message that is not a Kombu envelope was set aside", "queue", queue, "error", err)
			return nil, nil, nil
		}
		d = UndecodableDelivery(t.Envelope, err)
	}
	d.Redelivered = d.Redelivered || t.Redelivered
	d.Queue = queue
	return h, d, nil
}

// takeBatch takes up to max messages of the queue at once from a
// BatchTaker and decodes them, in order; those it quarantined are left
// out, so it may return none.
func (c *conn) takeBatch(ctx context.Context, b BatchTaker, queue string, max int) ([]*held, []*transport.Delivery, error) {
	ts, err := b.TakeBatch(ctx, queue, max)
	if err != nil {
		return nil, nil, err
	}
	hs, ds := make([]*held, 0, len(ts)), make([]*transport.Delivery, 0, len(ts))
	for i, t := range ts {
		h, d, err := c.decodeTaken(ctx, queue, t)
		if err != nil {
			// Put back what is not handed over: the rest of the batch.
			rest := hs
			for _, t := range ts[i+1:] {
				rest = append(rest, &held{queue: queue, taken: t})
			}
			c.restore(rest)
			return nil, nil, err
		}
		if h != nil {
			hs, ds = append(hs, h), append(ds, d)
		}
	}
	return hs, ds, nil
}

// scope numbers the deliveries of a subscription (or of a connection's
// Gets) and settles them. Kombu's delivery tags are UUID strings in the
// envelope; the contract's are integers, so each scope maps its integers to
// the messages it holds.
type scope struct {
	c      *conn
	sub    *subscription // nil for Get
	mu     sync.Mutex
	closed bool
	last   uint64
	tags   []uint64 // ascending
	held   []*held
}

var (
	_ transport.Acknowledger   = (*scope)(nil)
	_ transport.ReasonRejecter = (*scope)(nil)
)

// track numbers a delivery and records its message. It reports false once
// the scope is closed.
func (a *scope) track(h *held, d *transport.Delivery) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.last++
	d.Tag = a.last
	h.delivered = true
	a.tags = append(a.tags, a.last)
	a.held = append(a.held, h)
	return true
}

func (a *scope) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tags)
}

func (a *scope) find(tag uint64) (int, error) {
	i, ok := slices.BinarySearch(a.tags, tag)
	if !ok {
		return 0, a.c.errorf("unknown delivery tag %d: never delivered here, or already settled: %w", tag, transport.ErrPrecondition)
	}
	return i, nil
}

// forget drops a delivery that was never handed over.
func (a *scope) forget(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i, err := a.find(tag); err == nil {
		a.held[i].delivered = false
		a.tags = slices.Delete(a.tags, i, i+1)
		a.held = slices.Delete(a.held, i, i+1)
	}
}

// takeAll closes the scope and returns its unsettled messages.
func (a *scope) takeAll() []*held {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	out := a.held
	a.tags, a.held = nil, nil
	return out
}

// settled tells the subscription a prefetch slot is free.
func (a *scope) settled() {
	if a.sub != nil {
		select {
		case a.sub.settledCh <- struct{}{}:
		default:
		}
	}
}

// Ack acknowledges the delivery, and with multiple every earlier one of the
// scope (all of them for tag 0): the store forgets the messages for good.
func (a *scope) Ack(tag uint64, multiple bool) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return transport.ErrClosed
	}
	n, lo := len(a.tags), 0
	if !multiple || tag != 0 {
		i, err := a.find(tag)
		if err != nil {
			a.mu.Unlock()
			return err
		}
		n = i + 1
		if !multiple {
			lo = i
		}
	}
	if n-lo == 1 {
		// One message, as most acks are: settled without the slices
		// the general case makes.
		h := a.held[lo]
		a.tags = slices.Delete(a.tags, lo, n)
		a.held = slices.Delete(a.held, lo, n)
		a.c.settling.Add(1)
		a.mu.Unlock()
		defer a.c.settling.Done()
		defer a.settled()
		return a.c.ack(h)
	}
	done := slices.Clone(a.held[lo:n])
	a.tags = slices.Delete(a.tags, lo, n)
	a.held = slices.Delete(a.held, lo, n)
	// Counted under the scope's lock, so before Close has closed the
	// scope: Close waits for the store to have these.
	a.c.settling.Add(1)
	a.mu.Unlock()
	defer a.c.settling.Done()
	defer a.settled()
	var errs []error
	for _, h := range done {
		errs = append(errs, a.c.ack(h))
	}
	return errors.Join(errs...)
}

// Reject settles the delivery. With requeue the message goes back to its
// queue marked redelivered; without, it goes to the dead-letter exchange
// this connection declared its queue with, or is dropped if there is none.
func (a *scope) Reject(tag uint64, requeue bool) error { return a.reject(tag, requeue, "") }

// RejectWithReason is Reject without requeue whose dead letter carries
// reason in transport.ErrorHeader.
func (a *scope) RejectWithReason(tag uint64, reason string) error {
	return a.reject(tag, false, reason)
}

func (a *scope) reject(tag uint64, requeue bool, reason string) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return transport.ErrClosed
	}
	i, err := a.find(tag)
	if err != nil {
		a.mu.Unlock()
		return err
	}
	h := a.held[i]
	a.tags = slices.Delete(a.tags, i, i+1)
	a.held = slices.Delete(a.held, i, i+1)
	a.c.settling.Add(1)
	a.mu.Unlock()
	defer a.c.settling.Done()
	defer a.settled()
	switch dl := a.c.deadLetterFor(h.queue); {
	case requeue:
		return a.c.restore([]*held{h})
	case dl != nil:
		return a.c.deadLetter(h, dl, reason)
	}
	return a.c.drop(h, reason)
}

// ack removes a message from the store for good.
func (c *conn) ack(h *held) error {
	var err error
	if c.quick != nil {
		err = c.quick.AckQuick(h.taken.Receipt)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err = c.store.Ack(ctx, h.taken.Receipt)
		cancel()
	}
	if err != nil {
		return c.wrap("ack a message of "+h.queue, err) // the name joined only for an error: acks are per message
	}
	return nil
}

// drop settles a rejected message that goes to no dead-letter exchange:
// kept aside where the store is a Rejecter, removed otherwise.
func (c *conn) drop(h *held, reason string) error {
	r, ok := c.store.(Rejecter)
	if !ok {
		return c.ack(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.wrap("reject a message of "+h.queue, r.Reject(ctx, h.taken.Receipt, reason))
}

// restore makes taken messages ready again: those delivered marked
// redelivered, as Kombu's restore marks them, those never handed over as
// they were.
func (c *conn) restore(hs []*held) error {
	var errs []error
	for _, h := range hs {
		envelope := h.taken.Envelope
		if h.delivered {
			if marked, err := MarkRedelivered(envelope); err == nil {
				envelope = marked
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err := c.store.Restore(ctx, h.taken.Receipt, envelope)
		cancel()
		if err != nil {
			c.log.Warn(c.name+": a taken message could not be restored; the store's recovery restores it once this connection is gone",
				"queue", h.queue, "error", err)
			errs = append(errs, c.wrap("restore a message of "+h.queue, err))
		}
	}
	return errors.Join(errs...)
}

// deadLetter settles a rejected message by publishing it to its queue's
// dead-letter exchange, as RabbitMQ does: with the dead-letter routing key
// if the queue has one, else the routing key it was published with, an
// x-death entry (WithDeath), no expiration, and reason in
// transport.ErrorHeader. Routing follows publishing's rules. The message
// is acked once its dead letter is stored; if storing fails, it is
// restored to its queue instead, and the error returned. (A crash between
// the two leaves both: the dead letter, and the message for the store's
// recovery.)
func (c *conn) deadLetter(h *held, dl *DeadLetter, reason string) error {
	d, err := DecodeEnvelope(h.taken.Envelope)
	if err != nil {
		// Not an envelope: it cannot carry an x-death header or name its
		// routing key. It is dropped, as without a dead-letter exchange.
		c.log.Warn(c.name+": a rejected message is not a Kombu envelope and cannot be dead-lettered; dropped, or kept aside where the store keeps rejected messages",
			"queue", h.queue, "error", err)
		return c.drop(h, reason)
	}
	key := d.RoutingKey
	if dl.HasRoutingKey {
		key = dl.RoutingKey
	}
	headers := WithDeath(d.Headers, Death{Queue: h.queue, Reason: ReasonRejected,
		Exchange: d.Exchange, RoutingKey: d.RoutingKey, Expiration: d.Properties.Expiration}, time.Now())
	// The dead letter is delivered from its new queue as a fresh message.
	delete(headers, "redelivered")
	if reason != "" {
		headers[transport.ErrorHeader] = reason
	}
	p := &transport.Publishing{Exchange: dl.Exchange, RoutingKey: key, Body: d.Body, Headers: headers, Properties: d.Properties}
	p.Expiration = 0 // as RabbitMQ: a dead letter does not expire again
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := c.routeAndPut(ctx, p, nil); err != nil {
		if rerr := c.restore([]*held{h}); rerr != nil {
			return errors.Join(fmt.Errorf("dead-letter: %w", err), rerr)
		}
		return fmt.Errorf("dead-letter (the message went back to %q): %w", h.queue, err)
	}
	return c.ack(h)
}
