package main

import (
	"bytes"
	"context"
	"testing"
)

func TestPricingOnMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), "memory:///pricing-example-test", &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `[tea mug]: $12.50
[tea caviar]: refused: unknown sku "caviar"
[kettle slow]: no answer within 100ms
late replies dropped: 1
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}
