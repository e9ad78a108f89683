package mongodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kombu-go/kombu/internal/ackbatch"
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
	// taker marks this connection's taken copies (message.Taker).
	taker string

	mu        sync.Mutex
	held      map[bson.ObjectID]*heldCopy // taken, unsettled copies
	recovered map[string]time.Time        // queue: when its expired leases were last looked for

	deletes *ackbatch.Batcher[ackDelete] // acks' deletes, batched

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ virtual.Store       = (*store)(nil)
	_ virtual.Quarantiner = (*store)(nil)
	_ virtual.BatchTaker  = (*store)(nil)
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
	if err := s.messages.FindOne(ctx, s.ours(r.copy)).Decode(&m); err != nil {
		return s.wrap("quarantine a message of "+r.queue, err)
	}
	q := s.messages.Database().Collection(quarantineCollection)
	if _, err := q.InsertOne(ctx, bson.D{{Key: "_id", Value: r.original}, {Key: "payload", Value: m.Payload}, {Key: "queue", Value: r.queue}, {Key: "reason", Value: reason.Error()}}); err != nil && !mongo.IsDuplicateKeyError(err) {
		return s.wrap("quarantine a message of "+r.queue, err)
	}
	s.log.Warn("mongodb: a message is not a Kombu envelope: moved to "+quarantineCollection, "queue", r.queue, "id", r.original.Hex(), "reason", reason)
	// Deleted at once, not batched: the caller moves on believing it gone.
	return s.deleteOne(ctx, ackDelete{filter: s.settled(r), queue: r.queue, original: r.original})
}

// heldCopy is a taken copy this connection has not settled.
type heldCopy struct {
	queue string
	// until is when its lease, as last written, ends: before then no
	// recover has put it back, so no other consumer's copy can have its id.
	until time.Time
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
		o:         o, log: log, password: password, taker: bson.NewObjectID().Hex(),
		held: map[bson.ObjectID]*heldCopy{}, recovered: map[string]time.Time{},
		stop: make(chan struct{}),
	}
	s.deletes = ackbatch.New(maxAckBatch, ackLinger, deleteCalls, s.deleteBatch)
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
	defer s.dropCandidates(queue)
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
	defer s.dropCandidates(m.Queue)
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
	// Taker is the connection that took it (store.taker): another
	// connection's copy of the same message has the same id.
	Taker string `bson:"kombu_go_taker,omitempty"`
}

// takeAttempts bounds how often Take loses the race for a queue's first
// messages to other consumers before it reports the queue empty for now.
const takeAttempts = 20

// claimParallel is how many deletes of claimed originals a batch take
// has in flight at once.
const claimParallel = 8

// spread is how many of a queue's first messages a consumer that lost a
// race skips at most, so that consumers racing for a queue spread out.
const spread = 8

// takenID is the id of a message's taken copy: derived from the
// original's, so that the copy's insert is what claims the message (the
// _id index refuses a second copy, atomically on every server that speaks
// MongoDB's protocol, which findOneAndUpdate is not on FerretDB: two
// consumers both get the document). It is the original's id with its
// process-random bytes flipped, which no ObjectID generator produces for
// another message short of a collision of those random bytes.
func takenID(original bson.ObjectID) bson.ObjectID {
	id := original
	for i := 4; i < 9; i++ {
		id[i] ^= 0xa5
	}
	return id
}

