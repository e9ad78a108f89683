package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	ordersv1 "github.com/kombu-go/kombu/gen/examples/orders/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/exampletest"
)

func TestOrdersOnMemory(t *testing.T) { check(t, "memory:///orders-example-test") }

// The delayed reminder goes through a delayed-delivery topology named
// for the examples (Kombu main's prefix), kept on the broker between runs,
// rather than Celery's own celery_delayed_* names.
func TestOrdersOnAMQP(t *testing.T) {
	url := brokertest.AMQPURL(t)
	exampletest.Purge(t, url, ordersv1.OrdersTopology(), ordersv1.DeadOrdersTopology())
	check(t, url+"?native_delayed_delivery_prefix=kombugo_examples")
}

func TestOrdersOnRedis(t *testing.T) {
	url := brokertest.RedisURL(t)
	exampletest.Purge(t, url, ordersv1.OrdersTopology(), ordersv1.DeadOrdersTopology())
	check(t, url)
}

func check(t *testing.T, url string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), url, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `A-4: payment service busy, requeued
A-1: processed ($12.50)
A-2: processed ($49.99)
A-3: processed ($3.00)
A-4: processed ($20.00, on retry)
A-5: processed ($7.50)
A-6: dead-lettered (rejected from queue orders.work)
A-7: processed ($5.00, held back until due)
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if strings.Count(out.String(), "processed") != 6 {
		t.Error("every good order must be processed exactly once")
	}
}
