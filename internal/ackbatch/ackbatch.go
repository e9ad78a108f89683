// Package ackbatch gathers acked messages' deletes into batches, per
// queue, for the stores whose service deletes many messages in one call
// (SQS's DeleteMessageBatch, a MongoDB delete command of many statements).
//
// An ack queued here returns at once: a consumer that settles its messages
// one after another would otherwise wait for a round trip per message and
// gain nothing from batching. The store's send function owns what happens
// to a batch, failures included (retry alone, log): a delete that never
// lands leaves the message to come back when its lease runs out, the
// at-least-once of an ack that never reached the broker.
package ackbatch

import (
	"sync"
	"time"
)

// Batcher queues items per key (a queue) and hands them to send in
// batches: max at a time, or fewer once the first has waited linger, or
// all on Close, which waits for every batch in flight. send runs on a
// goroutine of the Batcher's, never two for one batch; batches of one key
// may run concurrently.
type Batcher[T any] struct {
	max  int
	send func([]T)
	// Linger is how long the first item of a key waits for others before
	// a batch goes with fewer than max; tests may set it before the first Add.
	Linger time.Duration

	mu      sync.Mutex
	pending map[string]*waiting[T]
	closed  bool
	wg      sync.WaitGroup // batches in flight
}

// waiting are a key's items not yet sent.
type waiting[T any] struct {
	items []T
	timer *time.Timer
}

// New returns a Batcher sending up to max items at a time to send.
func New[T any](max int, linger time.Duration, send func([]T)) *Batcher[T] {
	return &Batcher[T]{max: max, send: send, Linger: linger, pending: map[string]*waiting[T]{}}
}

// Add queues item under key; false once the Batcher is closed (the caller
// then deletes it itself).
func (b *Batcher[T]) Add(key string, item T) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	w := b.pending[key]
	if w == nil {
		w = &waiting[T]{}
		b.pending[key] = w
	}
	w.items = append(w.items, item)
	if len(w.items) >= b.max {
		batch := w.items
		w.items = nil
		if w.timer != nil {
			w.timer.Stop()
			w.timer = nil
		}
		b.start(batch)
		return true
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(b.Linger, func() { b.due(key) })
	}
	return true
}

// due sends a key's items whose linger is over.
func (b *Batcher[T]) due(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.pending[key]
	if w == nil || len(w.items) == 0 {
		return
	}
	batch := w.items
	w.items, w.timer = nil, nil
	b.start(batch)
}

// start sends a batch on a goroutine of its own; b.mu is held.
func (b *Batcher[T]) start(batch []T) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.send(batch)
	}()
}

// Close sends every waiting item and waits for all batches in flight.
// Later Adds return false. It may be called more than once.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	b.closed = true
	for key, w := range b.pending {
		if w.timer != nil {
			w.timer.Stop()
		}
		if len(w.items) > 0 {
			b.start(w.items)
		}
		delete(b.pending, key)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
