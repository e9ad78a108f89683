package main

import (
	"bytes"
	"context"
	"testing"

	pricingv1 "github.com/kombu-go/kombu/gen/examples/pricing/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/exampletest"
)

func TestPricingOnMemory(t *testing.T) { check(t, "memory:///pricing-example-test") }

func TestPricingOnAMQP(t *testing.T) {
	url := brokertest.AMQPURL(t)
	exampletest.Purge(t, url, pricingv1.PricingTopology())
	check(t, url)
}

func TestPricingOnRedis(t *testing.T) {
	url := brokertest.RedisURL(t)
	exampletest.Purge(t, url, pricingv1.PricingTopology())
	check(t, url)
}

func check(t *testing.T, url string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), url, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `[tea mug]: $12.50
[tea caviar]: refused: unknown sku "caviar"
[kettle slow]: no answer within 100ms
the service gave up on the slow basket: context deadline exceeded
late replies: 0
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}
