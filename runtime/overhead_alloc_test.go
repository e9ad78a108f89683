package kombu_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/alloctest"
	"github.com/kombu-go/kombu/internal/payload"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// The SDK's own allocations per message, without a broker's: what the
// runtime and the generated code cost above the driver. Each transport's
// alloc_test.go budgets the whole path through its driver. A speed-up
// lowers these constants to what the tests then log.
const (
	// publishOverheadAllocBudget: one generated PlaceOrder of a 100-byte
	// order on a driver that drops it. Measured 1: the encoded body
	// (proto.Marshal's buffer). The Publishing comes from a sync.Pool:
	// emptied by each GC, it costs one allocation per GC, which
	// AllocsPerRun's division over alloctest.Runs absorbs.
	publishOverheadAllocBudget = 1
	// deliverOverheadAllocBudget: one delivery handed to a generated
	// consumer at its defaults, through its handler, to its ack, on a
	// driver that hands out the same delivery and acks nothing. Measured 8:
	// the Message, and 7 decoding the order, which no consumer can avoid
	// with this message type: the OrderPlaced kombu.Typed decodes into and
	// proto.Unmarshal's 6 (two strings, the items slice as it grows to two,
	// and the two items, 3-byte strings that the tiny allocator places and
	// a memory profile does not show).
	deliverOverheadAllocBudget = 8
	// publishWithOptionsAllocBudget: a hand-written Publish of a raw
	// 100-byte body with two per-call options. Measured 1: the variadic
	// slice the call builds for its options, which escapes because each
	// option is applied through an interface. The raw body is sent as it
	// is and the publish's configuration comes from a pool (it was a
	// 350-byte allocation per publish, and three times the time).
	publishWithOptionsAllocBudget = 1
)

func TestPublishOverheadAllocs(t *testing.T) {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "discard-bench:///alloctest") // see overhead_bench_test.go
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := quickstartv1.NewShopProducer(conn)
	order := payload.Order()
	alloctest.Check(t, "publish, SDK only", publishOverheadAllocBudget, func() {
		if err := p.PlaceOrder(ctx, order); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPublishWithOptionsOverheadAllocs(t *testing.T) {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "discard-bench:///alloctest-options")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := kombu.NewProducer(conn)
	body := make([]byte, 100)
	rk, ct := kombu.WithRoutingKey("orders"), kombu.WithContentType("application/json", "utf-8")
	alloctest.Check(t, "publish with options, SDK only", publishWithOptionsAllocBudget, func() {
		if err := p.Publish(ctx, body, rk, ct); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeliverOverheadAllocs(t *testing.T) {
	alloctest.Check(t, "deliver, SDK only", deliverOverheadAllocBudget, replayConsumer(t))
}

// replayConsumer runs the generated Shop consumer on a connection to the
// replay driver (dialled with opts) and returns a function that hands it
// one order and returns once its handler has seen it: the deliver path
// without a broker. The consumer stops when the test ends.
func replayConsumer(t *testing.T, opts ...kombu.DialOption) (deliver func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	deliveries := make(chan *transport.Delivery)
	replays.Store(t.Name(), deliveries)
	t.Cleanup(func() { replays.Delete(t.Name()) })
	conn, err := kombu.Dial(ctx, "replay-alloctest:///"+t.Name(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	handled := make(chan struct{})
	consumer, err := quickstartv1.NewShopConsumer(conn, shopFunc(func() { handled <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		consumer.Close()
		if err := <-ran; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
	body, err := proto.Marshal(payload.Order())
	if err != nil {
		t.Fatal(err)
	}
	d := &transport.Delivery{
		Body: body,
		Properties: transport.Properties{ContentType: "application/x-protobuf", ContentEncoding: "binary",
			DeliveryMode: transport.Persistent, Type: "quickstart.v1.Shop.PlaceOrder"},
		Exchange: "shop", RoutingKey: "order.placed", Queue: "quickstart.orders",
		Tag: 1, Acknowledger: nopAcker{},
	}
	return func() {
		select {
		case deliveries <- d:
		case <-ctx.Done():
			t.Fatal("the consumer did not take the delivery")
		}
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("the handler did not see the delivery")
		}
	}
}

// shopFunc is a Shop handler whose PlaceOrder calls f.
type shopFunc func()

func (f shopFunc) PlaceOrder(context.Context, *quickstartv1.OrderPlaced, *kombu.Message) error {
	f()
	return nil
}

func (shopFunc) ShipParcel(context.Context, *quickstartv1.ParcelShipped, *kombu.Message) error {
	return nil
}

// replayDriver opens in-process connections whose subscriptions deliver
// what a test sends on the channel stored in replays under the URL's path:
// the consumer's own cost per message, with no broker's added.
type replayDriver struct{}

var replays sync.Map // URL path, without its leading slash → chan *transport.Delivery

func init() { transport.Register("replay-alloctest", replayDriver{}) }

func (replayDriver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	memory, _ := transport.Lookup("memory")
	c, err := memory.Open(ctx, u, cfg) // for the declarations
	if err != nil {
		return nil, err
	}
	ch, ok := replays.Load(strings.TrimPrefix(u.Path, "/"))
	if !ok {
		return nil, fmt.Errorf("replay-alloctest: no deliveries stored for %q", u.Path)
	}
	return replayConn{Conn: c, deliveries: ch.(chan *transport.Delivery)}, nil
}

type replayConn struct {
	transport.Conn
	deliveries chan *transport.Delivery
}

func (c replayConn) Consume(context.Context, transport.ConsumeSpec) (transport.Subscription, error) {
	return &replaySub{deliveries: c.deliveries, done: make(chan struct{})}, nil
}

type replaySub struct {
	deliveries chan *transport.Delivery
	once       sync.Once
	done       chan struct{}
}

func (s *replaySub) Deliveries() <-chan *transport.Delivery { return s.deliveries }
func (s *replaySub) Done() <-chan struct{}                  { return s.done }
func (s *replaySub) Err() error                             { return nil }

// Cancel ends the subscription. The test has stopped sending by then.
func (s *replaySub) Cancel(context.Context) error {
	s.once.Do(func() { close(s.done); close(s.deliveries) })
	return nil
}

// nopAcker settles nothing: the delivery is handed out again.
type nopAcker struct{}

func (nopAcker) Ack(uint64, bool) error    { return nil }
func (nopAcker) Reject(uint64, bool) error { return nil }
