package gcpubsub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestNativeDeadLetter: a queue declared with x-dead-letter-exchange and
// RabbitMQ's x-delivery-limit gets Pub/Sub's own dead-letter policy (the
// exchange's topic, the limit + 1 attempts), kept when a binding makes
// its subscription again; a message requeued past the limit is forwarded
// by Pub/Sub (pstest here) to the dead-letter exchange, where the queue
// bound with its routing key gets it; a message rejected without requeue
// still goes there at once, with x-death.
func TestNativeDeadLetter(t *testing.T) {
	_, addr := startServer(t)
	c := open(t, addr, "&polling_interval=0.01")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dlx", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead"})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "dead", RoutingKey: "job"})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "jobs", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "work", Arguments: map[string]any{
		"x-dead-letter-exchange": "dlx", "x-delivery-limit": 4}})
	transporttest.Bind(t, c, transport.Binding{Source: "jobs", Destination: "work", RoutingKey: "job"})

	client, err := pubsub.NewClient(ctx, "kombu-test", option.WithEndpoint(addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/kombu-test/subscriptions/kombu-work"})
	if err != nil {
		t.Fatal(err)
	}
	if p := sub.DeadLetterPolicy; sub.Topic != "projects/kombu-test/topics/jobs" || p == nil ||
		p.DeadLetterTopic != "projects/kombu-test/topics/dlx" || p.MaxDeliveryAttempts != 5 {
		t.Fatalf("subscription on %s with dead-letter policy %v, want the jobs topic and topic dlx after 5 attempts", sub.Topic, sub.DeadLetterPolicy)
	}

	get := func(queue string) *transport.Delivery {
		t.Helper()
		var d *transport.Delivery
		transporttest.Eventually(t, "a message on "+queue, func() bool {
			var err error
			d, err = c.Get(ctx, queue, false)
			return err == nil
		})
		return d
	}

	// Exceeded deliveries: five attempts, each requeued; Pub/Sub forwards
	// it on the next pull.
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "jobs", RoutingKey: "job", Body: []byte("poison"), Confirm: true})
	for i := range 5 {
		d := get("work")
		if string(d.Body) != "poison" || d.Redelivered != (i > 0) {
			t.Fatalf("attempt %d: %q redelivered=%v", i+1, d.Body, d.Redelivered)
		}
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := c.Get(ctx, "work", false); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("a sixth attempt: %v, %v; want the message gone to the dead-letter topic", d, err)
	}
	d := get("dead")
	if string(d.Body) != "poison" || d.RoutingKey != "job" {
		t.Fatalf("dead-lettered by Pub/Sub: %q with key %q", d.Body, d.RoutingKey)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}

	// Rejection without requeue: dead-lettered at once, with x-death (the
	// virtual connection's emulation: Pub/Sub has no call for it).
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "jobs", RoutingKey: "job", Body: []byte("refused"), Confirm: true})
	d = get("work")
	if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	// pstest forwards the poison message again at every later pull of
	// work: its pull acknowledges the forwarded message by its message id
	// where Acknowledge wants the ack id ("<id>:<n>" once delivered), so
	// the message stays (pstest/fake.go, subscription.pull and
	// subscription.ack, v2.7.0). Pub/Sub removes it. Those copies are
	// skipped here.
	for {
		d = get("dead")
		_ = d.Acknowledger.Ack(d.Tag, false)
		if string(d.Body) == "poison" {
			continue
		}
		if string(d.Body) != "refused" || d.Headers["x-death"] == nil {
			t.Fatalf("rejected: %q with headers %v, want it with x-death", d.Body, d.Headers)
		}
		break
	}
}

// TestDeliveryLimitRefused: what Pub/Sub's dead-letter policy cannot do
// is refused with ErrNotSupported, naming why.
func TestDeliveryLimitRefused(t *testing.T) {
	_, addr := startServer(t)
	c := open(t, addr, "")
	defer c.Close()
	for _, args := range []map[string]any{
		{"x-dead-letter-exchange": "dlx", "x-delivery-limit": 3},   // Pub/Sub's least is 5 attempts
		{"x-dead-letter-exchange": "dlx", "x-delivery-limit": 100}, // and its most 100
		{"x-delivery-limit": 5},                                    // nowhere to forward
		{"x-dead-letter-exchange": "", "x-delivery-limit": 5},      // the default exchange: no one topic
		{"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "k", "x-delivery-limit": 5},
	} {
		_, err := c.DeclareQueue(context.Background(), transport.Queue{Name: "limited", Arguments: args})
		if !errors.Is(err, transport.ErrNotSupported) {
			t.Errorf("%v: %v, want ErrNotSupported", args, err)
		}
	}
	_, err := c.DeclareQueue(context.Background(), transport.Queue{Name: "limited", Arguments: map[string]any{"x-dead-letter-exchange": "dlx", "x-delivery-limit": "five"}})
	if !errors.Is(err, transport.ErrPrecondition) {
		t.Errorf("x-delivery-limit=\"five\": %v, want ErrPrecondition", err)
	}
}
