package mongodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// takenPrefix marks a message a kombu-go consumer took: its queue field
// becomes takenPrefix + queue, which no Kombu take matches, until it is
// acked (deleted) or restored (the queue put back). Kombu deletes a
// message when it takes it; kombu-go keeps it until the handler is done,
// so a consumer that dies loses nothing.
const takenPrefix = "kombu-go:taken:"

// store is the virtual.Store of one mongodb:// connection.
type store struct {
	client   *mongo.Client
	messages *mongo.Collection
	routing  *mongo.Collection
	// broadcast is Kombu's capped collection of fanout messages
	// (fanout.go).
	broadcast *mongo.Collection
	o         *settings
	log       *slog.Logger
	password  string

	mu        sync.Mutex
	held      map[bson.ObjectID]string // taken, unsettled: their queue
	recovered map[string]time.Time     // queue: when its expired leases were last looked for

	stop chan struct{}
	wg   sync.WaitGroup
}

var (
	_ virtual.Store       = (*store)(nil)
	_ virtual.Quarantiner = (*store)(nil)
)

// quarantineCollection holds the documents that were not Kombu envelopes,
// with their queue and what is wrong with them.
const quarantineCollection = "messages.kombu_go_quarantine"

// Quarantine moves a taken document that is not a Kombu envelope to the
// quarantine collection, where a person can look at it.
func (s *store) Quarantine(ctx context.Context, rc virtual.Receipt, reason error) error {
	if b, ok := rc.(broadcastReceipt); ok {
		q := s.messages.Database().Collection(quarantineCollection)
		if _, err := q.InsertOne(ctx, bson.D{{Key: "payload", Value: b.envelope}, {Key: "queue", Value: b.queue}, {Key: "reason", Value: reason.Error()}}); err != nil {
			return s.wrap("quarantine a broadcast of "+b.queue, err)
		}
		s.log.Warn("mongodb: a broadcast is not a Kombu envelope: copied to "+quarantineCollection, "queue", b.queue, "reason", reason)
		return nil
	}
	r := rc.(receipt)
	var m message
	if err := s.messages.FindOne(ctx, bson.D{{Key: "_id", Value: r.copy}}).Decode(&m); err != nil {
		return s.wrap("quarantine a message of "+r.queue, err)
	}
	q := s.messages.Database().Collection(quarantineCollection)
	if _, err := q.InsertOne(ctx, bson.D{{Key: "_id", Value: r.original}, {Key: "payload", Value: m.Payload}, {Key: "queue", Value: r.queue}, {Key: "reason", Value: reason.Error()}}); err != nil && !mongo.IsDuplicateKeyError(err) {
		return s.wrap("quarantine a message of "+r.queue, err)
	}
	s.log.Warn("mongodb: a message is not a Kombu envelope: moved to "+quarantineCollection, "queue", r.queue, "id", r.original.Hex(), "reason", reason)
	return s.Ack(ctx, r)
}

type receipt struct {
	copy, original bson.ObjectID
	priority       int
	queue          string
}

func newStore(ctx context.Context, client *mongo.Client, o *settings, log *slog.Logger, password string) (*store, error) {
	db := client.Database(o.database)
	s := &store{
		client: client, messages: db.Collection(messagesCollection), routing: db.Collection(routingCollection),
		broadcast: db.Collection(broadcastCollection),
		o:         o, log: log, password: password,
		held: map[bson.ObjectID]string{}, recovered: map[string]time.Time{},
		stop: make(chan struct{}),
	}
	// Kombu's indexes (_ensure_indexes).
	if _, err := s.messages.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "queue", Value: 1}, {Key: "priority", Value: 1}, {Key: "_id", Value: 1}}}); err != nil {
		return nil, s.wrap("create the messages index", err)
	}
	if _, err := s.routing.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "queue", Value: 1}, {Key: "exchange", Value: 1}}}); err != nil {
		return nil, s.wrap("create the routing index", err)
	}
	if err := s.createBroadcast(ctx); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.renew()
	return s, nil
}

func (s *store) wrap(op string, err error) error { return wrapErr(op, err, s.password) }

// DeclareQueue does nothing: in Kombu's layout a queue exists as its
// messages.
func (s *store) DeclareQueue(context.Context, string) error { return nil }

func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	if f := s.fanout(queue); f != nil {
		n, err := s.sizeFanout(ctx, f)
		return n, err == nil, err
	}
	n, err := s.messages.CountDocuments(ctx, bson.D{{Key: "queue", Value: queue}})
	if err != nil {
		return 0, false, s.wrap("count "+queue, err)
	}
	return int(n), n > 0, nil
}

func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	if f := s.fanout(queue); f != nil {
		return s.purgeFanout(ctx, f)
	}
	r, err := s.messages.DeleteMany(ctx, bson.D{{Key: "queue", Value: queue}})
	if err != nil {
		return 0, s.wrap("purge "+queue, err)
	}
	return int(r.DeletedCount), nil
}