// Take takes the queue's first message in Kombu's order (see TakeBatch).
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.TakeBatch(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// TakeBatch takes up to n of the queue's first messages in Kombu's order
// (priority, then insertion): a find of the first n documents (FerretDB
// scans the collection for it: Kombu's queue and sort are not pushed
// down); one insert of their taken copies (queue takenPrefix+queue, id
// takenID of the original, leased to this connection for
// visibility_timeout, extended while unsettled), which claims each message
// whose copy went in; and a delete by _id of each claimed original, a few
// at a time, whose count says whether the original was still there (a
// consumer may have taken, acked and so removed the copy of a message
// between our find and our insert: ours is then a stale duplicate, removed
// again). A consumer that dies between the steps leaves copies whose
// leases run out and are put back: a message may come twice, never not at
// all.
func (s *store) TakeBatch(ctx context.Context, queue string, n int) ([]virtual.Taken, error) {
	if f := s.fanout(queue); f != nil {
		t, err := s.takeFanout(ctx, f, queue)
		if err != nil {
			return nil, err
		}
		return []virtual.Taken{t}, nil
	}
	s.recover(ctx, queue)
	for attempt := range takeAttempts {
		ms, err := s.firstOf(ctx, queue, n, attempt)
		if err != nil {
			return nil, s.wrap("take from "+queue, err)
		}
		if len(ms) == 0 && attempt > 0 {
			continue
		}
		if len(ms) == 0 {
			return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
		}
		ts, err := s.claim(ctx, queue, ms)
		if err != nil {
			return nil, err
		}
		if len(ts) > 0 {
			return ts, nil
		}
	}
	return nil, fmt.Errorf("queue %q: other consumers took every message first: %w", queue, transport.ErrEmpty)
}

// findAhead is how many of a queue's first documents a find reads, for
// the takes of this process to claim from until they run out or are
// candidateAge old: FerretDB reads a sorted find by scanning the whole
// collection, so one find serves many takes.
const (
	findAhead    = 100
	candidateAge = 500 * time.Millisecond
)

// candidates are a queue's first documents as a find of this process
// returned them, not yet handed to a take. A Put or a put back in this
// process drops them (the new message may come first); one by another
// process is seen once they are candidateAge old, so that its message
// waits that long at most behind later ones.
type candidates struct {
	ms []message
	at time.Time
}

var (
	candidatesMu  sync.Mutex
	allCandidates = map[string]*candidates{} // candidatesKey: the queue's
)

func (s *store) candidatesKey(queue string) string {
	return s.o.masked + "\x00" + s.o.database + "\x00" + queue
}

// dropCandidates forgets the queue's candidates.
func (s *store) dropCandidates(queue string) {
	candidatesMu.Lock()
	delete(allCandidates, s.candidatesKey(queue))
	candidatesMu.Unlock()
}

// firstOf returns up to n of the queue's first documents: the process's
// candidates while they last and are fresh, else a find's (after a lost
// race, past a few at random, so that racing consumers spread out).
func (s *store) firstOf(ctx context.Context, queue string, n, attempt int) ([]message, error) {
	n = max(n, 1)
	key := s.candidatesKey(queue)
	candidatesMu.Lock()
	c := allCandidates[key]
	if c != nil && len(c.ms) > 0 && time.Since(c.at) < candidateAge && attempt == 0 {
		k := min(n, len(c.ms))
		ms := c.ms[:k:k]
		c.ms = c.ms[k:]
		candidatesMu.Unlock()
		return ms, nil
	}
	delete(allCandidates, key)
	candidatesMu.Unlock()
	fo := options.Find().SetSort(bson.D{{Key: "priority", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(max(n, findAhead)))
	if attempt > 0 {
		fo.SetSkip(rand.Int64N(spread))
	}
	var ms []message
	cur, err := s.messages.Find(ctx, bson.D{{Key: "queue", Value: queue}}, fo)
	if err == nil {
		err = cur.All(ctx, &ms)
	}
	if err != nil {
		return nil, err
	}
	if len(ms) > n {
		candidatesMu.Lock()
		allCandidates[key] = &candidates{ms: ms[n:], at: time.Now()}
		candidatesMu.Unlock()
		ms = ms[:n:n]
	}
	return ms, nil
}

// claim takes the found messages ms of queue that no other consumer takes
// first; none (and no error) when it lost every race.
func (s *store) claim(ctx context.Context, queue string, ms []message) ([]virtual.Taken, error) {
	lease := time.Now().Add(s.o.lease)
	copies := make([]any, len(ms))
	for i, m := range ms {
		copies[i] = message{ID: takenID(m.ID), Payload: m.Payload, Queue: takenPrefix + queue, Priority: m.Priority,
			Original: m.ID, Lease: lease, Taker: s.taker}
	}
	_, err := s.messages.InsertMany(ctx, copies, options.InsertMany().SetOrdered(false))
	lost := map[int]bool{}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil {
		for _, we := range bwe.WriteErrors {
			if !mongo.IsDuplicateKeyError(we) {
				lost = nil
				break
			}
			lost[we.Index] = true // another consumer's copy claims it
		}
		if lost != nil {
			err = nil
		}
	}
	if err != nil {
		// Which copies went in is unknown: ours (by taker) go again.
		s.dropCopies(ctx, ms)
		return nil, s.wrap("take from "+queue, err)
	}
	won := make([]message, 0, len(ms))
	for i, m := range ms {
		if !lost[i] {
			won = append(won, m)
		}
	}
	if len(won) == 0 {
		return nil, nil
	}
	// The delete of an original claims it for good: one by one (a delete
	// by _id is the filter FerretDB hands SQLite; by $in it scans the
	// collection), a few at a time. A copy whose original another
	// consumer removed first (taken and acked between our find and our
	// insert; or Python Kombu's take, a purge) goes again.
	deleted := make([]int, len(won)) // 1: ours; 0: gone; -1: unknown
	sem := make(chan struct{}, claimParallel)
	var wg sync.WaitGroup
	// Run to the end even if ctx ends: an unknown outcome holds a message
	// back for a lease.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for i, m := range won {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			del, err := s.messages.DeleteOne(dctx, bson.D{{Key: "_id", Value: m.ID}})
			switch {
			case err != nil:
				deleted[i] = -1
				s.log.Warn("mongodb: could not remove a taken message from its queue; it comes back when its copy's lease ends", "queue", queue, "id", m.ID.Hex(), "error", s.wrap("take from "+queue, err))
			case del.DeletedCount == 1:
				deleted[i] = 1
			}
		}()
	}
	wg.Wait()
	kept := won[:0]
	for i, m := range won {
		switch deleted[i] {
		case 1:
			kept = append(kept, m)
		case 0:
			// Ours alone has this id while it exists: by _id is enough.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if _, err := s.messages.DeleteOne(cctx, bson.D{{Key: "_id", Value: takenID(m.ID)}}); err != nil {
				s.log.Warn("mongodb: could not remove the copy of a message not taken; it comes back when its lease ends", "queue", queue, "error", s.wrap("remove a copy", err))
			}
			cancel()
		}
		// -1: whether the original went is unknown. The copy stays,
		// unheld: its lease runs out and recover puts the message back
		// (or finds the original still there), so nothing is lost.
	}
	won = kept
	ts := make([]virtual.Taken, len(won))
	s.mu.Lock()
	for i, m := range won {
		c := takenID(m.ID)
		s.held[c] = &heldCopy{queue: queue, until: lease}
		ts[i] = virtual.Taken{Envelope: []byte(m.Payload), Receipt: receipt{copy: c, original: m.ID, priority: m.Priority, queue: queue}}
	}
	s.mu.Unlock()
	return ts, nil
}

