package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/shoveltest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// runShovel starts s.Run and returns a function that stops it and returns
// its error, and a channel closed when Run returns (by itself, or stopped).
func runShovel(t *testing.T, s *kombu.Shovel) (stop func() error, ended <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = s.Run(ctx)
	}()
	stop = func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(15 * time.Second):
			return errors.New("Shovel.Run did not return within 15s of cancel")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop, done
}

func newShovel(t *testing.T, src *kombu.Connection, q kombu.Queue, dst *kombu.Connection, ex kombu.Exchange, opts ...kombu.ShovelOption) *kombu.Shovel {
	t.Helper()
	s, err := kombu.NewShovel(src, q, dst, ex, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitUntil polls cond for up to 10 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bodies takes every message of q, auto-acked, waiting until n are there.
func bodies(t *testing.T, conn *kombu.Connection, q string, n int) []string {
	t.Helper()
	var out []string
	waitUntil(t, fmt.Sprintf("%d messages in %s", n, q), func() bool {
		for {
			msg, err := kombu.Queue{Name: q}.Get(ctxT(t), conn, kombu.WithAutoAck())
			if errors.Is(err, kombu.ErrEmpty) {
				return len(out) >= n
			}
			if err != nil {
				t.Fatalf("get from %s: %v", q, err)
			}
			out = append(out, string(msg.Body))
		}
	})
	return out
}

// A message arrives at the destination as it left its producer: body
// bytes (compressed, never decoded), headers, properties and routing key;
// only then is it acked at the source.
func TestShovelMovesMessagesAsTheyAre(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t) // two brokers
	out := kombu.Queue{Name: "outbox", Bindings: []kombu.Binding{{Exchange: "events", RoutingKey: "#"}}}
	events := kombu.Exchange{Name: "events", Type: kombu.ExchangeTopic}
	orders := kombu.Queue{Name: "orders", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "order.*"}}}
	shop := kombu.Exchange{Name: "shop", Type: kombu.ExchangeTopic}

	s := newShovel(t, src, out, dst, shop,
		kombu.WithShovelDeclare(kombu.ShovelSource, events),
		kombu.WithShovelDeclare(kombu.ShovelDestination, orders))
	stamp := time.Unix(1700000000, 0)
	p := kombu.NewProducer(src, kombu.WithExchange(events))
	mustPublish(t, p.Publish(ctx, map[string]any{"id": 7, "total": "12.50"},
		kombu.WithRoutingKey("order.placed"), kombu.WithCompression("zlib"),
		kombu.WithHeaders(map[string]any{"trace": "abc", "n": int64(3), "list": []any{"a", int64(1)}}),
		kombu.WithMessageID("m-1"), kombu.WithCorrelationID("c-1"), kombu.WithReplyTo("replies"),
		kombu.WithPriority(5), kombu.WithTimestamp(stamp), kombu.WithType("shop.OrderPlaced"),
		kombu.WithAppID("shop"), kombu.WithExpiration(time.Hour)))
	sent, err := out.Get(ctx, src) // what the source holds, to compare
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, sent.Requeue())

	stop, _ := runShovel(t, s)
	_, got := getBody(t, dst, "orders")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got.DeliveryInfo.RoutingKey != "order.placed" || got.DeliveryInfo.Exchange != "shop" {
		t.Errorf("delivered through %s with key %q, want shop and the source's key", got.DeliveryInfo.Exchange, got.DeliveryInfo.RoutingKey)
	}
	if string(got.Body) != string(sent.Body) || !equalJSON(got, sent) {
		t.Errorf("body %q, want %q", got.Body, sent.Body)
	}
	if fmt.Sprint(got.Headers) != fmt.Sprint(sent.Headers) {
		t.Errorf("headers %v, want %v", got.Headers, sent.Headers)
	}
	if got.Properties != sent.Properties {
		t.Errorf("properties\n got %+v\nwant %+v", got.Properties, sent.Properties)
	}
	if got.Headers["compression"] != "application/x-gzip" {
		t.Errorf("compression header %v: the body was not moved compressed", got.Headers["compression"])
	}
	if n := ready(t, src, "outbox"); n != 0 {
		t.Errorf("the source holds %d messages after the move", n)
	}
	if st := s.Stats(); st.Moved != 1 || st.Batches != 1 || st.Requeued != 0 {
		t.Errorf("stats %+v, want one moved in one batch", st)
	}
}

