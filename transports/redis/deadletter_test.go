package redis_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func declareDLQueue(t testing.TB, c transport.Conn, name string, args map[string]any) {
	t.Helper()
	if _, err := c.DeclareQueue(context.Background(), transport.Queue{Name: name, Durable: true, Arguments: args}); err != nil {
		t.Fatalf("declare queue %q: %v", name, err)
	}
}

// rejectOne takes one message from queue and rejects it without requeue.
func rejectOne(t testing.TB, c transport.Conn, queue string) *transport.Delivery {
	t.Helper()
	d, err := c.Get(context.Background(), queue, false)
	if err != nil {
		t.Fatalf("get from %q: %v", queue, err)
	}
	if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
		t.Fatalf("reject: %v", err)
	}
	return d
}

func getOne(t testing.TB, c transport.Conn, queue string) *transport.Delivery {
	t.Helper()
	d, err := c.Get(context.Background(), queue, true)
	if err != nil {
		t.Fatalf("get from %q: %v", queue, err)
	}
	return d
}

// death returns the delivery's x-death entries, checking their shape.
func death(t testing.TB, d *transport.Delivery) []map[string]any {
	t.Helper()
	list, ok := d.Headers["x-death"].([]any)
	if !ok || len(list) == 0 {
		t.Fatalf("x-death header %#v (headers %v)", d.Headers["x-death"], d.Headers)
	}
	out := make([]map[string]any, len(list))
	for i, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			t.Fatalf("x-death entry %#v is not a table", x)
		}
		out[i] = m
	}
	return out
}

func TestRejectDeadLettersWithXDeath(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "work.x", Type: transport.ExchangeDirect, Durable: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dlx", Type: transport.ExchangeDirect, Durable: true})
	declareDLQueue(t, c, "work", map[string]any{"x-dead-letter-exchange": "dlx"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead"})
	transporttest.Bind(t, c, transport.Binding{Source: "work.x", Destination: "work", RoutingKey: "job"})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "dead", RoutingKey: "job"})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "work.x", RoutingKey: "job", Body: []byte("poison"),
		Headers: map[string]any{"app": "x"}, Properties: transport.Properties{ContentType: "text/plain", MessageID: "m1", Priority: 4}})

	rejectOne(t, c, "work")
	if len(e.unacked()) != 0 || len(e.unackedIndex()) != 0 {
		t.Errorf("unacked record left: %v", e.unacked())
	}
	if n := len(e.list("work")); n != 0 {
		t.Errorf("%d messages left in the rejecting queue", n)
	}
	items := e.list("dead" + sep + "3")
	if len(items) != 1 {
		t.Fatalf("dead-letter queue's priority-3 list %q; keys %v", items, e.keys())
	}
	d := getOne(t, c, "dead")
	if string(d.Body) != "poison" || d.Properties.MessageID != "m1" || d.Properties.Priority != 4 || d.Headers["app"] != "x" {
		t.Errorf("dead letter %q %+v %v", d.Body, d.Properties, d.Headers)
	}
	if d.Exchange != "dlx" || d.RoutingKey != "job" || d.Redelivered {
		t.Errorf("dead letter delivered from %q/%q, redelivered %t", d.Exchange, d.RoutingKey, d.Redelivered)
	}
	x := death(t, d)
	if len(x) != 1 || x[0]["count"] != int64(1) || x[0]["reason"] != "rejected" || x[0]["queue"] != "work" ||
		x[0]["exchange"] != "work.x" {
		t.Fatalf("x-death %v", x)
	}
	if rks, _ := x[0]["routing-keys"].([]any); len(rks) != 1 || rks[0] != "job" {
		t.Errorf("x-death routing-keys %v", x[0]["routing-keys"])
	}
	// A time.Time, as on RabbitMQ and memory://, stored as an ISO 8601
	// string in the envelope.
	if tm, ok := x[0]["time"].(time.Time); !ok || time.Since(tm) > time.Minute || tm.Nanosecond() != 0 {
		t.Errorf("x-death time %#v, want a time.Time of the last minute, in whole seconds", x[0]["time"])
	}
	if stored := items[0]; !regexp.MustCompile(`"time": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`).MatchString(stored) {
		t.Errorf("the stored dead letter's x-death time is not an ISO 8601 string in UTC: %s", stored)
	}
	if d.Headers["x-first-death-queue"] != "work" || d.Headers["x-first-death-reason"] != "rejected" {
		t.Errorf("x-first-death headers %v", d.Headers)
	}

	// Back into work and rejected again: the same entry counts 2.
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "work.x", RoutingKey: "job", Body: d.Body, Headers: d.Headers})
	rejectOne(t, c, "work")
	d = getOne(t, c, "dead")
	if x := death(t, d); len(x) != 1 || x[0]["count"] != int64(2) || x[0]["queue"] != "work" {
		t.Errorf("x-death after a second death %v", x)
	}
}