func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	if _, err := s.routing.DeleteMany(ctx, bson.D{{Key: "queue", Value: queue}}); err != nil {
		return 0, s.wrap("delete the bindings of "+queue, err)
	}
	n, err := s.Purge(ctx, queue)
	s.dropFanout(queue)
	return n, err
}

// Put inserts Kombu's document: the envelope as payload, the queue, and
// Kombu's reversed priority (9 - priority: lower is served first).
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	_, err := s.messages.InsertOne(ctx, bson.D{
		{Key: "payload", Value: string(m.Envelope)},
		{Key: "queue", Value: m.Queue},
		{Key: "priority", Value: virtual.MaxPriority - min(max(m.Priority, 0), virtual.MaxPriority)},
	})
	return s.wrap("insert into "+m.Queue, err)
}

// message is a document of Kombu's messages collection, with kombu-go's
// fields on a taken copy.
type message struct {
	ID       bson.ObjectID `bson:"_id"`
	Payload  string        `bson:"payload"`
	Queue    string        `bson:"queue"`
	Priority int           `bson:"priority"`
	// On a taken copy: the original's id and the lease's end.
	Original bson.ObjectID `bson:"kombu_go_id,omitempty"`
	Lease    time.Time     `bson:"kombu_go_lease,omitempty"`
}

// takeAttempts bounds how often Take loses the race for a queue's first
// message to other consumers before it reports the queue empty for now.
const takeAttempts = 20

// spread is how many of a queue's first messages a consumer that lost a
// race picks from.
const spread = 8

// Take takes the queue's first message in Kombu's order (priority, then
// insertion). It inserts a taken copy (queue takenPrefix+queue, leased to
// this connection for visibility_timeout, extended while unsettled) and
// then deletes the original: the consumer whose delete removed it owns
// the message, the others delete their copies and look again. A delete is
// atomic on every server that speaks MongoDB's protocol, which
// findOneAndUpdate is not on FerretDB (two consumers both get the
// document); a consumer that dies between the two steps leaves a copy
// whose lease runs out and is put back: a message may come twice, never
// not at all.
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	if f := s.fanout(queue); f != nil {
		return s.takeFanout(ctx, f, queue)
	}
	s.recover(ctx, queue)
	for attempt := range takeAttempts {
		// The first message; after a lost race, one of the first few at
		// random, so that consumers racing for a queue spread out.
		fo := options.FindOne().SetSort(bson.D{{Key: "priority", Value: 1}, {Key: "_id", Value: 1}})
		if attempt > 0 {
			fo.SetSkip(rand.Int64N(spread))
		}
		var m message
		err := s.messages.FindOne(ctx, bson.D{{Key: "queue", Value: queue}}, fo).Decode(&m)
		if errors.Is(err, mongo.ErrNoDocuments) && attempt > 0 {
			continue
		}
		if errors.Is(err, mongo.ErrNoDocuments) {
			return virtual.Taken{}, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
		}
		if err != nil {
			return virtual.Taken{}, s.wrap("take from "+queue, err)
		}
		taken := message{ID: bson.NewObjectID(), Payload: m.Payload, Queue: takenPrefix + queue, Priority: m.Priority,
			Original: m.ID, Lease: time.Now().Add(s.o.lease)}
		if _, err := s.messages.InsertOne(ctx, taken); err != nil {
			return virtual.Taken{}, s.wrap("take from "+queue, err)
		}
		del, err := s.messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: m.ID}})
		if err != nil || del.DeletedCount != 1 {
			// Lost the race (or failed): our copy goes.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, _ = s.messages.DeleteOne(cctx, bson.D{{Key: "_id", Value: taken.ID}})
			cancel()
			if err != nil {
				return virtual.Taken{}, s.wrap("take from "+queue, err)
			}
			continue
		}
		s.mu.Lock()
		s.held[taken.ID] = queue
		s.mu.Unlock()
		return virtual.Taken{Envelope: []byte(m.Payload), Receipt: receipt{copy: taken.ID, original: m.ID, priority: m.Priority, queue: queue}}, nil
	}
	return virtual.Taken{}, fmt.Errorf("queue %q: other consumers took every message first: %w", queue, transport.ErrEmpty)
}