func equalJSON(a, b *kombu.Message) bool {
	var x, y any
	return a.Decode(&x) == nil && b.Decode(&y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
}

func TestShovelRoutingKeyAndDefaultExchange(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	work := kombu.Queue{Name: "work"}
	if _, err := work.Declare(ctx, dst); err != nil {
		t.Fatal(err)
	}
	s := newShovel(t, src, kombu.Queue{Name: "in"}, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey("work"))
	p := kombu.NewProducer(src, kombu.WithRoutingKey("in"))
	for i := range 5 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i)))
	}
	stop, _ := runShovel(t, s)
	if got := bodies(t, dst, "work", 5); !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Errorf("moved %q, want 0..4 in order", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Batches fill with what the source has ready; a message alone goes at
// once, without waiting for a batch to fill.
func TestShovelBatchesWhatIsReady(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	if _, err := (kombu.Queue{Name: "q"}).Declare(ctx, dst); err != nil {
		t.Fatal(err)
	}
	var batches atomic.Int64
	s := newShovel(t, src, kombu.Queue{Name: "q"}, dst, kombu.Exchange{}, kombu.WithShovelBatchSize(50),
		kombu.WithShovelProgress(func(st kombu.ShovelStats) { batches.Store(int64(st.Batches)) }))
	p := kombu.NewProducer(src, kombu.WithRoutingKey("q"))
	for i := range 200 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i)))
	}
	stop, _ := runShovel(t, s)
	got := bodies(t, dst, "q", 200)
	if len(got) != 200 {
		t.Fatalf("moved %d, want 200", len(got))
	}
	if n := batches.Load(); n >= 100 {
		t.Errorf("200 ready messages took %d batches of at most 50: they go one or two at a time", n)
	}
	before := s.Stats().Batches
	mustPublish(t, p.Publish(ctx, "alone"))
	if got := bodies(t, dst, "q", 1); got[0] != "alone" {
		t.Fatalf("got %q", got)
	}
	if n := s.Stats().Batches - before; n != 1 {
		t.Errorf("a lone message took %d publishes", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Moved != 201 {
		t.Errorf("stats %+v, want 201 moved", st)
	}
}

// An unroutable message is never acked at the source silently. By default
// it goes back to the source queue and Run stops with ErrUnroutable,
// naming the route; the messages of the batch that were routed are moved.
func TestShovelUnroutableStops(t *testing.T) {
	ctx := ctxT(t)
	logs := &brokertest.LogBuffer{}
	src, err := kombu.Dial(ctx, brokerURL(t), kombu.WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := dial(t)
	srcEx, in := routedSource("in", "ok", "nowhere")
	ok := kombu.Queue{Name: "ok", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "ok"}}}
	s := newShovel(t, src, in, dst, kombu.Exchange{Name: "shop"},
		kombu.WithShovelDeclare(kombu.ShovelSource, srcEx),
		kombu.WithShovelDeclare(kombu.ShovelDestination, ok))
	pub := kombu.NewProducer(src, kombu.WithExchange(srcEx))
	for i, key := range []string{"ok", "ok", "nowhere", "ok"} {
		mustPublish(t, pub.Publish(ctx, fmt.Sprint(i), kombu.WithRoutingKey(key)))
	}
	stop, ended := runShovel(t, s)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop on an unroutable message")
	}
	runErr := stop()
	if !errors.Is(runErr, kombu.ErrUnroutable) || !strings.Contains(runErr.Error(), `"nowhere"`) {
		t.Fatalf("Run: %v; want ErrUnroutable naming the routing key", runErr)
	}
	// The messages before it are moved; the one after it too if it was in
	// the same batch, else it waits at the source with it. None is lost.
	moved, left := bodies(t, dst, "ok", 2), bodies(t, src, "in", 1)
	if len(moved) < 2 || moved[0] != "0" || moved[1] != "1" || slices.Contains(moved, "2") || !slices.Contains(left, "2") {
		t.Errorf("the destination got %q and the source holds %q; want 0 and 1 moved, the unroutable 2 back at the source", moved, left)
	}
	if all := slices.Sorted(slices.Values(append(moved, left...))); !slices.Equal(all, []string{"0", "1", "2", "3"}) {
		t.Errorf("moved %q, left %q: want each of the four at one end or the other, once", moved, left)
	}
	if !strings.Contains(logs.String(), "reached no queue at the destination") {
		t.Errorf("no log of the unroutable message:\n%s", logs.String())
	}
}