func TestDeadLetterRoutingKeyOverride(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dlx", Type: transport.ExchangeTopic, Durable: true})
	declareDLQueue(t, c, "work", map[string]any{"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead.work"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "other"})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "dead", RoutingKey: "dead.#"})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "other", RoutingKey: "work"})
	send(t, c, "work", "m")
	rejectOne(t, c, "work")
	d := getOne(t, c, "dead")
	if d.RoutingKey != "dead.work" || death(t, d)[0]["routing-keys"].([]any)[0] != "work" {
		t.Errorf("delivered with key %q, x-death %v", d.RoutingKey, d.Headers["x-death"])
	}
	if n := len(e.list("other")); n != 0 {
		t.Errorf("the original routing key was used too: %d in other", n)
	}
}

func TestDeadLetterToTheDefaultExchange(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	declareDLQueue(t, c, "work", map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead"})
	send(t, c, "work", "m")
	rejectOne(t, c, "work")
	if len(e.unacked()) != 0 {
		t.Errorf("unacked record left: %v", e.unacked())
	}
	d := getOne(t, c, "dead")
	if string(d.Body) != "m" || death(t, d)[0]["queue"] != "work" {
		t.Errorf("dead letter %q %v", d.Body, d.Headers)
	}

	// Without a routing key, the message's own names its queue: one
	// published to "work" through the default exchange comes back there.
	declareDLQueue(t, c, "loop", map[string]any{"x-dead-letter-exchange": ""})
	send(t, c, "loop", "again")
	rejectOne(t, c, "loop")
	d = getOne(t, c, "loop")
	if string(d.Body) != "again" || death(t, d)[0]["queue"] != "loop" {
		t.Errorf("dead letter %q %v", d.Body, d.Headers)
	}
}

func TestDeadLetterThroughFanout(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dlx", Type: transport.ExchangeFanout, Durable: true})
	declareDLQueue(t, c, "work", map[string]any{"x-dead-letter-exchange": "dlx"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead1"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead2"})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "dead1", RoutingKey: ""})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "dead2", RoutingKey: "whatever"})
	send(t, c, "work", "m")
	// Nobody subscribes to the fanout channel: the dead letter goes to the
	// bound queues' lists all the same.
	rejectOne(t, c, "work")
	for _, q := range []string{"dead1", "dead2"} {
		d := getOne(t, c, q)
		if string(d.Body) != "m" || death(t, d)[0]["queue"] != "work" {
			t.Errorf("%s: dead letter %q %v", q, d.Body, d.Headers)
		}
	}

	// A consumer subscribed to the DLX gets it once.
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"dead1"}, Prefetch: 10})
	send(t, c, "work", "n")
	rejectOne(t, c, "work")
	d := recv(t, s)
	ack(t, d)
	if string(d.Body) != "n" {
		t.Errorf("consumed %q", d.Body)
	}
	none(t, s, 300*time.Millisecond)
}

func TestDeadLetterRoutesWithBindingsAddedElsewhere(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	other := e.dial()
	t.Cleanup(func() { other.Close() })
	declareDLQueue(t, c, "work", map[string]any{"x-dead-letter-exchange": "dlx"})
	send(t, c, "work", "a", "b")
	rejectOne(t, c, "work") // no binding yet: dropped
	transporttest.Bind(t, other, transport.Binding{Source: "dlx", Destination: "dead", RoutingKey: "work"})
	rejectOne(t, c, "work") // the route cached by the first reject is stale
	if items := e.list("dead"); len(items) != 1 {
		t.Fatalf("dead %q", items)
	}
	if d := getOne(t, c, "dead"); string(d.Body) != "b" {
		t.Errorf("dead letter %q", d.Body)
	}
}

func TestRejectWithRequeueOrWithoutDLXUnchanged(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	declareDLQueue(t, c, "work", map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "plain"})
	send(t, c, "work", "m")
	d, err := c.Get(context.Background(), "work", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
		t.Fatal(err)
	}
	if n := len(e.list("dead")); n != 0 {
		t.Errorf("requeued message dead-lettered")
	}
	d = getOne(t, c, "work")
	if !d.Redelivered || d.Headers["x-death"] != nil {
		t.Errorf("requeued: redelivered %t, headers %v", d.Redelivered, d.Headers)
	}

	send(t, c, "plain", "p")
	rejectOne(t, c, "plain")
	transporttest.Eventually(t, "the reject to reach Redis", func() bool { return len(e.unacked()) == 0 })
	for _, k := range e.keys() {
		// Get's take receipt (receipt.go) stays until Close.
		if k != "unacked_index" && k != "unacked" && !strings.HasPrefix(k, "_kombu-go.take.") {
			t.Errorf("key %q left after rejecting without a dead-letter exchange", k)
		}
	}

	// Redeclared without the argument, the queue forgets it.
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "work"})
	send(t, c, "work", "m2")
	rejectOne(t, c, "work")
	transporttest.Eventually(t, "the reject to reach Redis", func() bool { return len(e.unacked()) == 0 })
	if n := len(e.list("dead")); n != 0 {
		t.Errorf("dead-lettered after redeclaration without x-dead-letter-exchange")
	}
}