// dropCopies removes this connection's taken copies of ms, if any: the
// taker field keeps another consumer's copy of the same message, whose
// id is the same, where it is.
func (s *store) dropCopies(ctx context.Context, ms []message) {
	ids := make([]bson.ObjectID, len(ms))
	for i, m := range ms {
		ids[i] = takenID(m.ID)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.messages.DeleteMany(cctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "kombu_go_taker", Value: s.taker}}); err != nil {
		// Their leases run out, unrenewed, and recover puts them back.
		s.log.Warn("mongodb: could not remove the copies of messages not taken; they come back when their lease ends", "error", s.wrap("remove copies", err))
	}
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
	defer s.dropCandidates(queue)
	_, err := s.messages.InsertOne(ctx, message{ID: id, Payload: payload, Queue: queue, Priority: priority})
	if mongo.IsDuplicateKeyError(err) {
		return nil
	}
	return s.wrap("put back into "+queue, err)
}

// settled forgets the copy and returns the filter that deletes it: by _id
// alone (which FerretDB hands SQLite) while its lease has a good margin
// left, with this connection's taker too (which FerretDB reads by
// scanning the collection) once it may have run out and been put back
// and taken by another consumer, whose copy has the same id.
func (s *store) settled(r receipt) bson.D {
	f := s.deleteFilter(r)
	s.forget(r.copy)
	return f
}