// routedSource is a source queue that keeps each message's routing key,
// with the keys given bound, and a dead-letter exchange.
func routedSource(name string, keys ...string) (kombu.Exchange, kombu.Queue) {
	ex := kombu.Exchange{Name: name + ".x", Type: kombu.ExchangeDirect}
	q := kombu.Queue{Name: name, DeadLetterExchange: name + ".dlx"}
	for _, k := range keys {
		q.Bindings = append(q.Bindings, kombu.Binding{Exchange: ex.Name, RoutingKey: k})
	}
	return ex, q
}

// With ShovelDeadLetter an unroutable message is dead-lettered at the
// source, saying why where the transport writes dead letters itself, and
// the shovel moves on.
func TestShovelUnroutableDeadLetters(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	srcEx, in := routedSource("in", "ok", "nowhere")
	dlx := kombu.Exchange{Name: "in.dlx", Type: kombu.ExchangeFanout}
	parked := kombu.Queue{Name: "parked", Bindings: []kombu.Binding{{Exchange: "in.dlx"}}}
	ok := kombu.Queue{Name: "ok", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "ok"}}}
	s := newShovel(t, src, in, dst, kombu.Exchange{Name: "shop"},
		kombu.WithShovelDeclare(kombu.ShovelSource, srcEx, dlx, parked),
		kombu.WithShovelDeclare(kombu.ShovelDestination, ok),
		kombu.WithShovelOnUnroutable(kombu.ShovelDeadLetter))
	pub := kombu.NewProducer(src, kombu.WithExchange(srcEx))
	keys := []string{"ok", "nowhere", "ok", "nowhere", "ok"}
	for i, key := range keys {
		mustPublish(t, pub.Publish(ctx, fmt.Sprint(i), kombu.WithRoutingKey(key)))
	}
	stop, _ := runShovel(t, s)
	if got := bodies(t, dst, "ok", 3); !slices.Equal(got, []string{"0", "2", "4"}) {
		t.Errorf("moved %q", got)
	}
	_, dead := getBody(t, src, "parked")
	if why, _ := dead.Headers[kombu.ErrorHeader].(string); !strings.Contains(why, "unroutable") {
		t.Errorf("the dead letter says %q, want why", why)
	}
	getBody(t, src, "parked")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Moved != 3 || st.DeadLettered != 2 {
		t.Errorf("stats %+v, want 3 moved and 2 dead-lettered", st)
	}

	// A queue without a dead-letter exchange would drop them: refused.
	_, err := kombu.NewShovel(src, kombu.Queue{Name: "plain"}, dst, kombu.Exchange{}, kombu.WithShovelOnUnroutable(kombu.ShovelDeadLetter))
	if !errors.Is(err, kombu.ErrInvalidArgument) {
		t.Errorf("ShovelDeadLetter from a queue without a dead-letter exchange: %v", err)
	}
}

