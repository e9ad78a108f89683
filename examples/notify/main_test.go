package main

import (
	"bytes"
	"context"
	"testing"
)

func TestNotifyOnMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), "memory:///notify-example-test", &out); err != nil {
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
