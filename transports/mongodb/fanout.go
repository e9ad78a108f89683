package mongodb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Fanout, as Kombu's MongoDB transport does it (supports_fanout): a
// publish through a fanout exchange inserts one document {payload, queue:
// <exchange>} into the capped collection "messages.broadcast", and every
// queue bound to the exchange reads it through a tailable cursor on
// {queue: <exchange>}, from the time of its binding on. Kombu keeps which
// queues are fanout queues, and where their cursors are, in the memory of
// the process (a class attribute, shared by its channels): so does
// kombu-go, per database, shared by the process's connections to it, so
// that each message reaches each fanout queue of a process once.

const (
	broadcastCollection = "messages.broadcast"
	// cappedSize is Kombu's capped_queue_size: the capped collection's
	// bytes, its oldest documents overwritten beyond it.
	cappedSize = 100000
)

var _ virtual.Broadcaster = (*store)(nil)

// fanoutQueue is a queue bound to a fanout exchange, in this process.
type fanoutQueue struct {
	mu       sync.Mutex
	exchange string
	last     bson.ObjectID // the last broadcast read, or the newest when the queue was bound
	cur      *mongo.Cursor // tailable, on {queue: exchange, _id > last}; nil: to open
	owner    *store        // whose client cur belongs to
	back     []string      // envelopes given back (requeued), delivered before the cursor's
}

var fanouts = struct {
	sync.Mutex
	m map[string]*fanoutQueue // database key + "\x00" + queue
}{m: map[string]*fanoutQueue{}}

func (s *store) fanoutKey(queue string) string { return s.o.masked + "\x00" + queue }

// fanout returns the queue's fanout state in this process, or nil.
func (s *store) fanout(queue string) *fanoutQueue {
	fanouts.Lock()
	defer fanouts.Unlock()
	return fanouts.m[s.fanoutKey(queue)]
}

// createBroadcast makes Kombu's capped collection, as Kombu does when it
// connects (_create_broadcast), and its index on queue.
func (s *store) createBroadcast(ctx context.Context) error {
	db := s.messages.Database()
	names, err := db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: broadcastCollection}})
	if err != nil {
		return s.wrap("list collections", err)
	}
	if len(names) == 0 {
		err := db.CreateCollection(ctx, broadcastCollection, options.CreateCollection().SetCapped(true).SetSizeInBytes(cappedSize))
		var ce mongo.CommandError
		if err != nil && !(errors.As(err, &ce) && ce.Code == 48) { // NamespaceExists: another process made it first
			return s.wrap("create the capped collection "+broadcastCollection, err)
		}
	}
	if _, err := s.broadcast.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "queue", Value: 1}}}); err != nil {
		return s.wrap("create the broadcast index", err)
	}
	return nil
}

// PutFanout inserts Kombu's broadcast document (_put_fanout).
func (s *store) PutFanout(ctx context.Context, exchange string, envelope []byte) error {
	_, err := s.broadcast.InsertOne(ctx, bson.D{{Key: "payload", Value: string(envelope)}, {Key: "queue", Value: exchange}})
	return s.wrap("publish to fanout exchange "+exchange, err)
}

// FanoutBound makes the queue a fanout queue of the exchange in this
// process, reading what is broadcast from now on (Kombu skips what the
// collection holds when it binds), or no longer one.
func (s *store) FanoutBound(ctx context.Context, exchange, queue string, bound bool) error {
	key := s.fanoutKey(queue)
	if !bound {
		fanouts.Lock()
		f := fanouts.m[key]
		if f != nil && f.exchange == exchange {
			delete(fanouts.m, key)
		}
		fanouts.Unlock()
		if f != nil {
			f.close(nil)
		}
		return nil
	}
	if f := s.fanout(queue); f != nil && f.exchange == exchange {
		return nil
	}
	last, err := s.newestBroadcast(ctx, exchange)
	if err != nil {
		return err
	}
	fanouts.Lock()
	old := fanouts.m[key]
	if old == nil || old.exchange != exchange {
		fanouts.m[key] = &fanoutQueue{exchange: exchange, last: last}
	}
	fanouts.Unlock()
	if old != nil && old.exchange != exchange {
		old.close(nil)
	}
	return nil
}

// newestBroadcast returns the id of the exchange's newest broadcast
// document (the zero id when there is none).
func (s *store) newestBroadcast(ctx context.Context, exchange string) (bson.ObjectID, error) {
	var doc struct {
		ID bson.ObjectID `bson:"_id"`
	}
	err := s.broadcast.FindOne(ctx, bson.D{{Key: "queue", Value: exchange}},
		options.FindOne().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return bson.ObjectID{}, nil
	}
	if err != nil {
		return bson.ObjectID{}, s.wrap("read the broadcast of "+exchange, err)
	}
	return doc.ID, nil
}

// broadcastReceipt is a fanout message's receipt: the broadcast stays in
// the capped collection for the other queues; a requeue gives it back to
// this process's queue.
type broadcastReceipt struct {
	queue    string
	envelope string
}

