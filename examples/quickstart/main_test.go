package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/exampletest"
)

func TestQuickstartOnMemory(t *testing.T) { check(t, "memory:///quickstart-test") }

func TestQuickstartOnAMQP(t *testing.T) {
	url := brokertest.AMQPURL(t)
	exampletest.Purge(t, url, quickstartv1.ShopTopology())
	check(t, url)
}

func TestQuickstartOnRedis(t *testing.T) {
	url := brokertest.RedisURL(t)
	exampletest.Purge(t, url, quickstartv1.ShopTopology())
	check(t, url)
}

func check(t *testing.T, url string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), url, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"handled order A-1001: ada ordered [tea mug] for $12.50 (routing key order.placed, application/x-protobuf)",
		"handled order A-1002: grace ordered [kettle] for $49.99 (routing key order.placed, application/x-protobuf)",
		"handled order A-1003: linus ordered [biscuits] for $3.00 (routing key order.placed, application/x-protobuf)",
		"handled parcel A-1001: dhl tracking JD0001 (routing key parcel.shipped, application/json)",
		"handled parcel A-1002: ups tracking 1Z0002 (routing key parcel.shipped, application/json)",
		"all messages handled",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "handled order"); n != 3 {
		t.Errorf("%d orders handled, want 3", n)
	}
}
