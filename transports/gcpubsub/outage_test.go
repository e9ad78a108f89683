package gcpubsub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestOutage closes the server under a connection and starts a new one on
// the same address: while it is down, calls fail within their context;
// after, the same connection works again (gRPC reconnects). pstest keeps
// nothing across a restart, so this checks recovery, not persistence.
func TestOutage(t *testing.T) {
	srv := pstest.NewServer()
	addr := srv.Addr
	c := open(t, addr, "&polling_interval=0.05")
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "outage"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "outage", Body: []byte("before"), Confirm: true})
	_ = srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := time.Now()
	err := c.Publish(ctx, &transport.Publishing{RoutingKey: "outage", Body: []byte("lost"), Confirm: true})
	cancel()
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("publish with the server down: %v after %v", err, time.Since(start))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	start = time.Now()
	_, err = c.Get(ctx, "outage", true)
	cancel()
	if err == nil || errors.Is(err, transport.ErrClosed) || time.Since(start) > 5*time.Second {
		t.Fatalf("get with the server down: %v after %v", err, time.Since(start))
	}

	srv2 := pstest.NewServerWithAddress(addr)
	defer srv2.Close()
	waitFor(t, 20*time.Second, "the connection to work again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.DeclareQueue(ctx, transport.Queue{Name: "outage"})
		return err == nil
	})
	// The publisher's gRPC connection reconnects on its own schedule (the
	// declare above may have used another): within gRPC's bounded backoff.
	start = time.Now()
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "outage", Body: []byte("after"), Confirm: true})
	t.Logf("first publish after the restart took %v", time.Since(start))
	d, err := c.Get(context.Background(), "outage", true)
	if err != nil || string(d.Body) != "after" {
		t.Fatalf("after the restart: %v, %v", d, err)
	}
}
