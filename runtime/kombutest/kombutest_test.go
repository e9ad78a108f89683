package kombutest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/kombutest"
)

// warehouse ships the parcel of every order placed: a handler that
// publishes, as handlers under test often do.
type warehouse struct {
	quickstartv1.UnimplementedShopHandler
	shop *quickstartv1.ShopProducer
}

func (w warehouse) PlaceOrder(ctx context.Context, m *quickstartv1.OrderPlaced, _ *kombu.Message) error {
	return w.shop.ShipParcel(ctx, &quickstartv1.ParcelShipped{OrderId: m.OrderId, Carrier: "dhl"})
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The test a user writes first: a generated consumer runs the handler, a
// generated producer publishes to it, and a recorder shows what the handler
// published in turn.
func TestHandlerThatPublishes(t *testing.T) {
	conn := kombutest.Dial(t)
	shop := quickstartv1.ShopTopology().Exchanges[0]
	parcels, err := kombutest.NewRecorder(t.Context(), conn, shop, "parcel.#")
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := quickstartv1.NewShopConsumer(conn, warehouse{shop: quickstartv1.NewShopProducer(conn)})
	if err != nil {
		t.Fatal(err)
	}
	kombutest.Run(t, consumer)

	for _, id := range []string{"o-1", "o-2"} {
		if err := quickstartv1.NewShopProducer(conn).PlaceOrder(t.Context(), &quickstartv1.OrderPlaced{OrderId: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"o-1", "o-2"} {
		parcel, err := kombutest.NextAs[quickstartv1.ParcelShipped](waitCtx(t), parcels)
		if err != nil {
			t.Fatal(err)
		}
		if parcel.OrderId != want || parcel.Carrier != "dhl" {
			t.Fatalf("parcel %v, want order %s by dhl", parcel, want)
		}
	}
	msgs := parcels.Messages()
	if len(msgs) != 2 || msgs[0].DeliveryInfo.RoutingKey != "parcel.shipped" || msgs[0].Properties.ContentType != kombu.ContentTypeJSON {
		t.Fatalf("recorded %d messages, the first with routing key %q and content type %q",
			len(msgs), msgs[0].DeliveryInfo.RoutingKey, msgs[0].Properties.ContentType)
	}
}

// Each test's broker is its own, and it is gone when the test ends.
func TestEachTestHasItsOwnBroker(t *testing.T) {
	var url string
	t.Run("first", func(t *testing.T) {
		conn := kombutest.Dial(t)
		url = conn.URL()
		if _, err := (kombu.Queue{Name: "q"}).Declare(t.Context(), conn); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("second", func(t *testing.T) {
		conn := kombutest.Dial(t)
		if conn.URL() == url {
			t.Fatalf("two tests share the broker %s", url)
		}
		if _, err := (kombu.Queue{Name: "q"}).Inspect(t.Context(), conn); !errors.Is(err, kombu.ErrNotFound) {
			t.Fatalf("the first test's queue in the second test's broker: %v", err)
		}
	})
	// The first test's broker was forgotten when it ended.
	conn, err := kombu.Dial(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := (kombu.Queue{Name: "q"}).Inspect(t.Context(), conn); !errors.Is(err, kombu.ErrNotFound) {
		t.Fatalf("the first test's queue outlived the test: %v", err)
	}
}

// A wait that runs out says what it waited for.
func TestNextRunsOut(t *testing.T) {
	conn := kombutest.Dial(t)
	rec, err := kombutest.NewRecorder(t.Context(), conn, kombu.Exchange{Name: "events", Type: kombu.ExchangeTopic}, "order.*")
	if err != nil {
		t.Fatal(err)
	}
	// Routed elsewhere: not recorded.
	if err := kombu.NewProducer(conn, kombu.WithExchange(kombu.Exchange{Name: "events", Type: kombu.ExchangeTopic})).
		Publish(t.Context(), "x", kombu.WithRoutingKey("parcel.shipped")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = rec.Next(ctx)
	want := `kombutest: no further message routed from exchange "events" with binding key "order.*" (0 recorded): context deadline exceeded`
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// Every message is recorded, whatever its content type; one outside
// kombu-go's serializers is refused by NextAs, and its Body is there.
func TestRecordsEveryContentType(t *testing.T) {
	conn := kombutest.Dial(t)
	ex := kombu.Exchange{Name: "events", Type: kombu.ExchangeFanout}
	rec, err := kombutest.NewRecorder(t.Context(), conn, ex, "")
	if err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithExchange(ex))
	if err := p.Publish(t.Context(), map[string]any{"n": 1}, kombu.WithSerializer("msgpack")); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), []byte{1, 2}, kombu.WithContentType("application/x-custom", "binary")); err != nil {
		t.Fatal(err)
	}
	m, err := kombutest.NextAs[map[string]any](waitCtx(t), rec)
	if err != nil || (*m)["n"] != int64(1) && (*m)["n"] != uint64(1) && (*m)["n"] != int8(1) {
		t.Fatalf("msgpack message: %v, %v", m, err)
	}
	if _, err := kombutest.NextAs[[]byte](waitCtx(t), rec); !errors.Is(err, kombu.ErrContentDisallowed) {
		t.Fatalf("decoding a custom content type: %v, want ErrContentDisallowed", err)
	}
	if msgs := rec.Messages(); len(msgs) != 2 || string(msgs[1].Body) != "\x01\x02" {
		t.Fatalf("recorded %d, want 2, the second with its body", len(msgs))
	}
}

// Close stops recording; what was recorded stays readable.
func TestRecorderClose(t *testing.T) {
	conn := kombutest.Dial(t)
	ex := kombu.Exchange{Name: "events", Type: kombu.ExchangeDirect}
	rec, err := kombutest.NewRecorder(t.Context(), conn, ex, "k")
	if err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithExchange(ex), kombu.WithRoutingKey("k"))
	if err := p.Publish(t.Context(), "before"); err != nil {
		t.Fatal(err)
	}
	for len(rec.Messages()) == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Publish(t.Context(), "after"); err != nil {
		t.Fatal(err)
	}
	if msg, err := rec.Next(waitCtx(t)); err != nil || string(msg.Body) != "before" {
		t.Fatalf("Next after Close: %v, %v", msg, err)
	}
	if _, err := rec.Next(waitCtx(t)); !errors.Is(err, kombu.ErrClosed) {
		t.Fatalf("Next past what was recorded, after Close: %v, want ErrClosed", err)
	}
}
