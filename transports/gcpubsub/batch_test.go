package gcpubsub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// Pub/Sub's limits on a PublishRequest, which pstest does not enforce:
// the test records every request's size and count at the server instead.
const (
	limitMessages = 1000
	limitBytes    = 10_000_000
)

// TestBatchSplit: a PublishBatch through an exchange that exceeds Pub/Sub's
// per-request limits (2500 messages; 12 messages of 1 MB) is sent in
// requests within them, and every message arrives; a message over the
// size limit fails alone with ErrLimitExceeded, the rest of its batch
// delivered.
func TestBatchSplit(t *testing.T) {
	var mu sync.Mutex
	var sizes, counts []int
	record := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if pr, ok := req.(*pubsubpb.PublishRequest); ok {
			mu.Lock()
			sizes, counts = append(sizes, proto.Size(pr)), append(counts, len(pr.Messages))
			mu.Unlock()
		}
		return h(ctx, req)
	})
	f := startFront(t, record, grpc.MaxRecvMsgSize(64<<20))
	c := open(t, f.Addr, "&polling_interval=0.01")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "split", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "split"})
	transporttest.Bind(t, c, transport.Binding{Source: "split", Destination: "split", RoutingKey: "k"})
	bp := c.(transport.BatchPublisher)
	reset := func() {
		mu.Lock()
		sizes, counts = nil, nil
		mu.Unlock()
	}
	check := func(what string, wantRequests int) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for i := range sizes {
			if sizes[i] > limitBytes || counts[i] > limitMessages {
				t.Errorf("%s: request %d: %d messages, %d bytes: over Pub/Sub's limits", what, i, counts[i], sizes[i])
			}
		}
		if len(sizes) < wantRequests {
			t.Errorf("%s: %d requests (%v messages), want at least %d", what, len(sizes), counts, wantRequests)
		}
		t.Logf("%s: requests of %v messages, %v bytes", what, counts, sizes)
	}
	drain := func(want int) {
		t.Helper()
		got := 0
		for got < want {
			d, err := c.Get(ctx, "split", true)
			if errors.Is(err, transport.ErrEmpty) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("after %d of %d: %v", got, want, err)
			}
			_ = d
			got++
		}
	}

	reset()
	var ps []*transport.Publishing
	for i := range 2500 {
		ps = append(ps, &transport.Publishing{Exchange: "split", RoutingKey: "k", Body: fmt.Appendf(nil, "m%d", i), Confirm: true})
	}
	if err := bp.PublishBatch(ctx, ps); err != nil {
		t.Fatalf("2500 small messages: %v", err)
	}
	check("2500 small messages", 3)
	drain(2500)

	reset()
	ps = ps[:0]
	for range 12 {
		ps = append(ps, &transport.Publishing{Exchange: "split", RoutingKey: "k", Body: make([]byte, 1<<20), Confirm: true})
	}
	if err := bp.PublishBatch(ctx, ps); err != nil {
		t.Fatalf("12 MiB in 12 messages: %v", err)
	}
	check("12 messages of 1 MiB", 2)
	drain(12)

	reset()
	ps = []*transport.Publishing{
		{Exchange: "split", RoutingKey: "k", Body: []byte("before"), Confirm: true},
		{Exchange: "split", RoutingKey: "k", Body: make([]byte, 8<<20), Confirm: true}, // over 10 MB in base64
		{Exchange: "split", RoutingKey: "k", Body: []byte("after"), Confirm: true},
	}
	err := bp.PublishBatch(ctx, ps)
	var be *transport.BatchError
	if !errors.As(err, &be) || be.Errs[0] != nil || be.Errs[2] != nil || !errors.Is(be.Errs[1], codec.ErrLimitExceeded) {
		t.Fatalf("a batch with one message over the limit: %v, want a BatchError with ErrLimitExceeded for it alone", err)
	}
	check("one message over the limit", 1)
	drain(2)
}
