package kombu_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// onBrokers runs test on the memory broker, RabbitMQ and Redis, each in a
// subtest that skips (or fails, with KOMBU_REQUIRE_BROKERS=1) when its
// broker is not there.
func onBrokers(t *testing.T, test func(t *testing.T, url string)) {
	t.Run("memory", func(t *testing.T) { test(t, brokerURL(t)) })
	t.Run("amqp", func(t *testing.T) { test(t, brokertest.AMQPURL(t)) })
	t.Run("redis", func(t *testing.T) { test(t, brokertest.RedisURL(t)) })
}

// uniqueName is a queue name no other test, nor another run, uses on a
// shared broker.
func uniqueName(t *testing.T, prefix string) string {
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
	q, err := kombu.NewSimpleQueue[T](ctxT(t), conn, name, opts...)
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

func TestSimpleQueueRoundTrip(t *testing.T) {
	onBrokers(t, func(t *testing.T, url string) {
		conn := dialURL(t, url)
		ctx := ctxT(t)
		name := uniqueName(t, "simple")
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
	})
}

// waitLen waits until the queue holds n messages: RabbitMQ counts a
// confirmed message a moment after the confirm.
func waitLen(t *testing.T, q interface {
	Len(context.Context) (int, error)
}, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := q.Len(ctxT(t))
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
func TestSimpleQueueOfProtoMessages(t *testing.T) {
	onBrokers(t, func(t *testing.T, url string) {
		conn := dialURL(t, url)
		ctx := ctxT(t)
		q := simpleQueue[*quickstartv1.OrderPlaced](t, conn, uniqueName(t, "proto"))
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
	})
}

// A value that does not decode to T comes back with ErrDecode, unsettled,
// so that it is not lost: requeued, it is delivered again.
func TestSimpleQueueUndecodableValueIsNotLost(t *testing.T) {
	onBrokers(t, func(t *testing.T, url string) {
		conn := dialURL(t, url)
		ctx := ctxT(t)
		for _, kind := range []string{"queue", "buffer"} {
			t.Run(kind, func(t *testing.T) {
				name := uniqueName(t, "undecodable")
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
	})
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
func TestSimpleBuffer(t *testing.T) {
	onBrokers(t, func(t *testing.T, url string) {
		conn := dialURL(t, url)
		ctx := ctxT(t)
		name := uniqueName(t, "buffer")
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
		if url[:4] == "amqp" {
			// RabbitMQ checks a redeclaration against what exists: the
			// buffer's exchange and queue are transient and auto-delete.
			if err := (kombu.Exchange{Name: name, Transient: true, AutoDelete: true}).Declare(ctx, conn); err != nil {
				t.Errorf("exchange: %v", err)
			}
			if _, err := (kombu.Queue{Name: name, Transient: true, AutoDelete: true}).Declare(ctx, conn); err != nil {
				t.Errorf("queue: %v", err)
			}
		}
	})
}

// RabbitMQ refuses to redeclare an exchange or a queue with other
// settings: a SimpleQueue's are durable, as Kombu declares them, so a
// Python SimpleQueue on the same name is accepted (interop/ runs one).
func TestSimpleQueueDeclaresWhatKombuDeclares(t *testing.T) {
	url := brokertest.AMQPURL(t)
	conn := dialURL(t, url)
	ctx := ctxT(t)
	name := uniqueName(t, "declare")
	simpleQueue[job](t, conn, name)
	if err := (kombu.Exchange{Name: name, Type: kombu.ExchangeDirect}).Declare(ctx, conn); err != nil {
		t.Errorf("durable direct exchange: %v", err)
	}
	if _, err := (kombu.Queue{Name: name}).Declare(ctx, conn); err != nil {
		t.Errorf("durable queue: %v", err)
	}
	other := dialURL(t, url) // a failed declaration closes the AMQP channel: use another connection
	if _, err := (kombu.Queue{Name: name, Transient: true}).Declare(ctx, other); !errors.Is(err, kombu.ErrPrecondition) {
		t.Errorf("a transient queue of the same name: %v, want ErrPrecondition", err)
	}
}

func TestSimpleQueueBadInput(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	if _, err := kombu.NewSimpleQueue[job](ctx, conn, ""); !errors.Is(err, kombu.ErrInvalidArgument) {
		t.Errorf("NewSimpleQueue without a name: %v, want ErrInvalidArgument", err)
	}
	if _, err := kombu.NewSimpleBuffer[job](ctx, conn, ""); !errors.Is(err, kombu.ErrInvalidArgument) {
		t.Errorf("NewSimpleBuffer without a name: %v, want ErrInvalidArgument", err)
	}
	q := simpleQueue[job](t, conn, "bad-input")
	if err := q.Put(ctx, job{ID: 1}, kombu.WithSerializer("pickle")); !errors.Is(err, kombu.ErrUnknownSerializer) {
		t.Errorf("Put with an unknown serializer: %v, want ErrUnknownSerializer", err)
	}
	// A content type the accept list refuses is an error too, and the
	// message stays unsettled.
	strict := simpleQueue[job](t, conn, "strict", kombu.WithAccept("json"))
	if err := strict.Put(ctx, job{ID: 2}, kombu.WithSerializer("msgpack")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := strict.Get(ctx)
	if !errors.Is(err, kombu.ErrContentDisallowed) || msg == nil || msg.State() != kombu.StateUnsettled {
		t.Fatalf("Get of a refused content type: %v, %v; want ErrContentDisallowed and the message unsettled", msg, err)
	}
}

// Close wakes a waiting Get, returns to the queue what the consumer held
// that no Get took, and makes every call fail with ErrClosed.
func TestSimpleQueueClose(t *testing.T) {
	onBrokers(t, func(t *testing.T, url string) {
		conn := dialURL(t, url)
		ctx := ctxT(t)
		name := uniqueName(t, "close")
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
		idle := simpleQueue[int](t, conn, uniqueName(t, "idle"))
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
	})
}

// Get goes on across a lost connection: the queue is declared again and
// consumed on the new one.
func TestSimpleQueueGetSurvivesAConnectionLoss(t *testing.T) {
	redis := brokertest.StartRedis(t)
	conn := dialURL(t, redis.URL(0))
	ctx := ctxT(t)
	q := simpleQueue[string](t, conn, "survivor")
	if err := q.Put(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	if v, msg, err := q.Get(ctx); err != nil || v != "before" {
		t.Fatalf("Get: %q, %v", v, err)
	} else if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		v, msg, err := q.Get(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		msg.Ack()
		got <- v
	}()
	lost := conn.Lost()
	redis.Stop()
	<-lost
	redis.Start()
	if err := q.Put(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != "after" {
			t.Errorf("Get across the loss: %s", v)
		}
	case <-ctx.Done():
		t.Fatal("Get did not resume after the connection came back")
	}
}