// With ShovelRequeue an unroutable message waits in the source queue,
// tried again after a pause, until its route exists.
func TestShovelUnroutableRequeueWaitsForTheRoute(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	s := newShovel(t, src, kombu.Queue{Name: "in"}, dst, kombu.Exchange{Name: "shop"},
		kombu.WithShovelRoutingKey("later"),
		kombu.WithShovelOnUnroutable(kombu.ShovelRequeue),
		kombu.WithShovelBackoff(kombu.RetryPolicy{IntervalStart: 20 * time.Millisecond, IntervalStep: 20 * time.Millisecond, IntervalMax: 50 * time.Millisecond}))
	mustPublish(t, kombu.NewProducer(src, kombu.WithRoutingKey("in")).Publish(ctx, "patient"))
	stop, _ := runShovel(t, s)
	waitUntil(t, "the message to come back a few times", func() bool { return s.Stats().Requeued >= 3 })
	if st := s.Stats(); st.Requeued > 20 {
		t.Errorf("returned %d times already: the shovel spins instead of pausing", st.Requeued)
	}
	later := kombu.Queue{Name: "later", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "later"}}}
	if _, err := later.Declare(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := getBody(t, dst, "later"); got != "patient" {
		t.Errorf("got %q", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// WithShovelDrain moves what the queue held when Run began, then returns;
// WithShovelLimit moves n.
func TestShovelDrainAndLimit(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	if _, err := (kombu.Queue{Name: "out"}).Declare(ctx, dst); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(src, kombu.WithRoutingKey("in"), kombu.WithDeclare(kombu.Queue{Name: "in"}))
	for i := range 25 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i)))
	}
	s := newShovel(t, src, kombu.Queue{Name: "in"}, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey("out"),
		kombu.WithShovelDrain(), kombu.WithShovelBatchSize(10))
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run with WithShovelDrain: %v", err)
	}
	if n, m := ready(t, dst, "out"), ready(t, src, "in"); n != 25 || m != 0 {
		t.Fatalf("drained %d, %d left; want 25 and 0", n, m)
	}
	for i := range 10 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i)))
	}
	s = newShovel(t, src, kombu.Queue{Name: "in"}, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey("out"),
		kombu.WithShovelLimit(4), kombu.WithShovelBatchSize(3), kombu.WithPrefetch(5))
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run with WithShovelLimit: %v", err)
	}
	if n, m := ready(t, dst, "out"), ready(t, src, "in"); n != 29 || m != 6 {
		t.Fatalf("moved %d in all, %d left; want 29 and 6", n, m)
	}
	// Draining an empty queue returns at once.
	if _, err := (kombu.Queue{Name: "in"}).Purge(ctx, src); err != nil {
		t.Fatal(err)
	}
	s = newShovel(t, src, kombu.Queue{Name: "in"}, dst, kombu.Exchange{}, kombu.WithShovelDrain())
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// A shutdown returns what the shovel held to the source: every message is
// at one end or the other, none lost.
func TestShovelShutdownLosesNothing(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	if _, err := (kombu.Queue{Name: "out"}).Declare(ctx, dst); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(src, kombu.WithRoutingKey("in"), kombu.WithDeclare(kombu.Queue{Name: "in"}))
	var batch kombu.Batch
	for i := range 5000 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i), kombu.InBatch(&batch)))
	}
	mustPublish(t, batch.Send(ctx))
	s := newShovel(t, src, kombu.Queue{Name: "in"}, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey("out"), kombu.WithShovelBatchSize(7),
		kombu.WithShutdownTimeout(5*time.Second))
	stop, _ := runShovel(t, s)
	waitUntil(t, "some messages moved", func() bool { return s.Stats().Moved > 100 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	moved, left := ready(t, dst, "out"), ready(t, src, "in")
	if moved+left != 5000 || moved == 5000 {
		t.Fatalf("after the shutdown: %d moved, %d in the source: want 5000 in all, some left", moved, left)
	}
	if st := s.Stats(); int(st.Moved) != moved {
		t.Errorf("stats %+v, %d at the destination", st, moved)
	}
}

func TestNewShovelRefusesMistakes(t *testing.T) {
	src, dst := dial(t), dial(t)
	for name, tc := range map[string]struct {
		q    kombu.Queue
		ex   kombu.Exchange
		opts []kombu.ShovelOption
		want error
	}{
		"server-named queue": {kombu.Queue{}, kombu.Exchange{}, nil, kombu.ErrInvalidArgument},
		"batch of 0":         {kombu.Queue{Name: "q"}, kombu.Exchange{}, []kombu.ShovelOption{kombu.WithShovelBatchSize(0)}, kombu.ErrInvalidArgument},
		"keep and exchange":  {kombu.Queue{Name: "q"}, kombu.Exchange{Name: "x"}, []kombu.ShovelOption{kombu.WithShovelKeepExchange()}, kombu.ErrInvalidArgument},
		"missing passive":    {kombu.Queue{Name: "nobody"}, kombu.Exchange{}, []kombu.ShovelOption{kombu.WithShovelPassiveSource()}, kombu.ErrNotFound},
		"bad exchange type":  {kombu.Queue{Name: "q"}, kombu.Exchange{Name: "x", Type: "consistent-hash"}, nil, kombu.ErrNotSupported},
	} {
		_, err := kombu.NewShovel(src, tc.q, dst, tc.ex, tc.opts...)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := kombu.NewShovel(nil, kombu.Queue{Name: "q"}, dst, kombu.Exchange{}); !errors.Is(err, kombu.ErrInvalidArgument) {
		t.Errorf("no source: %v", err)
	}
}

// WithShovelKeepExchange relays each message to the exchange it was
// published to: one shovel for an outbox several exchanges route into.
func TestShovelKeepExchange(t *testing.T) {
	ctx := ctxT(t)
	src, dst := dial(t), dial(t)
	a, b := kombu.Exchange{Name: "a"}, kombu.Exchange{Name: "b"}
	outbox := kombu.Queue{Name: "outbox", Bindings: []kombu.Binding{{Exchange: "a", RoutingKey: "k"}, {Exchange: "b", RoutingKey: "k"}}}
	qa := kombu.Queue{Name: "qa", Bindings: []kombu.Binding{{Exchange: "a", RoutingKey: "k"}}}
	qb := kombu.Queue{Name: "qb", Bindings: []kombu.Binding{{Exchange: "b", RoutingKey: "k"}}}
	s := newShovel(t, src, outbox, dst, kombu.Exchange{}, kombu.WithShovelKeepExchange(),
		kombu.WithShovelDeclare(kombu.ShovelSource, a, b),
		kombu.WithShovelDeclare(kombu.ShovelDestination, a, b, qa, qb))
	mustPublish(t, kombu.NewProducer(src, kombu.WithExchange(a)).Publish(ctx, "to a", kombu.WithRoutingKey("k")))
	mustPublish(t, kombu.NewProducer(src, kombu.WithExchange(b)).Publish(ctx, "to b", kombu.WithRoutingKey("k")))
	stop, _ := runShovel(t, s)
	if got, _ := getBody(t, dst, "qa"); got != "to a" {
		t.Errorf("qa got %q", got)
	}
	if got, _ := getBody(t, dst, "qb"); got != "to b" {
		t.Errorf("qb got %q", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// Replaying a dead-letter queue: messages a broken handler dead-lettered
// go back to the work exchange once the handler is fixed, and are handled.
func TestShovelReplaysDeadLettersOnMemory(t *testing.T) {
	conn := dial(t)
	replayDeadLetters(t, conn, "")
}

func TestShovelReplaysDeadLettersOnRabbitMQ(t *testing.T) {
	url := brokertest.AMQPURL(t)
	conn := dialURL(t, url)
	replayDeadLetters(t, conn, fmt.Sprintf("kombu-go.shovel.%d.", time.Now().UnixNano()))
}

func replayDeadLetters(t *testing.T, conn *kombu.Connection, prefix string) {
	ctx := ctxT(t)
	work := kombu.Exchange{Name: prefix + "work", AutoDelete: prefix != ""}
	dlx := kombu.Exchange{Name: prefix + "dlx", Type: kombu.ExchangeFanout}
	dead := kombu.Queue{Name: prefix + "dead", Bindings: []kombu.Binding{{Exchange: dlx.Name}}}
	jobs := kombu.Queue{Name: prefix + "jobs", DeadLetterExchange: dlx.Name,
		Bindings: []kombu.Binding{{Exchange: work.Name, RoutingKey: "job"}}}
	if prefix != "" {
		t.Cleanup(func() {
			ctx := context.Background()
			_, _ = jobs.Delete(ctx, conn)
			_, _ = dead.Delete(ctx, conn)
			_ = work.Delete(ctx, conn)
			_ = dlx.Delete(ctx, conn)
		})
	}
	const n = 20
	var broken atomic.Bool
	broken.Store(true)
	var handled sync.Map
	var handledN atomic.Int64
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: jobs, Handler: kombu.HandlerFunc(
		func(ctx context.Context, msg *kombu.Message) error {
			if broken.Load() {
				return errors.New("bug 1234")
			}
			if _, dup := handled.LoadOrStore(string(msg.Body), true); !dup {
				handledN.Add(1)
			}
			return nil
		})}}, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{work, dlx}, Queues: []kombu.Queue{dead}}))
	if err != nil {
		t.Fatal(err)
	}
	stopConsumer := run(t, consumer)
	defer stopConsumer()
	p := kombu.NewProducer(conn, kombu.WithExchange(work), kombu.WithRoutingKey("job"))
	for i := range n {
		mustPublish(t, p.Publish(ctx, fmt.Sprintf("job %d", i)))
	}
	waitUntil(t, "every job dead-lettered", func() bool { return ready(t, conn, dead.Name) == n })

	broken.Store(false) // the fix is deployed: replay
	s := newShovel(t, conn, dead, conn, work, kombu.WithShovelPassiveSource(), kombu.WithShovelDrain())
	if err := s.Run(ctx); err != nil {
		t.Fatalf("replay: %v", err)
	}
	waitUntil(t, "every replayed job handled", func() bool { return handledN.Load() == n })
	if n := ready(t, conn, dead.Name); n != 0 {
		t.Errorf("%d messages left in the dead-letter queue", n)
	}
	if st := s.Stats(); st.Moved != n {
		t.Errorf("stats %+v, want %d moved", st, n)
	}
}

