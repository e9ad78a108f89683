package kombu_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kombu-go/kombu/internal/simpletest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// The checks every transport's tests run (transports/amqp and
// transports/redis run them on their brokers).
func TestSimpleQueueAndPools(t *testing.T) { simpletest.Run(t, brokerURL(t)) }

type job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

// simpleQueue makes a SimpleQueue[T] on conn, closed when the test ends.
func simpleQueue[T any](t *testing.T, conn *kombu.Connection, name string, opts ...kombu.SimpleOption) *kombu.SimpleQueue[T] {
	t.Helper()
	q, err := kombu.NewSimpleQueue[T](ctxT(t), conn, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
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

// The ctx given to the constructor bounds its declarations: a SimpleQueue
// is made with a context, as every call that may block is.
func TestNewSimpleQueueHonoursItsContext(t *testing.T) {
	conn := dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := kombu.NewSimpleQueue[job](ctx, conn, "never"); !errors.Is(err, context.Canceled) {
		t.Errorf("NewSimpleQueue with a cancelled context: %v, want context.Canceled", err)
	}
}

// WithAutoAck makes a SimpleQueue's Get acknowledge, as Kombu's no_ack=True.
func TestSimpleQueueWithAutoAck(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	q := simpleQueue[job](t, conn, "auto-ack", kombu.WithAutoAck())
	if err := q.Put(ctx, job{ID: 1}); err != nil {
		t.Fatal(err)
	}
	v, msg, err := q.Get(ctx)
	if err != nil || v.ID != 1 || msg.State() != kombu.StateAcked || msg.Ack() != nil {
		t.Fatalf("Get: %+v, %v, %v; want job 1 acknowledged, and Ack a no-op", v, msg.State(), err)
	}
}
