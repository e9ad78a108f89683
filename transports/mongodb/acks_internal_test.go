package mongodb

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"github.com/kombu-go/kombu/transports/mongodb/mongotest"
)

// ackRig is a store on its own FerretDB whose acks wait for a full batch
// or Close (no linger), with its client's delete commands counted.
type ackRig struct {
	s       *store
	plain   *mongo.Collection // the messages, through a client of the test's
	logs    *brokertest.LogBuffer
	deletes func() int
	queue   string
}

func newAckRig(t *testing.T) *ackRig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts FerretDB")
	}
	ctx := context.Background()
	srv, err := mongotest.Start(ctx)
	if err != nil {
		brokertest.Unavailable(t, "FerretDB: "+err.Error())
	}
	t.Cleanup(srv.Stop)
	var mu sync.Mutex
	deletes := 0
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "delete" {
			mu.Lock()
			deletes++
			mu.Unlock()
		}
	}}
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + srv.Addr + "/acks").SetMonitor(mon))
	if err != nil {
		t.Fatal(err)
	}
	logs := &brokertest.LogBuffer{}
	s, err := newStore(ctx, client, &settings{database: "acks", masked: srv.Addr, lease: time.Minute}, slog.New(slog.NewTextHandler(logs, nil)), "")
	if err != nil {
		t.Fatal(err)
	}
	s.deletes.Linger = time.Hour
	t.Cleanup(func() { _ = s.Close() })
	plain, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + srv.Addr + "/acks"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Disconnect(context.Background()) })
	return &ackRig{s: s, plain: plain.Database("acks").Collection(messagesCollection), logs: logs, queue: "acks-q",
		deletes: func() int { mu.Lock(); defer mu.Unlock(); return deletes }}
}

// putTake puts n messages and takes them all.
func (r *ackRig) putTake(t *testing.T, n int) []virtual.Taken {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := r.s.Put(ctx, virtual.Message{Queue: r.queue, Envelope: []byte(`{"n": ` + strconv.Itoa(i) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	var ts []virtual.Taken
	for len(ts) < n {
		got, err := r.s.TakeBatch(ctx, r.queue, n-len(ts))
		if err != nil {
			t.Fatalf("took %d of %d: %v", len(ts), n, err)
		}
		ts = append(ts, got...)
	}
	return ts
}

// left is how many documents of the queue, ready or taken, are stored.
func (r *ackRig) left(t *testing.T) int64 {
	t.Helper()
	n, err := r.plain.CountDocuments(context.Background(), bson.D{{Key: "queue", Value: bson.D{{Key: "$in", Value: []string{r.queue, takenPrefix + r.queue}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Thirty acks are one delete command, sent by Close (the linger being an
// hour), which returns once it has landed.
func TestAcksBatched(t *testing.T) {
	r := newAckRig(t)
	ts := r.putTake(t, 30)
	before := r.deletes()
	for _, tk := range ts {
		if err := r.s.Ack(context.Background(), tk.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.left(t); n != 30 {
		t.Fatalf("before Close %d documents are left, want 30 (the linger is an hour)", n)
	}
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r.left(t); n != 0 {
		t.Errorf("after Close %d documents are left, want 0 (Close must send the waiting acks and wait for them)", n)
	}
	if got := r.deletes() - before; got != 1 {
		t.Errorf("30 acks sent %d delete commands, want 1", got)
	}
	if strings.Contains(r.logs.String(), "level=WARN") {
		t.Errorf("warnings logged:\n%s", r.logs)
	}
}

// A statement of a batch that fails is deleted again on its own, and its
// failure logged with the message id, not dropped silently; the batch's
// other acks land.
func TestAckFailedStatementRetriedAndLogged(t *testing.T) {
	r := newAckRig(t)
	ts := r.putTake(t, 3)
	// FerretDB checks a filter against the documents it reads: with none
	// stored, even a bad one passes.
	if err := r.s.Put(context.Background(), virtual.Message{Queue: r.queue + "-other", Envelope: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	bad := bson.NewObjectID()
	for i, tk := range ts {
		if err := r.s.Ack(context.Background(), tk.Receipt); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// A filter the server refuses ($in needs an array).
			r.s.deletes.Add(context.Background(), "", ackDelete{filter: bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: 5}}}}, queue: r.queue, original: bad})
		}
	}
	before := r.deletes()
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r.left(t); n != 0 {
		t.Errorf("%d documents are left, want 0", n)
	}
	if got := r.deletes() - before; got < 2 {
		t.Errorf("%d delete commands, want the batch's and the failed statement's own", got)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "could not delete an acked message") || !strings.Contains(logs, bad.Hex()) {
		t.Errorf("the failed statement (id %s) is not logged:\n%s", bad.Hex(), logs)
	}
}