// Moving between two RabbitMQ queues with publisher confirms.
func TestShovelOnRabbitMQ(t *testing.T) {
	url := brokertest.AMQPURL(t)
	src, dst := dialURL(t, url), dialURL(t, url)
	ctx := ctxT(t)
	prefix := fmt.Sprintf("kombu-go.shovel.%d.", time.Now().UnixNano())
	in, out := kombu.Queue{Name: prefix + "in"}, kombu.Queue{Name: prefix + "out"}
	t.Cleanup(func() {
		_, _ = in.Delete(context.Background(), src)
		_, _ = out.Delete(context.Background(), src)
	})
	p := kombu.NewProducer(src, kombu.WithRoutingKey(in.Name), kombu.WithDeclare(in))
	var batch kombu.Batch
	for i := range 1000 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i), kombu.InBatch(&batch), kombu.WithHeaders(map[string]any{"i": int64(i)})))
	}
	mustPublish(t, batch.Send(ctx))
	s := newShovel(t, src, in, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey(out.Name),
		kombu.WithShovelDeclare(kombu.ShovelDestination, out), kombu.WithShovelDrain())
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := bodies(t, dst, out.Name, 1000)
	for i, b := range got {
		if b != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: out of order or lost", i, b)
		}
	}
	if st := s.Stats(); st.Moved != 1000 || st.Batches > 200 {
		t.Errorf("stats %+v", st)
	}
}

