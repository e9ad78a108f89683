package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	namesv1 "github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/testgen/kombutest/names/v1"
	kombutestv1 "github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/testgen/kombutest/v1"
	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/memory"
)

// These tests compile and run generated code on the in-process broker:
// messages published through generated producers must reach the right
// method of generated consumers, with their fields intact.

// delivery is one call of a handler method.
type delivery struct {
	method string
	m      proto.Message
	msg    *kombu.Message
}

// recorder collects handler calls; the generated handlers below embed it.
type recorder chan delivery

func (r recorder) record(method string, m proto.Message, msg *kombu.Message) error {
	r <- delivery{method, m, msg}
	return nil
}

// expect waits for the next handler call and checks its method and message.
func (r recorder) expect(t *testing.T, method string, want proto.Message) delivery {
	t.Helper()
	select {
	case d := <-r:
		if d.method != method {
			t.Errorf("handled by %s, want %s", d.method, method)
		}
		if !proto.Equal(d.m, want) {
			t.Errorf("%s got %v, want %v", method, d.m, want)
		}
		return d
	case <-time.After(5 * time.Second):
		t.Fatalf("%s was not called", method)
		return delivery{}
	}
}

// broker names a fresh in-process broker for the test. The broker lives
// as long as the process, so the name is unique per run too (-count=N).
func broker(t *testing.T) string {
	return fmt.Sprintf("memory:///%s-%d", strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()), brokerSeq.Add(1))
}

var brokerSeq atomic.Int64

