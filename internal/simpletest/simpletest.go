// Package simpletest checks, against a real transport, what the runtime's
// SimpleQueue, SimpleBuffer and ProducerPool promise whatever the broker:
// each transport's tests call Run with a URL of that transport, so that
// memory, RabbitMQ and Redis are held to the same contract by the same
// code. Every queue and exchange it declares has a name of its own, and is
// deleted afterwards.
package simpletest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Run runs every check on the transport at url.
func Run(t *testing.T, url string) {
	t.Run("round trip", func(t *testing.T) { roundTrip(t, url) })
	t.Run("proto messages", func(t *testing.T) { protoMessages(t, url) })
	t.Run("undecodable value not lost", func(t *testing.T) { undecodable(t, url) })
	t.Run("SimpleBuffer", func(t *testing.T) { buffer(t, url) })
	t.Run("Close", func(t *testing.T) { closing(t, url) })
	t.Run("ProducerPool", func(t *testing.T) { producerPool(t, url) })
}

// dial connects to url, closed when the test ends.
func dial(t *testing.T, url string) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(testContext(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testContext bounds a step of a check.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueName is a queue name no other test, nor another run, uses on a
// shared broker.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "kombu-go-test." + prefix + "." + hex.EncodeToString(b)
}

type job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

// simpleQueue makes a SimpleQueue[T] on conn, deleted with its exchange
// when the test ends.
func simpleQueue[T any](t *testing.T, conn *kombu.Connection, name string, opts ...kombu.SimpleOption) *kombu.SimpleQueue[T] {
	t.Helper()
	q, err := kombu.NewSimpleQueue[T](testContext(t), conn, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = q.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = kombu.Queue{Name: name}.Delete(ctx, conn)
		_ = kombu.Exchange{Name: name}.Delete(ctx, conn)
	})
	return q
}

func roundTrip(t *testing.T, url string) {
	conn := dial(t, url)
	ctx := testContext(t)
	name := uniqueName("simple")
	q := simpleQueue[job](t, conn, name)

	if _, _, err := q.GetNowait(ctx); !errors.Is(err, kombu.ErrEmpty) {
		t.Fatalf("GetNowait on an empty queue: %v, want ErrEmpty", err)
	}
	if n, err := q.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len of an empty queue: %d, %v", n, err)
	}
	for i := 1; i <= 3; i++ {
		if err := q.Put(ctx, job{ID: i, Task: "wash"}); err != nil {
			t.Fatal(err)
		}
	}
	waitLen(t, q, 3)

	// GetNowait first: once Get has started consuming, the broker sends
	// the queue's messages to its consumer, and GetNowait could find
	// one on its way, neither in the queue nor held yet.
	v, msg, err := q.GetNowait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != (job{1, "wash"}) || msg.Properties.ContentType != "application/json" {
		t.Errorf("GetNowait: %+v (%s), want job 1 as JSON", v, msg.Properties.ContentType)
	}
	if msg.DeliveryInfo.Exchange != name || msg.DeliveryInfo.RoutingKey != name {
		t.Errorf("published to exchange %q with key %q, want both %q (Kombu's naming)", msg.DeliveryInfo.Exchange, msg.DeliveryInfo.RoutingKey, name)
	}
	if msg.Properties.DeliveryMode != uint8(kombu.Persistent) {
		t.Errorf("delivery mode %d, want persistent", msg.Properties.DeliveryMode)
	}
	// A SimpleQueue leaves the message to the caller to settle.
	if msg.State() != kombu.StateUnsettled {
		t.Fatalf("message %s, want unsettled", msg.State())
	}
	if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
	for want := 2; want <= 3; want++ {
		v, msg, err = q.Get(ctx)
		if err != nil || v.ID != want || msg.State() != kombu.StateUnsettled {
			t.Fatalf("Get: %+v, %v, want job %d unsettled", v, err, want)
		}
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := q.Get(short); !errors.Is(err, kombu.ErrEmpty) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get on an empty queue: %v, want ErrEmpty and the context's error", err)
	}

	if err := q.Put(ctx, job{ID: 4}); err != nil {
		t.Fatal(err)
	}
	if err := q.Put(ctx, job{ID: 5}); err != nil {
		t.Fatal(err)
	}
	// Clear purges what waits in the broker; Get has started consuming,
	// so close first to have the broker hold both again.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := simpleQueue[job](t, conn, name)
	waitLen(t, q2, 2)
	if n, err := q2.Clear(ctx); err != nil || n != 2 {
		t.Errorf("Clear: %d, %v, want 2 purged", n, err)
	}
}