// BenchmarkShovel moves 256-byte messages from one queue to another,
// batched (the default, 100 a batch) and one by one (WithShovelBatchSize(1):
// each publish confirmed before the next, as RabbitMQ's shovel plugin
// does), on the memory broker and on RabbitMQ with publisher confirms.
// The msgs/s column is the rate. internal/shoveltest's
// BenchmarkShovelAcross has Redis.
func BenchmarkShovel(b *testing.B) {
	routes := []struct{ name, src, dst string }{
		{"memory→memory", "memory:///bench-shovel-src", "memory:///bench-shovel-dst"},
		{"amqp→amqp", "amqp", "amqp"},
	}
	for _, r := range routes {
		for _, size := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", r.name, size), func(b *testing.B) {
				src, dst := r.src, r.dst
				if src == "amqp" {
					src = brokertest.AMQPURL(b)
					dst = src
				}
				shoveltest.Bench(b, src, dst, size)
			})
		}
	}
}

// A refusal that waiting does not cure (here the destination exchange was
// deleted under the shovel: RabbitMQ refuses the publish, 404) returns the
// messages to the source queue and ends Run with the error.
func TestShovelStopsOnALastingRefusalOnRabbitMQ(t *testing.T) {
	url := brokertest.AMQPURL(t)
	src, dst := dialURL(t, url), dialURL(t, url)
	ctx := ctxT(t)
	prefix := fmt.Sprintf("kombu-go.shovel.%d.", time.Now().UnixNano())
	in, gone := kombu.Queue{Name: prefix + "in"}, kombu.Exchange{Name: prefix + "gone"}
	t.Cleanup(func() { _, _ = in.Delete(context.Background(), src) })
	s := newShovel(t, src, in, dst, gone)
	// Deleted by someone else: the shovel's connection still has it
	// declared (through its own it would declare it again).
	if err := gone.Delete(ctx, dialURL(t, url)); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(src, kombu.WithRoutingKey(in.Name))
	for i := range 3 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i)))
	}
	stop, ended := runShovel(t, s)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if err := stop(); !errors.Is(err, kombu.ErrNotFound) {
		t.Fatalf("Run: %v, want ErrNotFound", err)
	}
	if got := bodies(t, src, in.Name, 3); len(got) != 3 {
		t.Errorf("the source holds %q, want the three messages back", got)
	}
}