func dial(t *testing.T, url string) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// start runs c until the test ends.
func start(t *testing.T, c *kombu.Consumer, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

type shopHandler struct {
	quickstartv1.UnimplementedShopHandler
	recorder
}

func (h shopHandler) PlaceOrder(_ context.Context, m *quickstartv1.OrderPlaced, msg *kombu.Message) error {
	return h.record("PlaceOrder", m, msg)
}

func (h shopHandler) ShipParcel(_ context.Context, m *quickstartv1.ParcelShipped, msg *kombu.Message) error {
	return h.record("ShipParcel", m, msg)
}

func TestQuickstart(t *testing.T) {
	ctx := context.Background()
	conn := dial(t, broker(t))
	h := shopHandler{recorder: make(recorder, 10)}
	c, err := quickstartv1.NewShopConsumer(conn, h)
	start(t, c, err)
	p := quickstartv1.NewShopProducer(conn)

	order := &quickstartv1.OrderPlaced{OrderId: "o-1", Customer: "ada", AmountCents: 4200, Items: []string{"sku-1", "sku-2"}}
	if err := p.PlaceOrder(ctx, order); err != nil {
		t.Fatal(err)
	}
	d := h.expect(t, "PlaceOrder", order)
	checkDelivery(t, d, "quickstart.orders", "order.placed", "quickstart.v1.Shop.PlaceOrder", "application/x-protobuf")

	parcel := &quickstartv1.ParcelShipped{OrderId: "o-1", Carrier: "dhl", TrackingNumber: "JD0001"}
	if err := p.ShipParcel(ctx, parcel); err != nil {
		t.Fatal(err)
	}
	d = h.expect(t, "ShipParcel", parcel)
	checkDelivery(t, d, "quickstart.parcels", "parcel.shipped", "quickstart.v1.Shop.ShipParcel", "application/json")
	if !strings.Contains(string(d.msg.Body), `"tracking_number"`) {
		t.Errorf("JSON body %s does not use the proto field names", d.msg.Body)
	}
}

// checkDelivery checks where a message came from and how it was published.
func checkDelivery(t *testing.T, d delivery, queue, key, typ, contentType string) {
	t.Helper()
	if d.msg == nil {
		return
	}
	if queue != "" && d.msg.DeliveryInfo.Queue != queue {
		t.Errorf("%s: queue %q, want %q", d.method, d.msg.DeliveryInfo.Queue, queue)
	}
	if d.msg.DeliveryInfo.RoutingKey != key {
		t.Errorf("%s: routing key %q, want %q", d.method, d.msg.DeliveryInfo.RoutingKey, key)
	}
	if d.msg.Properties.Type != typ {
		t.Errorf("%s: type %q, want %q", d.method, d.msg.Properties.Type, typ)
	}
	if d.msg.Properties.ContentType != contentType {
		t.Errorf("%s: content type %q, want %q", d.method, d.msg.Properties.ContentType, contentType)
	}
}

type ordersHandler struct {
	kombutestv1.UnimplementedOrdersHandler
	recorder
}

func (h ordersHandler) PlaceOrder(_ context.Context, m *kombutestv1.OrderPlaced, msg *kombu.Message) error {
	return h.record("PlaceOrder", m, msg)
}

func (h ordersHandler) AmendOrder(_ context.Context, m *kombutestv1.OrderPlaced, msg *kombu.Message) error {
	return h.record("AmendOrder", m, msg)
}

func (h ordersHandler) RetryOrder(_ context.Context, m *kombutestv1.OrderPlaced, msg *kombu.Message) error {
	return h.record("RetryOrder", m, msg)
}

func (h ordersHandler) InvalidateCache(_ context.Context, m *kombutestv1.CacheInvalidated, msg *kombu.Message) error {
	return h.record("InvalidateCache", m, msg)
}

func (h ordersHandler) ArchiveOrder(_ context.Context, m *kombutestv1.OrderArchived, msg *kombu.Message) error {
	return h.record("ArchiveOrder", m, msg)
}

func (h ordersHandler) LegacyOrder(_ context.Context, m *kombutestv1.OrderPlaced, msg *kombu.Message) error {
	return h.record("LegacyOrder", m, msg)
}

func TestOrders(t *testing.T) {
	ctx := context.Background()
	conn := dial(t, broker(t))
	h := ordersHandler{recorder: make(recorder, 10)}
	c, err := kombutestv1.NewOrdersConsumer(conn, h)
	start(t, c, err)
	p := kombutestv1.NewOrdersProducer(conn)
	order := &kombutestv1.OrderPlaced{OrderId: "o-7", AmountCents: 1999, Items: []string{"a"}}

	t.Run("every route option", func(t *testing.T) {
		if err := p.PlaceOrder(ctx, order); err != nil {
			t.Fatal(err)
		}
		d := h.expect(t, "PlaceOrder", order)
		checkDelivery(t, d, "orders.work", "order.placed", "kombutest.v1.Orders.PlaceOrder", "application/json")
		props := d.msg.Properties
		if props.Priority != 5 || props.DeliveryMode != uint8(kombu.Transient) || props.Expiration != 90*time.Second {
			t.Errorf("priority %d, delivery mode %d, expiration %v; want 5, transient, 90s", props.Priority, props.DeliveryMode, props.Expiration)
		}
		if d.msg.Headers["compression"] == nil {
			t.Errorf("headers %v: no compression header", d.msg.Headers)
		}
	})
	t.Run("shared queue, by type", func(t *testing.T) {
		if err := p.AmendOrder(ctx, order); err != nil {
			t.Fatal(err)
		}
		checkDelivery(t, h.expect(t, "AmendOrder", order), "orders.work", "order.amended", "kombutest.v1.Orders.AmendOrder", "application/x-protobuf")
		if err := p.RetryOrder(ctx, order); err != nil {
			t.Fatal(err)
		}
		h.expect(t, "RetryOrder", order)
	})
	// A message published without the type property, as another program
	// would, is dispatched by routing key: exact, then topic pattern.
	plain := kombu.NewProducer(conn, kombu.WithExchange(kombutestv1.OrdersTopology().Exchanges[0]), kombu.WithSerializer("protobuf"))
	t.Run("shared queue, by routing key", func(t *testing.T) {
		if err := plain.Publish(ctx, order, kombu.WithRoutingKey("order.placed")); err != nil {
			t.Fatal(err)
		}
		h.expect(t, "PlaceOrder", order)
	})
	t.Run("shared queue, by topic pattern", func(t *testing.T) {
		if err := plain.Publish(ctx, order, kombu.WithRoutingKey("order.retry.3")); err != nil {
			t.Fatal(err)
		}
		checkDelivery(t, h.expect(t, "RetryOrder", order), "orders.work", "order.retry.3", "", "application/x-protobuf")
	})
	t.Run("shared queue, no route", func(t *testing.T) {
		// Straight to the queue through the default exchange: no type, no
		// matching key. The dispatcher fails with ErrNoRoute, so the message
		// is rejected and dead-lettered through orders.dlx to orders.dead.
		direct := kombu.NewProducer(conn, kombu.WithSerializer("protobuf"))
		lost := &kombutestv1.OrderPlaced{OrderId: "lost"}
		if err := direct.Publish(ctx, lost, kombu.WithRoutingKey("orders.work")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			msg, err := kombu.Queue{Name: "orders.dead"}.Get(ctx, conn, kombu.WithAutoAck())
			if errors.Is(err, kombu.ErrEmpty) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("orders.dead: %v", err)
			}
			var got kombutestv1.OrderPlaced
			if err := msg.Decode(&got); err != nil || got.GetOrderId() != "lost" {
				t.Errorf("dead-lettered %v (%v), want order lost", &got, err)
			}
			break
		}
		select {
		case d := <-h.recorder:
			t.Errorf("%s handled a message with no route", d.method)
		default:
		}
	})
	t.Run("default route", func(t *testing.T) {
		archived := &kombutestv1.OrderArchived{OrderId: "o-7"}
		if err := p.ArchiveOrder(ctx, archived); err != nil {
			t.Fatal(err)
		}
		checkDelivery(t, h.expect(t, "ArchiveOrder", archived), "kombutest.v1.Orders.ArchiveOrder",
			"kombutest.v1.Orders.ArchiveOrder", "kombutest.v1.Orders.ArchiveOrder", "application/x-protobuf")
	})
	t.Run("broadcast", func(t *testing.T) {
		inv := &kombutestv1.CacheInvalidated{OrderId: "o-7"}
		if err := p.InvalidateCache(ctx, inv); err != nil {
			t.Fatal(err)
		}
		d := h.expect(t, "InvalidateCache", inv)
		if q := d.msg.DeliveryInfo.Queue; q == "" || q == "kombutest.v1.Orders.InvalidateCache" {
			t.Errorf("broadcast delivered from queue %q, want a server-named one", q)
		}
	})
	t.Run("deprecated route", func(t *testing.T) {
		//lint:ignore SA1019 the deprecated route must still work
		if err := p.LegacyOrder(ctx, order); err != nil {
			t.Fatal(err)
		}
		checkDelivery(t, h.expect(t, "LegacyOrder", order), "orders.legacy",
			"kombutest.v1.Orders.LegacyOrder", "kombutest.v1.Orders.LegacyOrder", "application/x-protobuf")
	})
}

