package memory

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/kombu-go/kombu/runtime/transport"
)

// ackScope numbers deliveries and settles them, like an AMQP channel: each
// subscription has one, and each connection has one for Get. It is the
// deliveries' Acknowledger.
type ackScope struct {
	conn    *conn
	sub     *subscription // nil for the connection's Get scope
	lastTag uint64
	unacked []unacked // ascending by tag
	// backing is the array unacked was last allocated as: settling the
	// first record moves unacked's start along it (see remove), and track
	// moves the records back to its start rather than grow a new one once
	// unacked reaches its end, so that a subscription acking in order
	// reuses one array instead of allocating one every prefetch messages.
	backing []unacked
}

// unacked is a delivered message not yet settled.
type unacked struct {
	tag uint64
	q   *queue
	e   *entry
}

func (a *ackScope) nextTag() uint64 {
	a.lastTag++
	return a.lastTag
}

func (a *ackScope) track(tag uint64, q *queue, e *entry) {
	if n := len(a.unacked); n == cap(a.unacked) {
		if n < cap(a.backing)/2 {
			// Half the array or more lies before unacked's start,
			// settled: move the records back to its start.
			moved := copy(a.backing[:n], a.unacked)
			clear(a.backing[moved:cap(a.backing)])
			a.unacked = a.backing[:moved]
		} else {
			grown := make([]unacked, n, max(2*n, 8))
			copy(grown, a.unacked)
			clear(a.unacked)
			a.backing, a.unacked = grown[:0], grown
		}
	}
	a.unacked = append(a.unacked, unacked{tag, q, e}) // room made above
}

// find returns the index of tag among the unsettled deliveries.
func (a *ackScope) find(tag uint64) (int, error) {
	if len(a.unacked) > 0 && a.unacked[0].tag == tag {
		return 0, nil // settled in the order delivered, as a consumer acking each does
	}
	i, ok := slices.BinarySearchFunc(a.unacked, tag, func(u unacked, tag uint64) int { return cmp.Compare(u.tag, tag) })
	if !ok {
		// RabbitMQ closes the channel with PRECONDITION_FAILED here; a
		// memory connection has no channel to lose, so it only reports it.
		return 0, fmt.Errorf("memory: unknown delivery tag %d: never delivered here, or already settled: %w", tag, transport.ErrPrecondition)
	}
	return i, nil
}

// Ack settles the delivery with the given tag, and with multiple every
// earlier one too; multiple with tag 0 settles all, as in AMQP.
func (a *ackScope) Ack(tag uint64, multiple bool) error {
	b := a.conn.b
	b.mu.Lock()
	defer b.unlock()
	if a.conn.closed {
		return transport.ErrClosed
	}
	n := len(a.unacked)
	if !multiple || tag != 0 {
		i, err := a.find(tag)
		if err != nil {
			return err
		}
		n = i + 1
		if !multiple {
			a.remove(i)
			a.settled()
			return nil
		}
	}
	clear(a.unacked[:n])
	a.unacked = a.unacked[n:]
	a.settled()
	return nil
}

// Reject settles the delivery with the given tag by returning it to its
// queue, marked redelivered, or by dead-lettering it.
func (a *ackScope) Reject(tag uint64, requeue bool) error { return a.reject(tag, requeue, "") }

// RejectWithReason dead-letters the delivery with reason in the dead
// letter's transport.ErrorHeader.
func (a *ackScope) RejectWithReason(tag uint64, reason string) error {
	return a.reject(tag, false, reason)
}

func (a *ackScope) reject(tag uint64, requeue bool, reason string) error {
	b := a.conn.b
	b.mu.Lock()
	defer b.unlock()
	if a.conn.closed {
		return transport.ErrClosed
	}
	i, err := a.find(tag)
	if err != nil {
		return err
	}
	u := a.unacked[i]
	a.remove(i)
	if requeue {
		u.e.redelivered = true
		u.q.requeue(u.e)
	} else {
		b.deadLetterWithText(u.q, u.e, reasonRejected, reason)
	}
	a.settled()
	return nil
}

// forget drops the record of a delivery that was never handed over, and
// reports whether there was one (an ack of every delivery, multiple with
// tag 0, settles those on their way too).
func (a *ackScope) forget(tag uint64) bool {
	_, ok := a.untrack(tag)
	return ok
}

// untrack removes the record of a delivery and returns it.
func (a *ackScope) untrack(tag uint64) (unacked, bool) {
	i, err := a.find(tag)
	if err != nil {
		return unacked{}, false
	}
	u := a.unacked[i]
	a.remove(i)
	return u, true
}

// remove drops the i-th record. Deliveries are mostly settled in the order
// they were made, so the first goes without moving the others.
func (a *ackScope) remove(i int) {
	switch {
	case len(a.unacked) == 1:
		a.unacked[0] = unacked{}
		a.unacked = a.unacked[:0] // the room it had stays for the next
		return
	case i == 0:
		a.unacked[0] = unacked{}
		a.unacked = a.unacked[1:]
		return
	}
	a.unacked = slices.Delete(a.unacked, i, i+1)
}

// requeueAll returns every unsettled delivery to its queue, marked
// redelivered, as RabbitMQ does when a channel closes.
func (a *ackScope) requeueAll() {
	for _, u := range a.unacked {
		u.e.redelivered = true
		u.q.requeue(u.e)
	}
	clear(a.unacked)
	a.unacked = a.unacked[:0]
}

// settled follows a settlement: a subscription below its prefetch limit may
// take more, and an ended one with nothing left to settle can be forgotten.
func (a *ackScope) settled() {
	if s := a.sub; s != nil {
		s.refill()
		s.conn.forgetIfDone(s)
	}
}
