package amqp_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// kombu.WithMessageRetry on RabbitMQ: a failing message waits out its back-off in
// "<queue>.retry" (per-message TTL, dead-lettered back through the default
// exchange), is retried MaxRetries times, then goes to the queue's DLX.
func TestWithRetryOnRabbitMQ(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, brokertest.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	work, dlx, dead := name(t, "work"), name(t, "dlx"), name(t, "dead")
	topo := kombu.Topology{
		Exchanges: []kombu.Exchange{{Name: dlx, Type: kombu.ExchangeFanout, AutoDelete: true}},
		Queues:    []kombu.Queue{{Name: dead, Expires: time.Minute, Bindings: []kombu.Binding{{Exchange: dlx}}}},
	}
	t.Cleanup(func() {
		for _, q := range []string{work, work + ".retry", dead} {
			_, _ = kombu.Queue{Name: q}.Delete(context.Background(), conn)
		}
	})
	var mu sync.Mutex
	tries := 0
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: work, DeadLetterExchange: dlx, Expires: time.Minute},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			mu.Lock()
			tries++
			mu.Unlock()
			return errors.New("always fails")
		}),
	}}, kombu.WithTopology(topo),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 2, IntervalStart: 50 * time.Millisecond, IntervalStep: 50 * time.Millisecond, IntervalMax: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	defer c.Close()
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey(work)).Publish(ctx, []byte("poison")); err != nil {
		t.Fatal(err)
	}
	var msg *kombu.Message
	for msg == nil {
		if msg, err = (kombu.Queue{Name: dead}).Get(ctx, conn, kombu.WithAutoAck()); err != nil && !errors.Is(err, kombu.ErrEmpty) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(msg.Body) != "poison" || tries != 3 {
		t.Fatalf("dead-lettered %q after %d tries, want poison after 3", msg.Body, tries)
	}
	if n, _ := msg.Headers[kombu.RetriesHeader].(int64); n != 2 {
		t.Fatalf("%s = %#v, want 2", kombu.RetriesHeader, msg.Headers[kombu.RetriesHeader])
	}
}