// TestUnimplemented: a generated Unimplemented…Handler method returns an
// error that errors.Is matches with kombu.ErrUnimplemented and that names
// the service and method, and the consumer rejects the message it was
// given, so that it is dead-lettered rather than acked and lost or
// requeued to come straight back.
func TestUnimplemented(t *testing.T) {
	ctx := context.Background()
	err := kombutestv1.UnimplementedOrdersHandler{}.PlaceOrder(ctx, nil, nil)
	if !errors.Is(err, kombu.ErrUnimplemented) || !strings.Contains(err.Error(), "kombutest.v1.Orders.PlaceOrder") {
		t.Errorf("UnimplementedOrdersHandler.PlaceOrder: %v, want ErrUnimplemented naming kombutest.v1.Orders.PlaceOrder", err)
	}
	_, err = kombutestv1.UnimplementedPricingHandler{}.Quote(ctx, nil, nil)
	if !errors.Is(err, kombu.ErrUnimplemented) || !strings.Contains(err.Error(), "kombutest.v1.Pricing.Quote") {
		t.Errorf("UnimplementedPricingHandler.Quote: %v, want ErrUnimplemented naming kombutest.v1.Pricing.Quote", err)
	}

	// orders.work, PlaceOrder's queue, dead-letters through orders.dlx into
	// orders.dead.
	conn := dial(t, broker(t))
	c, err := kombutestv1.NewOrdersConsumer(conn, kombutestv1.UnimplementedOrdersHandler{})
	start(t, c, err)
	order := &kombutestv1.OrderPlaced{OrderId: "o-unimplemented"}
	if err := kombutestv1.NewOrdersProducer(conn).PlaceOrder(ctx, order); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := kombu.Queue{Name: "orders.dead"}.Get(ctx, conn)
		if err == nil {
			if err := msg.Ack(); err != nil {
				t.Fatal(err)
			}
			var got kombutestv1.OrderPlaced
			if err := msg.Decode(&got); err != nil || !proto.Equal(&got, order) {
				t.Fatalf("dead letter %v, %v; want %v", &got, err, order)
			}
			if deaths, _ := msg.Headers["x-death"].([]any); len(deaths) == 0 ||
				deaths[0].(map[string]any)["reason"] != "rejected" || deaths[0].(map[string]any)["queue"] != "orders.work" {
				t.Fatalf("x-death %v, want a rejection from orders.work", msg.Headers["x-death"])
			}
			break
		}
		if !errors.Is(err, kombu.ErrEmpty) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the message the unimplemented handler got was not dead-lettered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The in-process broker has no quorum queues or streams, and the generated
// consumer and producer must say so instead of declaring classic queues (or,
// the producer, publishing to no queue).
func TestFulfilmentNeedsQueueTypes(t *testing.T) {
	conn := dial(t, broker(t))
	_, err := kombutestv1.NewFulfilmentConsumer(conn, kombutestv1.UnimplementedFulfilmentHandler{})
	if !errors.Is(err, kombu.ErrNotSupported) {
		t.Fatalf("NewFulfilmentConsumer on memory: %v, want ErrNotSupported", err)
	}
	err = kombutestv1.NewFulfilmentProducer(conn).ShipOrder(context.Background(), &kombutestv1.OrderShipped{OrderId: "o-1"})
	if !errors.Is(err, kombu.ErrNotSupported) {
		t.Fatalf("ShipOrder on memory: %v, want ErrNotSupported", err)
	}
}

type notificationsHandler struct {
	kombutestv1.UnimplementedNotificationsHandler
	recorder
}

func (h notificationsHandler) Email(_ context.Context, m *kombutestv1.Notification, msg *kombu.Message) error {
	return h.record("Email", m, msg)
}

func (h notificationsHandler) Page(_ context.Context, m *kombutestv1.Notification, msg *kombu.Message) error {
	return h.record("Page", m, msg)
}

func TestHeadersExchange(t *testing.T) {
	ctx := context.Background()
	conn := dial(t, broker(t))
	h := notificationsHandler{recorder: make(recorder, 10)}
	c, err := kombutestv1.NewNotificationsConsumer(conn, h)
	start(t, c, err)
	p := kombutestv1.NewNotificationsProducer(conn)

	n := &kombutestv1.Notification{Recipient: "ada", Text: "hello"}
	if err := p.Email(ctx, n, kombu.WithHeaders(map[string]any{"channel": "email"})); err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, h.expect(t, "Email", n), "notifications.email", "kombutest.v1.Notifications.Email",
		"kombutest.v1.Notifications.Email", "application/x-protobuf")
	// Headers, not the route, decide: x-match any on the pager queue.
	if err := p.Email(ctx, n, kombu.WithHeaders(map[string]any{"severity": "critical"})); err != nil {
		t.Fatal(err)
	}
	h.expect(t, "Page", n)
}

