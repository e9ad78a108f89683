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
//
// Because an ack returns before its delete lands, a service that slows
// down would otherwise gather an ever longer tail of deletes (each one a
// message whose lease is still being extended) while consumers go on
// taking and acking more. So a Batcher runs a bounded number of sends at
// once and makes Add wait once that many full batches wait behind them:
// acks then slow to the pace the service deletes at.
package ackbatch

import (
	"context"
	"sync"
	"time"
)

// Batcher queues items per key (a queue) and hands them to send in
// batches: max at a time, or fewer once the first has waited linger, or
// all on Close, which waits for every batch in flight. send runs on a
// goroutine of the Batcher's, never two for one batch; batches of one key
// may run concurrently, at most calls of them (of all keys) at once.
type Batcher[T any] struct {
	max  int
	send func([]T)
	// calls holds a token per send running; its capacity bounds them.
	calls chan struct{}
	// limit is how many items may be queued or being sent before Add
	// waits: calls full batches sending and as many again waiting.
	limit int
	// Linger is how long the first item of a key waits for others before
	// a batch goes with fewer than max; tests may set it before the first Add.
	Linger time.Duration

	mu      sync.Mutex
	pending map[string]*waiting[T]
	held    int           // items added and not yet sent
	freed   chan struct{} // closed (and replaced) when held falls or on Close
	closed  bool
	wg      sync.WaitGroup // batches in flight
}

// waiting are a key's items not yet sent.
type waiting[T any] struct {
	items []T
	timer *time.Timer
}

// New returns a Batcher sending up to size items at a time to send, with
// at most calls sends running at once.
func New[T any](size int, linger time.Duration, calls int, send func([]T)) *Batcher[T] {
	calls = max(calls, 1)
	return &Batcher[T]{max: size, send: send, Linger: linger, calls: make(chan struct{}, calls),
		limit: 2 * calls * size, pending: map[string]*waiting[T]{}, freed: make(chan struct{})}
}

// Add queues item under key. It reports false, with a nil error, once the
// Batcher is closed (the caller then deletes the item itself). While as
// many items as the Batcher holds at most are queued or being sent, it
// waits for a send to finish; if ctx ends first it returns false and ctx's
// error, and the item is not queued.
func (b *Batcher[T]) Add(ctx context.Context, key string, item T) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.held >= b.limit {
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
			b.mu.Lock()
		case <-ctx.Done():
			b.mu.Lock()
			return false, ctx.Err()
		}
	}
	if b.closed {
		return false, nil
	}
	b.held++
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
		return true, nil
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(b.Linger, func() { b.due(key) })
	}
	return true, nil
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

// start sends a batch on a goroutine of its own once fewer than calls
// sends are running; b.mu is held.
func (b *Batcher[T]) start(batch []T) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.calls <- struct{}{}
		b.send(batch)
		<-b.calls
		b.mu.Lock()
		b.held -= len(batch)
		b.wake()
		b.mu.Unlock()
	}()
}

// wake lets the Adds waiting for room look again; b.mu is held.
func (b *Batcher[T]) wake() {
	close(b.freed)
	b.freed = make(chan struct{})
}

// Close sends every waiting item and waits for all batches in flight.
// Later Adds return false. It may be called more than once.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	b.closed = true
	b.wake() // waiting Adds return false: their callers delete the items themselves
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
