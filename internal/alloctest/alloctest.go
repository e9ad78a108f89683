// Package alloctest enforces allocation budgets: how many heap allocations
// one message may cost on the publish and deliver paths, measured with
// testing.AllocsPerRun through kombu-go's public API. Each transport's tests
// call it with their broker's URL and their budgets, written as named
// constants beside the test, so that a change that allocates more per
// message fails CI, and a speed-up lowers the constant.
//
// What counts:
//   - publish: one Producer.Publish of payload.Order (100 bytes of protobuf)
//     through the route a generated producer builds (a topic exchange, a
//     routing key, the protobuf serializer, the message type), returning
//     once the driver has the message (confirmed where the transport
//     confirms, as by default);
//   - deliver: one message from that publish to its handler's return and
//     the consumer's ack, with a consumer built as a generated one is
//     (kombu.Typed over the handler, the same accept list, no options).
//
// The route is built by hand (Route), because generated stubs fix their
// names and tests sharing a broker must not share queues;
// TestRouteMatchesGeneratedAllocs keeps it as costly as the generated
// quickstart stubs.
//
// Allocations are the whole process's (runtime.MemStats.Mallocs), so a
// driver's goroutines count too: the broker's own work on memory://, the
// client library's reader on a network transport. They are measured over
// many messages and divided, so that what background goroutines allocate
// now and then (heartbeats, timers, a sync.Pool refilled after a garbage
// collection) weighs 1/runs of an allocation, and testing.AllocsPerRun's
// truncation to a whole number absorbs it.
//
// The race detector changes allocation counts (sync.Pool drops items at
// random under it), so the budgets are skipped in -race builds; `make test`
// runs them in a build of their own without it.
package alloctest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/payload"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Runs is how many messages a measurement averages over.
const Runs = 1000

// warmup is how many messages go through before measuring, so that what
// happens once (declarations cached, pools filled, buffers grown to size)
// is not counted per message.
const warmup = 100

// wait bounds the whole measurement; it ends in a few seconds at most.
const wait = time.Minute

// Check fails t when fn, one message's worth of work, allocates more than
// budget times on average over Runs calls (after warmup calls), and logs
// the count either way, so that a speed-up shows where the budget can be
// lowered. It is skipped under the race detector.
func Check(t *testing.T, what string, budget float64, fn func()) {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts under -race are not the program's (sync.Pool drops items at random); make test runs this without -race")
	}
	got := measure(fn)
	switch {
	case got > budget:
		t.Errorf("%s: %.0f allocations per message, over its budget of %.0f", what, got, budget)
	case got < budget:
		t.Logf("%s: %.0f allocations per message, under its budget of %.0f (if it stays there, lower the budget)", what, got, budget)
	default:
		t.Logf("%s: %.0f allocations per message (budget %.0f)", what, got, budget)
	}
}

// measure returns fn's allocations per call: the fewest of rounds
// averages, each over Runs calls, after warmup more. Where the count
// depends on timing (a consumer that wakes and finds its queue empty
// allocates more), the fewest is the work itself; a regression raises
// every round, so the check still catches it, without failing on a busy
// machine's timing.
func measure(fn func()) float64 {
	for range warmup {
		fn()
	}
	best := testing.AllocsPerRun(Runs, fn)
	for range rounds - 1 {
		best = min(best, testing.AllocsPerRun(Runs, fn))
	}
	return best
}

// rounds is how many averages measure takes.
const rounds = 3

// Route is the measurements' exchange, queue and routing key: the
// quickstart's PlaceOrder route, under names unique to the test, so that
// tests running at once on a shared broker never see each other's messages.
type Route struct {
	Exchange kombu.Exchange
	Queue    kombu.Queue
	Key      string
}

// NewRoute returns a route with names unique to this run of t.
func NewRoute(t testing.TB) Route {
	var b [6]byte
	rand.Read(b[:])
	prefix := "kombu-go-alloctest." + hex.EncodeToString(b[:])
	return Route{
		Exchange: kombu.Exchange{Name: prefix, Type: kombu.ExchangeTopic},
		Queue: kombu.Queue{Name: prefix + ".orders",
			Bindings: []kombu.Binding{{Exchange: prefix, RoutingKey: "order.*"}}},
		Key: "order.placed",
	}
}