// deleteFilter is settled's filter, the copy still held (and its lease
// still extended): an ack's batched delete forgets it once it landed.
func (s *store) deleteFilter(r receipt) bson.D {
	s.mu.Lock()
	h := s.held[r.copy]
	s.mu.Unlock()
	if h != nil && time.Until(h.until) > s.o.lease/3 {
		return bson.D{{Key: "_id", Value: r.copy}}
	}
	return s.ours(r.copy)
}

// forget stops extending the copy's lease.
func (s *store) forget(id bson.ObjectID) {
	s.mu.Lock()
	delete(s.held, id)
	s.mu.Unlock()
}

// Ack queues the copy's delete for a batch (see deleter), returning before
// it lands (the copy's lease is extended until then): see
// "Acknowledgements" in the package documentation. Once the store is
// closing, it deletes the copy itself.
func (s *store) Ack(ctx context.Context, rc virtual.Receipt) error {
	if _, ok := rc.(broadcastReceipt); ok {
		return nil // the broadcast stays for the other queues, as in Kombu
	}
	r := rc.(receipt)
	// The copy stays held, its lease extended, until its delete has
	// landed: a lease that ran out while the delete waited would put the
	// message back for another consumer.
	a := ackDelete{filter: s.deleteFilter(r), queue: r.queue, original: r.original, copyID: r.copy}
	if queued, err := s.deletes.Add(ctx, "", a); queued || err != nil {
		return err // err: ctx ended while the deletes in flight were at their limit
	}
	defer s.forget(r.copy)
	return s.deleteOne(ctx, a)
}

// deleteOne deletes an acked copy by itself. A failure is logged too (an
// async ack has no caller to tell) and returned: the copy's lease runs out
// and the message is delivered again.
func (s *store) deleteOne(ctx context.Context, a ackDelete) error {
	_, err := s.messages.DeleteOne(ctx, a.filter)
	if err != nil {
		err = s.wrap("ack in "+a.queue, err)
		s.log.Warn("mongodb: could not delete an acked message: it is delivered again once its lease runs out",
			"queue", a.queue, "id", a.original.Hex(), "error", err)
	}
	return err
}

// ours selects this connection's taken copy with the id: once its lease
// ran out and it was put back, another consumer's copy may have the id.
func (s *store) ours(copy bson.ObjectID) bson.D {
	return bson.D{{Key: "_id", Value: copy}, {Key: "kombu_go_taker", Value: s.taker}}
}

func (s *store) Restore(ctx context.Context, rc virtual.Receipt, envelope []byte) error {
	if b, ok := rc.(broadcastReceipt); ok {
		s.giveBack(b, envelope)
		return nil
	}
	r := rc.(receipt)
	filter := s.settled(r)
	if err := s.putBack(ctx, r.original, r.queue, string(envelope), r.priority); err != nil {
		return err
	}
	_, err := s.messages.DeleteOne(ctx, filter)
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
		start := time.Now()
		until := start.Add(s.o.lease)
		_, err := s.messages.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "kombu_go_taker", Value: s.taker}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "kombu_go_lease", Value: until}}}})
		cancel()
		if err == nil {
			s.mu.Lock()
			for _, id := range ids {
				// Only a copy whose lease had a margin left was surely
				// still ours, and so extended.
				if h := s.held[id]; h != nil && h.until.After(start.Add(s.o.lease/3)) {
					h.until = until
				}
			}
			s.mu.Unlock()
		}
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

// Close stops the lease renewer, sends the acks' deletes still waiting and
// waits for them, and disconnects.
func (s *store) Close() error {
	first := false
	s.closeOnce.Do(func() { first = true })
	if !first {
		return nil
	}
	s.closeCursors()
	close(s.stop)
	s.wg.Wait()
	s.deletes.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}