// recover puts back the queue's messages whose lease ran out (their taker
// died), marked redelivered, at most once a second per queue.
func (s *store) recover(ctx context.Context, queue string) {
	s.mu.Lock()
	due := time.Since(s.recovered[queue]) > time.Second
	if due {
		s.recovered[queue] = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	cur, err := s.messages.Find(ctx, bson.D{{Key: "queue", Value: takenPrefix + queue}, {Key: "kombu_go_lease", Value: bson.D{{Key: "$lt", Value: time.Now()}}}})
	if err != nil {
		return
	}
	var expired []message
	if cur.All(ctx, &expired) != nil {
		return
	}
	for _, m := range expired {
		// The recoverer whose delete removes the copy puts it back.
		del, err := s.messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: m.ID}, {Key: "kombu_go_lease", Value: bson.D{{Key: "$lt", Value: time.Now()}}}})
		if err != nil || del.DeletedCount != 1 {
			continue
		}
		payload := m.Payload
		if marked, err := virtual.MarkRedelivered([]byte(payload)); err == nil {
			payload = string(marked)
		}
		if err := s.putBack(ctx, m.Original, queue, payload, m.Priority); err != nil {
			s.log.Error("mongodb: could not put back a message whose consumer is gone", "queue", queue, "error", err)
			continue
		}
		s.log.Info("mongodb: put back a message whose consumer is gone", "queue", queue, "id", m.Original.Hex())
	}
}

// putBack inserts a message again under its original id, so that it takes
// its old place in the queue.
func (s *store) putBack(ctx context.Context, id bson.ObjectID, queue, payload string, priority int) error {
	_, err := s.messages.InsertOne(ctx, message{ID: id, Payload: payload, Queue: queue, Priority: priority})
	if mongo.IsDuplicateKeyError(err) {
		return nil
	}
	return s.wrap("put back into "+queue, err)
}

func (s *store) settled(r receipt) {
	s.mu.Lock()
	delete(s.held, r.copy)
	s.mu.Unlock()
}

func (s *store) Ack(ctx context.Context, rc virtual.Receipt) error {
	if _, ok := rc.(broadcastReceipt); ok {
		return nil // the broadcast stays for the other queues, as in Kombu
	}
	r := rc.(receipt)
	s.settled(r)
	_, err := s.messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: r.copy}})
	return s.wrap("ack in "+r.queue, err)
}

func (s *store) Restore(ctx context.Context, rc virtual.Receipt, envelope []byte) error {
	if b, ok := rc.(broadcastReceipt); ok {
		s.giveBack(b, envelope)
		return nil
	}
	r := rc.(receipt)
	s.settled(r)
	if err := s.putBack(ctx, r.original, r.queue, string(envelope), r.priority); err != nil {
		return err
	}
	_, err := s.messages.DeleteOne(ctx, bson.D{{Key: "_id", Value: r.copy}})
	return s.wrap("restore to "+r.queue, err)
}

// renew extends the leases of the messages this connection holds, every
// third of visibility_timeout.
func (s *store) renew() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		ids := make([]bson.ObjectID, 0, len(s.held))
		for id := range s.held {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.o.lease/3)
		_, err := s.messages.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "kombu_go_lease", Value: time.Now().Add(s.o.lease)}}}})
		cancel()
		if err != nil {
			s.log.Warn("mongodb: could not extend the leases of unsettled messages", "error", s.wrap("renew leases", err))
		}
	}
}

// Bindings are Kombu's messages.routing documents: {exchange, queue,
// routing_key, pattern}.
func (s *store) Bind(ctx context.Context, exchange string, b virtual.Binding) error {
	doc := bson.D{{Key: "exchange", Value: exchange}, {Key: "queue", Value: b.Queue}, {Key: "routing_key", Value: b.RoutingKey}, {Key: "pattern", Value: b.Pattern}}
	_, err := s.routing.UpdateOne(ctx, doc, bson.D{{Key: "$set", Value: doc}}, options.UpdateOne().SetUpsert(true))
	return s.wrap("bind "+b.Queue+" to "+exchange, err)
}

func (s *store) Unbind(ctx context.Context, exchange string, b virtual.Binding) error {
	_, err := s.routing.DeleteMany(ctx, bson.D{{Key: "exchange", Value: exchange}, {Key: "queue", Value: b.Queue}, {Key: "routing_key", Value: b.RoutingKey}})
	return s.wrap("unbind "+b.Queue+" from "+exchange, err)
}

func (s *store) Bindings(ctx context.Context, exchange string) ([]virtual.Binding, error) {
	cur, err := s.routing.Find(ctx, bson.D{{Key: "exchange", Value: exchange}})
	if err != nil {
		return nil, s.wrap("read the bindings of "+exchange, err)
	}
	var docs []struct {
		Queue      string `bson:"queue"`
		RoutingKey string `bson:"routing_key"`
		Pattern    string `bson:"pattern"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.wrap("read the bindings of "+exchange, err)
	}
	out := make([]virtual.Binding, len(docs))
	for i, d := range docs {
		out[i] = virtual.Binding{RoutingKey: d.RoutingKey, Pattern: d.Pattern, Queue: d.Queue}
	}
	return out, nil
}

func (s *store) DeleteExchange(ctx context.Context, exchange string) error {
	_, err := s.routing.DeleteMany(ctx, bson.D{{Key: "exchange", Value: exchange}})
	s.dropExchangeFanouts(exchange)
	return s.wrap("delete exchange "+exchange, err)
}

func (s *store) Close() error {
	s.closeCursors()
	close(s.stop)
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}