type heartbeatsHandler struct {
	kombutestv1.UnimplementedHeartbeatsHandler
	recorder
}

func (h heartbeatsHandler) Beat(_ context.Context, m *kombutestv1.Heartbeat, msg *kombu.Message) error {
	return h.record("Beat", m, msg)
}

// Every consumer of a broadcast route gets every message, even consumers on
// different connections.
func TestBroadcast(t *testing.T) {
	url := broker(t)
	var handlers []heartbeatsHandler
	for range 2 {
		h := heartbeatsHandler{recorder: make(recorder, 10)}
		//lint:ignore SA1019 the deprecated service must still work
		c, err := kombutestv1.NewHeartbeatsConsumer(dial(t, url), h)
		start(t, c, err)
		handlers = append(handlers, h)
	}
	beat := &kombutestv1.Heartbeat{Process: "p1", Sequence: 9}
	//lint:ignore SA1019 the deprecated service must still work
	if err := kombutestv1.NewHeartbeatsProducer(dial(t, url)).Beat(context.Background(), beat); err != nil {
		t.Fatal(err)
	}
	for _, h := range handlers {
		h.expect(t, "Beat", beat)
	}
}

type namesHandler struct {
	namesv1.UnimplementedNamesHandler
	recorder
}

func (h namesHandler) Type(_ context.Context, m *namesv1.Generic, msg *kombu.Message) error {
	return h.record("Type", m, msg)
}

