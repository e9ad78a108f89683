package mongodb

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxAckBatch is the most acks one delete command carries.
const maxAckBatch = 100

// ackLinger is how long an ack waits for others before its delete command
// goes with fewer than maxAckBatch.
const ackLinger = 2 * time.Millisecond

// ackDelete is an acked copy's delete: its filter (store.settled) and, for
// the log, its queue and original's id.
type ackDelete struct {
	filter   bson.D
	queue    string
	original bson.ObjectID
	copyID   bson.ObjectID // forgotten (its lease no longer extended) once the delete was tried
}

// deleter deletes acked copies in batches: one delete command holding a
// statement per copy (a bulk write of DeleteOne, unordered), which
// FerretDB runs as that many deletes by _id, each handed to SQLite, where
// a deleteMany by {_id: {$in: ...}} would scan the collection. A batch
// goes when maxAckBatch wait, after linger, or on close, which sends what
// waits and waits for every command in flight. A statement that failed,
// or every statement of a command that failed, is deleted again on its
// own, and a failure of that logged: the copy stays, its lease (no longer
// extended) runs out, and the message is put back and delivered again.
type deleter struct {
	s      *store
	linger time.Duration

	mu      sync.Mutex
	pending []ackDelete
	timer   *time.Timer
	closed  bool
	wg      sync.WaitGroup // batches in flight
}

func newDeleter(s *store, linger time.Duration) *deleter {
	return &deleter{s: s, linger: linger}
}

// add queues a copy's delete; false once the deleter is closed (the caller
// deletes it itself then).
func (d *deleter) add(a ackDelete) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.pending = append(d.pending, a)
	if len(d.pending) >= maxAckBatch {
		batch := d.pending
		d.pending = nil
		if d.timer != nil {
			d.timer.Stop()
			d.timer = nil
		}
		d.wg.Add(1)
		go d.send(batch)
		return true
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(d.linger, d.due)
	}
	return true
}

// due sends the acks whose linger is over.
func (d *deleter) due() {
	d.mu.Lock()
	batch := d.pending
	d.pending, d.timer = nil, nil
	if len(batch) == 0 {
		d.mu.Unlock()
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	d.send(batch)
}

// close sends the waiting acks and waits for all batches in flight.
func (d *deleter) close() {
	d.mu.Lock()
	d.closed = true
	batch := d.pending
	d.pending = nil
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if len(batch) > 0 {
		d.wg.Add(1)
	}
	d.mu.Unlock()
	if len(batch) > 0 {
		d.send(batch)
	}
	d.wg.Wait()
}

// send deletes a batch of copies in one command; those it may not have
// deleted are deleted one by one.
func (d *deleter) send(batch []ackDelete) {
	defer d.wg.Done()
	s := d.s
	defer func() {
		for _, a := range batch {
			s.forget(a.copyID)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(batch) == 1 {
		_ = s.deleteOne(ctx, batch[0])
		return
	}
	models := make([]mongo.WriteModel, len(batch))
	for i, a := range batch {
		models[i] = mongo.NewDeleteOneModel().SetFilter(a.filter)
	}
	_, err := s.messages.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if err == nil {
		return
	}
	retry := make([]bool, len(batch))
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		for _, we := range bwe.WriteErrors {
			if we.Index >= 0 && we.Index < len(batch) {
				retry[we.Index] = true
			}
		}
	} else {
		for i := range retry {
			retry[i] = true // which went is unknown: all go again
		}
	}
	s.log.Debug("mongodb: a batch of acks' deletes failed in part; deleting those one by one", "error", s.wrap("ack", err))
	for i, a := range batch {
		if retry[i] {
			_ = s.deleteOne(ctx, a)
		}
	}
}