// Topology is what the route declares.
func (r Route) Topology() kombu.Topology {
	return kombu.Topology{Exchanges: []kombu.Exchange{r.Exchange}, Queues: []kombu.Queue{r.Queue}}
}

// Producer returns the producer a generated producer keeps for the route:
// quickstartv1.NewShopProducer's, with the route's names.
func (r Route) Producer(conn *kombu.Connection) *kombu.Producer {
	return kombu.NewProducer(conn, kombu.WithExchange(r.Exchange), kombu.WithSerializer("protobuf"), kombu.WithUnroutableWarning()).
		With(kombu.WithRoutingKey(r.Key), kombu.WithType("quickstart.v1.Shop.PlaceOrder"), kombu.WithDeclare(r.Queue))
}

// Consumer returns a consumer of the route's queue built as
// quickstartv1.NewShopConsumer builds one (no options), calling handle for
// each order.
func (r Route) Consumer(conn *kombu.Connection, handle handler) (*kombu.Consumer, error) {
	return kombu.NewConsumer(conn, []kombu.Subscription{{Queue: r.Queue, Handler: kombu.Typed(handle)}},
		kombu.WithTopology(r.Topology()), kombu.WithAccept("json", "protobuf"))
}

// dial connects to url and closes the connection, after deleting the
// route's queue and exchange, when the test ends.
func dial(t *testing.T, url string, r Route) *kombu.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, qerr := r.Queue.Delete(ctx, conn)
		err := errors.Join(qerr, r.Exchange.Delete(ctx, conn), conn.Close())
		if err != nil && !errors.Is(err, kombu.ErrNotFound) {
			t.Errorf("clean up: %v", err)
		}
	})
	if err := r.Topology().Declare(ctx, conn); err != nil {
		t.Fatalf("declare: %v", err)
	}
	return conn
}

// Publish fails t when one publish to url costs more than budget
// allocations (see the package doc for what is counted).
func Publish(t *testing.T, url string, budget float64) {
	t.Helper()
	r := NewRoute(t)
	p := r.Producer(dial(t, url, r))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	Check(t, "publish", budget, publishOnce(t, ctx, func(ctx context.Context, m *quickstartv1.OrderPlaced) error {
		return p.Publish(ctx, m)
	}))
}

// Deliver fails t when one message through url, from its publish to its
// handler's return and ack, costs more than budget allocations (see the
// package doc for what is counted).
func Deliver(t *testing.T, url string, budget float64) {
	t.Helper()
	r := NewRoute(t)
	conn := dial(t, url, r)
	p := r.Producer(conn)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	Check(t, "deliver", budget, deliverOnce(t, ctx,
		func(h handler) (*kombu.Consumer, error) { return r.Consumer(conn, h) },
		func(ctx context.Context, m *quickstartv1.OrderPlaced) error { return p.Publish(ctx, m) }))
}

// handler is a generated handler interface's method for the route.
type handler = func(context.Context, *quickstartv1.OrderPlaced, *kombu.Message) error

// publishOnce returns one message's publish, as Check measures it.
func publishOnce(t *testing.T, ctx context.Context, publish func(context.Context, *quickstartv1.OrderPlaced) error) func() {
	order := payload.Order()
	return func() {
		if err := publish(ctx, order); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// deliverOnce starts the consumer newConsumer makes around the handler it
// is given, and returns one message's delivery as Check measures it: a
// publish, and the wait for its handler. The consumer runs until ctx ends
// and the test has ended.
func deliverOnce(t *testing.T, ctx context.Context, newConsumer func(handler) (*kombu.Consumer, error), publish func(context.Context, *quickstartv1.OrderPlaced) error) func() {
	t.Helper()
	// The handler hands each order over to the measuring goroutine; a
	// channel of struct{} allocates nothing. The consumer acks after the
	// handler returns, while the next message is being published: every
	// ack but the last falls within the measurement.
	handled := make(chan struct{})
	consumer, err := newConsumer(func(context.Context, *quickstartv1.OrderPlaced, *kombu.Message) error {
		select {
		case handled <- struct{}{}:
		case <-ctx.Done(): // measured no more: let the consumer stop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	ran := make(chan error, 1)
	go func() { ran <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		consumer.Close()
		if err := <-ran; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
	send := publishOnce(t, ctx, publish)
	return func() {
		send()
		select {
		case <-handled:
		case err := <-ran:
			t.Fatalf("consumer stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the handler did not see the message in time")
		}
	}
}