// takeFanout takes the queue's next broadcast: one given back first, else
// the next document of the tailable cursor, opened (again) after the last
// one read where it has none or the server ended it.
func (s *store) takeFanout(ctx context.Context, f *fanoutQueue, queue string) (virtual.Taken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.back) > 0 {
		env := f.back[0]
		f.back = f.back[1:]
		return virtual.Taken{Envelope: []byte(env), Receipt: broadcastReceipt{queue: queue, envelope: env}}, nil
	}
	if f.cur == nil {
		filter := bson.D{{Key: "queue", Value: f.exchange}}
		if !f.last.IsZero() {
			filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: f.last}}})
		}
		cur, err := s.broadcast.Find(ctx, filter, options.Find().SetCursorType(options.Tailable))
		if err != nil {
			return virtual.Taken{}, s.wrap("read the broadcast of "+f.exchange, err)
		}
		f.cur, f.owner = cur, s
	}
	if !f.cur.TryNext(ctx) {
		err := f.cur.Err()
		if err != nil || f.cur.ID() == 0 {
			// Dead (a tailable cursor that found nothing ends at once,
			// and the server may end one whose place was overwritten):
			// the next take opens another after the last read.
			_ = f.cur.Close(context.WithoutCancel(ctx))
			f.cur, f.owner = nil, nil
		}
		if err != nil && ctx.Err() == nil {
			return virtual.Taken{}, s.wrap("read the broadcast of "+f.exchange, err)
		}
		return virtual.Taken{}, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	var doc struct {
		ID      bson.ObjectID `bson:"_id"`
		Payload string        `bson:"payload"`
	}
	if err := f.cur.Decode(&doc); err != nil {
		return virtual.Taken{}, s.wrap("read the broadcast of "+f.exchange, err)
	}
	f.last = doc.ID
	return virtual.Taken{Envelope: []byte(doc.Payload), Receipt: broadcastReceipt{queue: queue, envelope: doc.Payload}}, nil
}

// giveBack puts a taken broadcast back at the head of its queue (in this
// process: a broadcast is not the queue's to rewrite).
func (s *store) giveBack(r broadcastReceipt, envelope []byte) {
	f := s.fanout(r.queue)
	if f == nil {
		return // unbound since: as an AMQP queue deleted, its message goes
	}
	f.mu.Lock()
	f.back = append([]string{string(envelope)}, f.back...)
	f.mu.Unlock()
}

// sizeFanout counts the broadcasts the queue has not read yet.
func (s *store) sizeFanout(ctx context.Context, f *fanoutQueue) (int, error) {
	f.mu.Lock()
	filter := bson.D{{Key: "queue", Value: f.exchange}}
	if !f.last.IsZero() {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: f.last}}})
	}
	back := len(f.back)
	f.mu.Unlock()
	n, err := s.broadcast.CountDocuments(ctx, filter)
	if err != nil {
		return 0, s.wrap("count the broadcast of "+f.exchange, err)
	}
	return int(n) + back, nil
}

// purgeFanout skips what the queue has not read, as Kombu's purge moves
// the cursor to the end.
func (s *store) purgeFanout(ctx context.Context, f *fanoutQueue) (int, error) {
	n, err := s.sizeFanout(ctx, f)
	if err != nil {
		return 0, err
	}
	last, err := s.newestBroadcast(ctx, f.exchange)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	if bytes.Compare(last[:], f.last[:]) > 0 {
		f.last = last
	}
	f.back = nil
	f.mu.Unlock()
	f.close(nil)
	return n, nil
}

// close closes the queue's cursor; with owner set, only if it is that
// store's.
func (f *fanoutQueue) close(owner *store) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil && (owner == nil || f.owner == owner) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = f.cur.Close(ctx)
		cancel()
		f.cur, f.owner = nil, nil
	}
}

// closeCursors closes the cursors the store's client holds, for another
// connection to open again.
func (s *store) closeCursors() {
	fanouts.Lock()
	qs := make([]*fanoutQueue, 0, len(fanouts.m))
	for _, f := range fanouts.m {
		qs = append(qs, f)
	}
	fanouts.Unlock()
	for _, f := range qs {
		f.close(s)
	}
}

// dropFanout forgets the queue's fanout state (the queue was deleted).
func (s *store) dropFanout(queue string) {
	fanouts.Lock()
	f := fanouts.m[s.fanoutKey(queue)]
	delete(fanouts.m, s.fanoutKey(queue))
	fanouts.Unlock()
	if f != nil {
		f.close(nil)
	}
}

// dropExchangeFanouts forgets the fanout queues of a deleted exchange.
func (s *store) dropExchangeFanouts(exchange string) {
	prefix := s.o.masked + "\x00"
	fanouts.Lock()
	var gone []*fanoutQueue
	for k, f := range fanouts.m {
		if f.exchange == exchange && len(k) > len(prefix) && k[:len(prefix)] == prefix {
			gone = append(gone, f)
			delete(fanouts.m, k)
		}
	}
	fanouts.Unlock()
	for _, f := range gone {
		f.close(nil)
	}
}