// waitLen waits until the queue holds n messages: RabbitMQ counts a
// confirmed message a moment after the confirm.
func waitLen(t *testing.T, q interface {
	Len(context.Context) (int, error)
}, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := q.Len(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue holds %d messages, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A proto message goes as JSON with its proto field names, as a Python
// program reads it, and comes back as a new message.
func protoMessages(t *testing.T, url string) {
	conn := dial(t, url)
	ctx := testContext(t)
	q := simpleQueue[*quickstartv1.OrderPlaced](t, conn, uniqueName("proto"))
	sent := &quickstartv1.OrderPlaced{OrderId: "A-1", Customer: "ada", Items: []string{"tea"}, AmountCents: 1250}
	if err := q.Put(ctx, sent); err != nil {
		t.Fatal(err)
	}
	got, msg, err := q.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Ack()
	if got.GetOrderId() != "A-1" || got.GetAmountCents() != 1250 || got == sent {
		t.Errorf("got %v, want a new copy of %v", got, sent)
	}
	var dict map[string]any
	if err := msg.Decode(&dict); err != nil || dict["order_id"] != "A-1" {
		t.Errorf("the body as a dict: %v, %v; want proto field names", dict, err)
	}
	// With the protobuf serializer it travels as binary protobuf.
	if err := q.Put(ctx, sent, kombu.WithSerializer("protobuf")); err != nil {
		t.Fatal(err)
	}
	got, msg, err = q.Get(ctx)
	if err != nil || got.GetCustomer() != "ada" || msg.Properties.ContentType != "application/x-protobuf" {
		t.Fatalf("protobuf: %v (%s), %v", got, msg.Properties.ContentType, err)
	}
	msg.Ack()
}

// A value that does not decode to T comes back with ErrDecode, unsettled,
// so that it is not lost: requeued, it is delivered again.
func undecodable(t *testing.T, url string) {
	conn := dial(t, url)
	ctx := testContext(t)
	for _, kind := range []string{"queue", "buffer"} {
		t.Run(kind, func(t *testing.T) {
			name := uniqueName("undecodable")
			var q interface {
				Get(context.Context) (job, *kombu.Message, error)
				Close() error
			}
			var opts []kombu.SimpleOption
			if kind == "queue" {
				q = simpleQueue[job](t, conn, name)
			} else {
				b, err := kombu.NewSimpleBuffer[job](ctx, conn, name)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				q, opts = b, []kombu.SimpleOption{simpleBufferTopology}
			}
			// Someone else puts a list where jobs are expected.
			other := simpleQueue[[]string](t, conn, name, opts...)
			if err := other.Put(ctx, []string{"not", "a", "job"}); err != nil {
				t.Fatal(err)
			}
			v, msg, err := q.Get(ctx)
			if !errors.Is(err, kombu.ErrDecode) || v != (job{}) {
				t.Fatalf("Get: %+v, %v, want ErrDecode", v, err)
			}
			if msg == nil || msg.State() != kombu.StateUnsettled {
				t.Fatalf("message %v, want it returned unsettled", msg)
			}
			var list []string
			if err := msg.Decode(&list); err != nil || len(list) != 3 {
				t.Errorf("the body decodes otherwise: %v, %v", list, err)
			}
			if err := msg.Requeue(); err != nil {
				t.Fatal(err)
			}
			_, again, err := q.Get(ctx)
			if !errors.Is(err, kombu.ErrDecode) || again == nil || !again.Redelivered() {
				t.Fatalf("after Requeue: %v, %v; want the message delivered again", again, err)
			}
			if err := again.Reject(false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// simpleBufferTopology declares what NewSimpleBuffer declares, for a
// SimpleQueue of another type on the same buffer.
var simpleBufferTopology = kombu.WithSimpleTopology(func(q *kombu.Queue, ex *kombu.Exchange) {
	q.Transient, q.AutoDelete = true, true
	ex.Transient, ex.AutoDelete, ex.DeliveryMode = true, true, kombu.Transient
})

// A SimpleBuffer acknowledges what Get returns (Kombu's no_ack), publishes
// transient messages, and declares a transient, auto-delete exchange and
// queue.
func buffer(t *testing.T, url string) {
	conn := dial(t, url)
	ctx := testContext(t)
	name := uniqueName("buffer")
	b, err := kombu.NewSimpleBuffer[string](ctx, conn, name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, s := range []string{"one", "two"} {
		if err := b.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	v, msg, err := b.Get(ctx)
	if err != nil || v != "one" {
		t.Fatalf("Get: %q, %v", v, err)
	}
	if msg.State() != kombu.StateAcked || msg.Ack() != nil {
		t.Errorf("message %s, want acknowledged, and Ack a no-op", msg.State())
	}
	if msg.Properties.DeliveryMode != uint8(kombu.Transient) || msg.Properties.ContentType != "text/plain" {
		t.Errorf("delivery mode %d, content type %q; want transient text", msg.Properties.DeliveryMode, msg.Properties.ContentType)
	}
	if v, _, err := b.Get(ctx); err != nil || v != "two" {
		t.Fatalf("Get: %q, %v", v, err)
	}
	if strings.HasPrefix(url, "amqp") {
		// RabbitMQ checks a redeclaration against what exists: the
		// buffer's exchange and queue are transient and auto-delete.
		if err := (kombu.Exchange{Name: name, Transient: true, AutoDelete: true}).Declare(ctx, conn); err != nil {
			t.Errorf("exchange: %v", err)
		}
		if _, err := (kombu.Queue{Name: name, Transient: true, AutoDelete: true}).Declare(ctx, conn); err != nil {
			t.Errorf("queue: %v", err)
		}
	}
}

// Close wakes a waiting Get, returns to the queue what the consumer held
// that no Get took, and makes every call fail with ErrClosed.
func closing(t *testing.T, url string) {
	conn := dial(t, url)
	ctx := testContext(t)
	name := uniqueName("close")
	q := simpleQueue[int](t, conn, name)

	got := make(chan error, 1)
	go func() {
		_, _, err := q.Get(ctx)
		got <- err
	}()
	// Let Get start consuming, then fill the queue: the consumer takes
	// what Get does not.
	time.Sleep(100 * time.Millisecond)
	for i := range 5 {
		if err := q.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := q.Put(ctx, 9); !errors.Is(err, kombu.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, _, err := q.Get(ctx); !errors.Is(err, kombu.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("Close twice: %v", err)
	}
	// The four Get did not take are back (the first one, taken but
	// not settled, stays with this connection).
	waitLen(t, simpleQueue[int](t, conn, name), 4)

	// A Get waiting when Close comes returns ErrClosed.
	idle := simpleQueue[int](t, conn, uniqueName("idle"))
	go func() {
		_, _, err := idle.Get(ctx)
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	idle.Close()
	select {
	case err := <-got:
		if !errors.Is(err, kombu.ErrClosed) {
			t.Errorf("waiting Get at Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a waiting Get")
	}
}

// A producer pool publishes from many goroutines through several
// connections, and every message arrives.
func producerPool(t *testing.T, url string) {
	const goroutines, each = 8, 10
	ps, err := kombu.NewPools(kombu.WithPoolLimit(3))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	producers, err := ps.Producers(url)
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("pool")
	q := simpleQueue[string](t, dial(t, url), name)
	ex := kombu.Exchange{Name: name, Type: kombu.ExchangeDirect}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := producers.Do(testContext(t), func(p *kombu.Producer) error {
					return p.Publish(testContext(t), fmt.Sprintf("%d-%d", g, i), kombu.WithExchange(ex), kombu.WithRoutingKey(name))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitLen(t, q, goroutines*each)
}
