package gcpubsub_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"cloud.google.com/go/pubsub/v2"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"github.com/kombu-go/kombu/transports/gcpubsub"
)

func TestURLs(t *testing.T) {
	for _, raw := range []string{
		"gcpubsub://projects/",
		"gcpubsub://project/x",
		"gcpubsub://user:secret@projects/x",
		"gcpubsub://projects/x?bogus=1",
		"gcpubsub://projects/x?ack_deadline_seconds=5",
		"gcpubsub://projects/x?ack_modify_batch_size=0",
	} {
		u, err := transport.Parse(raw)
		if err == nil {
			_, err = gcpubsub.Driver{}.Open(context.Background(), u, transport.Config{})
		}
		if !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: %v, want ErrInvalidURL", raw, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", raw, err)
		}
	}
}

// An endpoint that does not answer fails Open within its context.
func TestEndpointDown(t *testing.T) {
	u, _ := transport.Parse("gcpubsub://projects/p?emulator_host=127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := gcpubsub.Driver{}.Open(ctx, u, transport.Config{})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("Open against nothing: %v after %v", err, time.Since(start))
	}
}

// Kombu's layout: a topic named as the exchange, a subscription named
// kombu-<queue> with '.' to '-', filter attributes.routing_key="<key>",
// Kombu's ack deadline, and the envelope as data with the routing_key
// attribute.
func TestLayout(t *testing.T) {
	srv, addr := startServer(t)
	c := open(t, addr, "")
	defer c.Close()
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "tasks", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "celery.high"})
	transporttest.Bind(t, c, transport.Binding{Source: "tasks", Destination: "celery.high", RoutingKey: "high"})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "tasks", RoutingKey: "high", Body: []byte(`{"x":1}`),
		Properties: transport.Properties{ContentType: "application/json", ContentEncoding: "utf-8"}})

	client, err := pubsub.NewClient(ctx, "kombu-test", option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/kombu-test/subscriptions/kombu-celery-high"})
	if err != nil {
		t.Fatalf("Kombu's subscription: %v", err)
	}
	if sub.Topic != "projects/kombu-test/topics/tasks" || sub.Filter != `attributes.routing_key="high"` || sub.AckDeadlineSeconds != 240 {
		t.Errorf("subscription %+v", sub)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].Attributes["routing_key"] != "high" {
		t.Fatalf("published %+v", msgs)
	}
	d, err := virtual.DecodeEnvelope(msgs[0].Data)
	if err != nil || string(d.Body) != `{"x":1}` || d.RoutingKey != "high" || d.Exchange != "tasks" {
		t.Fatalf("envelope %s: %+v, %v", msgs[0].Data, d, err)
	}
	// A message Python Kombu publishes (its _put: the envelope, the
	// routing_key attribute) reaches the Go consumer.
	py := `{"body": "aGk=", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "tasks", "routing_key": "high"}, "delivery_mode": 2, "priority": 0, "delivery_tag": "9a5c1b0e-2f4e-4a58-9bd5-1f1fb7a1c0de"}}`
	srv.Publish("projects/kombu-test/topics/tasks", []byte(py), map[string]string{"routing_key": "high"})
	srv.Publish("projects/kombu-test/topics/tasks", []byte(py), map[string]string{"routing_key": "low"}) // filtered out
	var bodies []string
	transporttest.Eventually(t, "both messages", func() bool {
		d, err := c.Get(ctx, "celery.high", true)
		if err == nil {
			bodies = append(bodies, string(d.Body))
		}
		return len(bodies) == 2
	})
	if !(bodies[0] == "hi" || bodies[1] == "hi") {
		t.Errorf("bodies %q, want Python's \"hi\" among them", bodies)
	}
}

// A foreign message, not a Kombu envelope, is delivered undecodable (for
// the runtime's decode-error hook), not lost.
func TestForeignMessage(t *testing.T) {
	srv, addr := startServer(t)
	c := open(t, addr, "")
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "foreign"})
	srv.Publish("projects/kombu-test/topics/kombu-foreign", []byte("not json"), nil)
	var d *transport.Delivery
	transporttest.Eventually(t, "the foreign message", func() bool {
		var err error
		d, err = c.Get(context.Background(), "foreign", false)
		return err == nil
	})
	if d.Properties.ContentType != virtual.InvalidEnvelopeType || string(d.Body) != "not json" {
		t.Fatalf("a foreign message: %+v, want it undecodable with its bytes", d)
	}
}

// A body above Pub/Sub's 10 MB is refused before sending.
func TestTooLarge(t *testing.T) {
	_, addr := startServer(t)
	c := open(t, addr, "")
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "big"})
	err := c.Publish(context.Background(), &transport.Publishing{RoutingKey: "big", Body: make([]byte, 8<<20)})
	if !errors.Is(err, codec.ErrLimitExceeded) {
		t.Fatalf("8 MiB (over 10 MB in base64): %v, want ErrLimitExceeded", err)
	}
}

var _ = pstest.NewServer

// A queue name Pub/Sub refuses fails with ErrNotSupported, naming it.
func TestRefusedName(t *testing.T) {
	_, addr := startServer(t)
	c := open(t, addr, "")
	defer c.Close()
	long := strings.Repeat("q", 300)
	_, err := c.DeclareQueue(context.Background(), transport.Queue{Name: long})
	if !errors.Is(err, transport.ErrNotSupported) || !strings.Contains(err.Error(), long) {
		t.Fatalf("a 300-character queue name: %v, want ErrNotSupported naming it", err)
	}
}