func (h namesHandler) Func(_ context.Context, m *namesv1.Generic, msg *kombu.Message) error {
	return h.record("Func", m, msg)
}

func (h namesHandler) Context(_ context.Context, m *namesv1.Generic, msg *kombu.Message) error {
	return h.record("Context", m, msg)
}

func (h namesHandler) Kombu(_ context.Context, m *namesv1.Generic, msg *kombu.Message) error {
	return h.record("Kombu", m, msg)
}

func (h namesHandler) HTTPRequest(_ context.Context, m *namesv1.HTTPRequest, msg *kombu.Message) error {
	return h.record("HTTPRequest", m, msg)
}

func (h namesHandler) GetUrl(_ context.Context, m *namesv1.URLRequest, msg *kombu.Message) error {
	return h.record("GetUrl", m, msg)
}

func (h namesHandler) Imported(_ context.Context, m *kombutestv1.OrderPlaced, msg *kombu.Message) error {
	return h.record("Imported", m, msg)
}

func (h namesHandler) Nested(_ context.Context, m *namesv1.Outer_Inner, msg *kombu.Message) error {
	return h.record("Nested", m, msg)
}

func (h namesHandler) Empty(_ context.Context, m *emptypb.Empty, msg *kombu.Message) error {
	return h.record("Empty", m, msg)
}

func (h namesHandler) Producer(_ context.Context, m *namesv1.NamesProducer, msg *kombu.Message) error {
	return h.record("Producer", m, msg)
}

// The awkward names compile, and the four routes sharing a queue still
// reach their own methods.
func TestNames(t *testing.T) {
	ctx := context.Background()
	conn := dial(t, broker(t))
	h := namesHandler{recorder: make(recorder, 10)}
	c, err := namesv1.NewNamesConsumer(conn, h)
	start(t, c, err)
	p := namesv1.NewNamesProducer(conn)

	calls := []struct {
		method  string
		m       proto.Message
		publish func() error
	}{
		{"Type", &namesv1.Generic{Value: "t"}, func() error { return p.Type(ctx, &namesv1.Generic{Value: "t"}) }},
		{"Func", &namesv1.Generic{Value: "f"}, func() error { return p.Func(ctx, &namesv1.Generic{Value: "f"}) }},
		{"Context", &namesv1.Generic{Value: "c"}, func() error { return p.Context(ctx, &namesv1.Generic{Value: "c"}) }},
		{"Kombu", &namesv1.Generic{Value: "k"}, func() error { return p.Kombu(ctx, &namesv1.Generic{Value: "k"}) }},
		{"HTTPRequest", &namesv1.HTTPRequest{Url: "u"}, func() error { return p.HTTPRequest(ctx, &namesv1.HTTPRequest{Url: "u"}) }},
		{"GetUrl", &namesv1.URLRequest{Url: "v"}, func() error { return p.GetUrl(ctx, &namesv1.URLRequest{Url: "v"}) }},
		{"Imported", &kombutestv1.OrderPlaced{OrderId: "i"}, func() error { return p.Imported(ctx, &kombutestv1.OrderPlaced{OrderId: "i"}) }},
		{"Nested", &namesv1.Outer_Inner{Value: "n"}, func() error { return p.Nested(ctx, &namesv1.Outer_Inner{Value: "n"}) }},
		{"Empty", &emptypb.Empty{}, func() error { return p.Empty(ctx, &emptypb.Empty{}) }},
		{"Producer", &namesv1.NamesProducer{Value: "p"}, func() error { return p.Producer(ctx, &namesv1.NamesProducer{Value: "p"}) }},
	}
	for _, c := range calls {
		if err := c.publish(); err != nil {
			t.Fatalf("%s: %v", c.method, err)
		}
		h.expect(t, c.method, c.m)
	}
}

