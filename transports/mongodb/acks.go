package mongodb

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxAckBatch is the most acks one delete command carries.
const maxAckBatch = 100

// deleteCalls is how many delete commands run at once: past that, and as
// many batches again waiting, an Ack waits for one to finish (a slow
// server slows acks down instead of gathering deletes without end).
const deleteCalls = 4

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

// deleteBatch deletes a batch of acked copies (gathered by s.deletes, an
// ackbatch.Batcher: maxAckBatch at most, ackLinger after the first, or on
// close) in one delete command holding a statement per copy (a bulk write
// of DeleteOne, unordered), which FerretDB runs as that many deletes by
// _id, each handed to SQLite, where a deleteMany by {_id: {$in: ...}} would
// scan the collection. A statement that failed, or every statement of a
// command that failed, is deleted again on its own, and a failure of that
// logged: the copy stays, its lease (no longer extended) runs out, and the
// message is put back and delivered again.
func (s *store) deleteBatch(batch []ackDelete) {
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