// A destination that nacks (a RabbitMQ queue full, with x-overflow
// reject-publish) is waited out: the shovel holds the nacked messages,
// publishes them again after a back-off, and moves them all once there is
// room.
func TestShovelWaitsOutNacksOnRabbitMQ(t *testing.T) {
	url := brokertest.AMQPURL(t)
	src, dst := dialURL(t, url), dialURL(t, url)
	ctx := ctxT(t)
	prefix := fmt.Sprintf("kombu-go.shovel.%d.", time.Now().UnixNano())
	in := kombu.Queue{Name: prefix + "in"}
	full := kombu.Queue{Name: prefix + "full", MaxLength: 5, Arguments: map[string]any{"x-overflow": "reject-publish"}}
	t.Cleanup(func() {
		_, _ = in.Delete(context.Background(), src)
		_, _ = full.Delete(context.Background(), src)
	})
	p := kombu.NewProducer(src, kombu.WithRoutingKey(in.Name), kombu.WithDeclare(in))
	for i := range 12 {
		mustPublish(t, p.Publish(ctx, fmt.Sprint(i)))
	}
	s := newShovel(t, src, in, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey(full.Name),
		kombu.WithShovelDeclare(kombu.ShovelDestination, full),
		kombu.WithShovelBackoff(kombu.RetryPolicy{IntervalStart: 20 * time.Millisecond, IntervalStep: 20 * time.Millisecond, IntervalMax: 100 * time.Millisecond}))
	stop, ended := runShovel(t, s)
	waitUntil(t, "nacked messages published again", func() bool { return s.Stats().Republished >= 3 })
	select {
	case <-ended:
		t.Fatalf("Run returned on a nack: %v", stop())
	default:
	}
	got := bodies(t, dst, full.Name, 12) // taking them makes room
	slices.SortFunc(got, func(a, b string) int { return len(a) - len(b) + strings.Compare(a, b)*boolInt(len(a) == len(b)) })
	if want := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}; !slices.Equal(got, want) {
		t.Errorf("moved %q, want each of the 12 once", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Moved != 12 || st.Republished == 0 {
		t.Errorf("stats %+v", st)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
