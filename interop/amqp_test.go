package interop_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
)

// dialAMQP connects to the test RabbitMQ and empties the quickstart's
// queues, which the interop tests share with `KOMBU_URL=amqp://... make demo`.
func dialAMQP(t *testing.T) (string, *kombu.Connection) {
	t.Helper()
	url := brokertest.AMQPURL(t)
	requirePython(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	topo := quickstartv1.ShopTopology()
	if err := topo.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	for _, q := range topo.Queues {
		if _, err := q.Purge(ctx, conn); err != nil {
			t.Fatal(err)
		}
	}
	return url, conn
}

// parcels records what the generated handler receives.
type parcels struct {
	quickstartv1.UnimplementedShopHandler
	mu   sync.Mutex
	got  []*quickstartv1.ParcelShipped
	msgs []*kombu.Message
	n    chan struct{}
}

func (p *parcels) ShipParcel(_ context.Context, m *quickstartv1.ParcelShipped, msg *kombu.Message) error {
	p.mu.Lock()
	p.got = append(p.got, m)
	p.msgs = append(p.msgs, msg)
	p.mu.Unlock()
	p.n <- struct{}{}
	return nil
}

func TestAMQPKombuPublishesGoConsumes(t *testing.T) {
	url, conn := dialAMQP(t)
	h := &parcels{n: make(chan struct{}, 8)}
	consumer, err := quickstartv1.NewShopConsumer(conn, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go consumer.Run(ctx)
	defer consumer.Close()

	body := func(id string) map[string]any {
		return map[string]any{"order_id": id, "carrier": "dhl", "tracking_number": "T-" + id}
	}
	pyPublish(t, url, []map[string]any{
		{"body": body("plain"), "exchange": "shop", "routing_key": "parcel.shipped", "serializer": "json"},
		{"body": body("zlib"), "exchange": "shop", "routing_key": "parcel.shipped", "serializer": "json", "compression": "zlib"},
		{"body": body("props"), "exchange": "shop", "routing_key": "parcel.shipped", "serializer": "json",
			"priority": 7, "headers": map[string]any{"trace": "abc", "attempt": 2}, "expiration": 60,
			"correlation_id": "corr-1", "message_id": "mid-1", "app_id": "py", "type": "parcel"},
	})
	for range 3 {
		select {
		case <-h.n:
		case <-time.After(10 * time.Second):
			t.Fatalf("Go consumer got %d of 3 messages from Python", len(h.got))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, id := range []string{"plain", "zlib", "props"} {
		m := h.got[i]
		if m.OrderId != id || m.Carrier != "dhl" || m.TrackingNumber != "T-"+id {
			t.Errorf("message %d decoded as %v", i, m)
		}
		if ct := h.msgs[i].Properties.ContentType; ct != "application/json" {
			t.Errorf("message %d content type %q", i, ct)
		}
	}
	if c := h.msgs[1].Headers["compression"]; c != "application/x-gzip" {
		t.Errorf("compressed message's compression header %v", c)
	}
	props := h.msgs[2]
	if props.Properties.Priority != 7 || props.Properties.Expiration != time.Minute ||
		props.Properties.CorrelationID != "corr-1" || props.Properties.MessageID != "mid-1" ||
		props.Properties.AppID != "py" || props.Properties.Type != "parcel" || props.Properties.DeliveryMode != 2 {
		t.Errorf("properties %+v", props.Properties)
	}
	if props.Headers["trace"] != "abc" || toInt(props.Headers["attempt"]) != 2 {
		t.Errorf("headers %v", props.Headers)
	}
}

func TestAMQPGoPublishesKombuConsumes(t *testing.T) {
	url, conn := dialAMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := quickstartv1.NewShopProducer(conn)
	m := &quickstartv1.ParcelShipped{OrderId: "A-1", Carrier: "ups", TrackingNumber: "1Z"}
	if err := p.ShipParcel(ctx, m, kombu.WithPriority(7), kombu.WithExpiration(time.Minute),
		kombu.WithHeaders(map[string]any{"trace": "abc", "attempt": 2}), kombu.WithCorrelationID("c-1")); err != nil {
		t.Fatal(err)
	}
	if err := p.ShipParcel(ctx, m, kombu.WithCompression("zlib")); err != nil {
		t.Fatal(err)
	}
	got := pyConsume(t, url, "quickstart.parcels", 2)
	want := map[string]any{"order_id": "A-1", "carrier": "ups", "tracking_number": "1Z"}
	for i, msg := range got {
		var body map[string]any
		if err := json.Unmarshal(msg.Body, &body); err != nil || !reflect.DeepEqual(body, want) {
			t.Errorf("message %d: Kombu decoded %s, want %v", i, msg.Body, want)
		}
		if msg.ContentType != "application/json" || msg.ContentEncoding != "utf-8" {
			t.Errorf("message %d: content %q %q", i, msg.ContentType, msg.ContentEncoding)
		}
		if msg.Properties["delivery_mode"] != float64(2) {
			t.Errorf("message %d: delivery_mode %v", i, msg.Properties["delivery_mode"])
		}
	}
	first := got[0]
	if first.Properties["priority"] != float64(7) || first.Properties["expiration"] != "60000" ||
		first.Properties["correlation_id"] != "c-1" {
		t.Errorf("properties %v", first.Properties)
	}
	if first.Headers["trace"] != "abc" || first.Headers["attempt"] != float64(2) {
		t.Errorf("headers %v", first.Headers)
	}
	if got[1].Headers["compression"] != "application/x-gzip" {
		t.Errorf("compressed message headers %v", got[1].Headers)
	}
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int32:
		return int64(n)
	case int:
		return int64(n)
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	}
	return -1
}