type pricingHandler struct {
	kombutestv1.UnimplementedPricingHandler
}

func (pricingHandler) Quote(_ context.Context, m *kombutestv1.QuoteRequest, _ *kombu.Message) (*kombutestv1.QuoteReply, error) {
	if len(m.Skus) == 0 {
		return nil, errors.New("empty basket")
	}
	return &kombutestv1.QuoteReply{TotalCents: int64(100 * len(m.Skus))}, nil
}

func (pricingHandler) Convert(_ context.Context, m *kombutestv1.ConvertRequest, msg *kombu.Message) (*kombutestv1.ConvertReply, error) {
	if msg.Properties.ContentType != "application/json" || msg.Properties.Expiration != 5*time.Second {
		return nil, fmt.Errorf("request arrived as %s with expiration %v", msg.Properties.ContentType, msg.Properties.Expiration)
	}
	return &kombutestv1.ConvertReply{Cents: m.Cents * 2, Currency: "EUR"}, nil
}

func TestRequestReply(t *testing.T) {
	conn := dial(t, broker(t))
	c, err := kombutestv1.NewPricingConsumer(conn, pricingHandler{}, kombu.WithConcurrency(4))
	start(t, c, err)
	p := kombutestv1.NewPricingProducer(conn)
	// Longer than the Convert route's expiration (5s), which the requests
	// keep as the shorter of the two.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	q, err := p.Quote(ctx, &kombutestv1.QuoteRequest{Skus: []string{"a", "b", "c"}})
	if err != nil || q.TotalCents != 300 {
		t.Fatalf("Quote: %v, %v", q, err)
	}
	cv, err := p.Convert(ctx, &kombutestv1.ConvertRequest{Cents: 21, Currency: "USD"})
	if err != nil || cv.Cents != 42 || cv.Currency != "EUR" {
		t.Fatalf("Convert: %v, %v", cv, err)
	}
	_, err = p.Quote(ctx, &kombutestv1.QuoteRequest{})
	var remote *kombu.RemoteError
	if !errors.As(err, &remote) || remote.Message != "empty basket" {
		t.Fatalf("Quote of an empty basket: %v, want a RemoteError", err)
	}

	// Many calls in flight on one producer, each answered to its caller.
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := p.Convert(ctx, &kombutestv1.ConvertRequest{Cents: int64(i)})
			if err != nil || reply.Cents != int64(2*i) {
				t.Errorf("call %d: %v, %v", i, reply, err)
			}
		}()
	}
	wg.Wait()

	// The handler that is not implemented answers with an error too.
	conn2 := dial(t, broker(t))
	c2, err := kombutestv1.NewPricingConsumer(conn2, kombutestv1.UnimplementedPricingHandler{})
	start(t, c2, err)
	_, err = kombutestv1.NewPricingProducer(conn2).Quote(ctx, &kombutestv1.QuoteRequest{Skus: []string{"a"}})
	if !errors.As(err, &remote) || !strings.Contains(remote.Message, "not implemented") {
		t.Fatalf("unimplemented Quote: %v", err)
	}
}
