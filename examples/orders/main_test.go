package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestOrdersOnMemory(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), "memory:///orders-example-test", &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `A-4: payment service busy, requeued
A-1: processed ($12.50)
A-2: processed ($49.99)
A-3: processed ($3.00)
A-4: processed ($20.00, on retry)
A-5: processed ($7.50)
A-6: dead-lettered (rejected from queue orders.work)
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if strings.Count(out.String(), "processed") != 5 {
		t.Error("every good order must be processed exactly once")
	}
}