func TestDeadLetterArguments(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	if !c.Features().Has(transport.FeatureDeadLetter) || c.Features().Has(transport.FeatureTTL) {
		t.Errorf("features %v", c.Features())
	}
	for _, args := range []map[string]any{
		{"x-dead-letter-routing-key": "k"},
		{"x-dead-letter-exchange": 5},
		{"x-dead-letter-exchange": "x", "x-dead-letter-routing-key": 5},
	} {
		_, err := c.DeclareQueue(context.Background(), transport.Queue{Name: "q", Arguments: args})
		if !errors.Is(err, transport.ErrPrecondition) {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := c.DeclareQueue(context.Background(), transport.Queue{Name: "q", Arguments: map[string]any{"x-message-ttl": 5}}); !errors.Is(err, transport.ErrNotSupported) {
		t.Errorf("x-message-ttl: %v", err)
	}
}

// The runtime's path: a handler's error rejects, and the queue's dead-letter
// exchange gets the message.
func TestConsumerErrorDeadLetters(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := kombu.Dial(ctx, e.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dlx := kombu.Exchange{Name: "dlx", Type: kombu.ExchangeFanout}
	topo := kombu.Topology{
		Exchanges: []kombu.Exchange{dlx},
		Queues:    []kombu.Queue{{Name: "dead", Bindings: []kombu.Binding{{Exchange: "dlx"}}}},
	}
	q := kombu.Queue{Name: "work", DeadLetterExchange: "dlx"}
	var calls atomic.Int32
	cons, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(
		func(context.Context, *kombu.Message) error {
			calls.Add(1)
			return errors.New("cannot")
		})}}, kombu.WithTopology(topo))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, ctx, cons)
	if err := kombu.NewProducer(conn).Publish(ctx, map[string]any{"n": 1}, kombu.WithRoutingKey("work")); err != nil {
		t.Fatal(err)
	}
	d := waitDead(t, e, "dead")
	if x := death(t, d); x[0]["reason"] != "rejected" || x[0]["queue"] != "work" || x[0]["count"] != int64(1) {
		t.Errorf("x-death %v", x)
	}
	if calls.Load() != 1 {
		t.Errorf("handler called %d times", calls.Load())
	}
}

// WithMessageRetry on Redis republishes at once, MaxRetries times, then rejects:
// the message ends in the dead-letter queue.
func TestRetryEndsInTheDeadLetterQueue(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := kombu.Dial(ctx, e.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := kombu.Queue{Name: "work", DeadLetterExchange: "", DeadLetterRoutingKey: "dead",
		Arguments: map[string]any{"x-dead-letter-exchange": ""}}
	var calls atomic.Int32
	cons, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(
		func(context.Context, *kombu.Message) error {
			calls.Add(1)
			return errors.New("cannot")
		})}},
		kombu.WithTopology(kombu.Topology{Queues: []kombu.Queue{{Name: "dead"}}}),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 3, IntervalStart: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, ctx, cons)
	if err := kombu.NewProducer(conn).Publish(ctx, map[string]any{"n": 1}, kombu.WithRoutingKey("work")); err != nil {
		t.Fatal(err)
	}
	d := waitDead(t, e, "dead")
	if n := calls.Load(); n != 4 {
		t.Errorf("handler called %d times, want 1 + 3 retries", n)
	}
	if n, _ := d.Headers[kombu.RetriesHeader].(int64); n != 3 {
		t.Errorf("%s = %#v", kombu.RetriesHeader, d.Headers[kombu.RetriesHeader])
	}
	if x := death(t, d); x[0]["queue"] != "work" || x[0]["count"] != int64(1) {
		t.Errorf("x-death %v", x)
	}
	if n := len(e.list("work")); n != 0 {
		t.Errorf("%d left in work", n)
	}
}

func runConsumer(t *testing.T, ctx context.Context, cons *kombu.Consumer) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(ctx) }()
	t.Cleanup(func() { cons.Close(); <-done })
}

// waitDead waits for a message in the queue and takes it.
func waitDead(t *testing.T, e *env, queue string) *transport.Delivery {
	t.Helper()
	c := e.dial()
	t.Cleanup(func() { c.Close() })
	var d *transport.Delivery
	transporttest.Eventually(t, "a dead letter in "+queue, func() bool {
		got, err := c.Get(context.Background(), queue, true)
		d = got
		return err == nil
	})
	return d
}
