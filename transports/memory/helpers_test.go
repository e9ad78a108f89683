package memory_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/memory"
)

// wait bounds every blocking step of a test; nothing in the memory broker
// should come close to it.
const wait = 5 * time.Second

// brokers maps each running test to the broker of its own, which is named
// per run so that -count=N starts every run afresh.
var (
	brokers   sync.Map // *testing.T → URL path
	brokerSeq atomic.Int64
)

// brokerPath returns the URL path of the test's own broker.
func brokerPath(t *testing.T) string {
	if p, ok := brokers.Load(t); ok {
		return p.(string)
	}
	p := fmt.Sprintf("/%s-%d", t.Name(), brokerSeq.Add(1))
	brokers.Store(t, p)
	t.Cleanup(func() { brokers.Delete(t) })
	return p
}

// dial opens a connection to the test's own broker, or to the one at the
// given URL path.
func dial(t *testing.T, path ...string) transport.Conn {
	t.Helper()
	raw := "memory://" + brokerPath(t)
	if len(path) > 0 {
		raw = "memory://" + path[0]
	}
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	c, err := memory.Driver{}.Open(context.Background(), u, transport.Config{})
	if err != nil {
		t.Fatalf("open %q: %v", raw, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send publishes each body to the queue through the default exchange.
func send(t *testing.T, c transport.Conn, queue string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: queue, Body: []byte(b)})
	}
}

func consume(t *testing.T, c transport.Conn, spec transport.ConsumeSpec) transport.Subscription {
	t.Helper()
	s, err := c.Consume(context.Background(), spec)
	if err != nil {
		t.Fatalf("consume %v: %v", spec.Queues, err)
	}
	return s
}

func recv(t *testing.T, s transport.Subscription) *transport.Delivery {
	t.Helper()
	select {
	case d, ok := <-s.Deliveries():
		if !ok {
			t.Fatalf("deliveries closed early; Err = %v", s.Err())
		}
		return d
	case <-time.After(wait):
		t.Fatal("no delivery")
	}
	return nil
}

// recvBodies receives n deliveries and returns their bodies.
func recvBodies(t *testing.T, s transport.Subscription, n int) ([]string, []*transport.Delivery) {
	t.Helper()
	var bodies []string
	var ds []*transport.Delivery
	for range n {
		d := recv(t, s)
		bodies = append(bodies, string(d.Body))
		ds = append(ds, d)
	}
	return bodies, ds
}

// closed waits for the subscription's channel to close, failing on a
// delivery.
func closed(t *testing.T, s transport.Subscription) {
	t.Helper()
	select {
	case d, ok := <-s.Deliveries():
		if ok {
			t.Fatalf("unexpected delivery %q", d.Body)
		}
	case <-time.After(wait):
		t.Fatal("deliveries not closed")
	}
}

// get fetches one message and fails if there is none.
func get(t *testing.T, c transport.Conn, queue string, autoAck bool) *transport.Delivery {
	t.Helper()
	d, err := c.Get(context.Background(), queue, autoAck)
	if err != nil {
		t.Fatalf("get %q: %v", queue, err)
	}
	return d
}

// drain fetches every ready message with auto-ack and returns the bodies.
func drain(t *testing.T, c transport.Conn, queue string) []string {
	t.Helper()
	var bodies []string
	for {
		d, err := c.Get(context.Background(), queue, true)
		if errors.Is(err, transport.ErrEmpty) {
			return bodies
		}
		if err != nil {
			t.Fatalf("get %q: %v", queue, err)
		}
		bodies = append(bodies, string(d.Body))
	}
}

// ready returns the queue's ready count from a passive declaration.
func ready(t *testing.T, c transport.Conn, queue string) int {
	t.Helper()
	info, err := c.DeclareQueue(context.Background(), transport.Queue{Name: queue, Passive: true})
	if err != nil {
		t.Fatalf("passive declare %q: %v", queue, err)
	}
	return info.Messages
}

func wantErr(t *testing.T, err, target error, text string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
	if text != "" && !strings.Contains(err.Error(), text) {
		t.Fatalf("err = %q, want it to contain %q", err, text)
	}
}
