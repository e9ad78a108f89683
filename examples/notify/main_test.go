package main

import (
	"bytes"
	"context"
	"testing"

	notifyv1 "github.com/kombu-go/kombu/gen/examples/notify/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/exampletest"
)

func TestNotifyOnMemory(t *testing.T) { check(t, "memory:///notify-example-test") }

func TestNotifyOnAMQP(t *testing.T) {
	url := brokertest.AMQPURL(t)
	exampletest.Purge(t, url, notifyv1.ConfigTopology())
	check(t, url)
}

// On Redis the connection that binds an instance's queue subscribes to the
// exchange's PUB/SUB channel before NewConfigConsumer returns, so a change
// published before Run starts is waiting in the queue.
func TestNotifyOnRedis(t *testing.T) {
	url := brokertest.RedisURL(t)
	exampletest.Purge(t, url, notifyv1.ConfigTopology())
	check(t, url)
}

func check(t *testing.T, url string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), url, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `instance 1: cache.ttl = 90s
instance 1: feature.checkout-v2 = on
instance 2: cache.ttl = 90s
instance 2: feature.checkout-v2 = on
instance 3: cache.ttl = 90s
instance 3: feature.checkout-v2 = on
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}
