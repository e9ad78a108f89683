package kombu_test

import (
	"errors"
	"testing"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Deletes are symmetric: both take DeleteOptions, IfUnused means the same
// to both, and IfEmpty, which only a queue can honour, is refused for an
// exchange before anything is deleted.
func TestDeleteOptionsAreShared(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	ex := kombu.Exchange{Name: "opts.ex", Type: kombu.ExchangeDirect}
	q := kombu.Queue{Name: "opts.q", Bindings: []kombu.Binding{{Exchange: ex.Name, RoutingKey: "k"}}}
	if err := (kombu.Topology{Exchanges: []kombu.Exchange{ex}, Queues: []kombu.Queue{q}}).Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := ex.Delete(ctx, conn, kombu.IfEmpty()); !errors.Is(err, kombu.ErrNotSupported) {
		t.Fatalf("Exchange.Delete(IfEmpty) = %v, want ErrNotSupported", err)
	}
	if err := ex.Delete(ctx, conn, kombu.IfUnused()); !errors.Is(err, kombu.ErrInUse) {
		t.Fatalf("Exchange.Delete(IfUnused) of a bound exchange = %v, want ErrInUse", err)
	}
	if err := kombu.NewProducer(conn).Publish(ctx, "x", kombu.WithRoutingKey(q.Name)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Delete(ctx, conn, kombu.IfEmpty()); !errors.Is(err, kombu.ErrInUse) {
		t.Fatalf("Queue.Delete(IfEmpty) of a queue with a message = %v, want ErrInUse", err)
	}
	if n, err := q.Delete(ctx, conn); err != nil || n != 1 {
		t.Fatalf("Queue.Delete = %d, %v; want 1 message", n, err)
	}
	if err := ex.Delete(ctx, conn, kombu.IfUnused()); err != nil {
		t.Fatalf("Exchange.Delete(IfUnused) once unbound: %v", err)
	}
}

// A ReceiveOption means the same to Get as to a consumer.
func TestReceiveOptionsApplyToGet(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	q := kombu.Queue{Name: "opts.get"}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name)) // a PublishOption as the producer's default
	mustPublish(t, p.Publish(ctx, map[string]any{"a": 1}))
	msg, err := q.Get(ctx, conn, kombu.WithAccept("msgpack"))
	if !errors.Is(err, kombu.ErrContentDisallowed) {
		t.Fatalf("Get(WithAccept(msgpack)) of a json message = %v, want ErrContentDisallowed", err)
	}
	if msg == nil || msg.State() != kombu.StateRejected {
		t.Fatalf("the refused message is %v, want it rejected", msg)
	}
	mustPublish(t, p.Publish(ctx, "auto"))
	msg, err = q.Get(ctx, conn, kombu.WithAutoAck())
	if err != nil {
		t.Fatal(err)
	}
	if msg.State() != kombu.StateAcked {
		t.Fatalf("Get(WithAutoAck) gave a message in state %v, want acked", msg.State())
	}
	if err := msg.Requeue(); !errors.Is(err, kombu.ErrMessageState) {
		t.Fatalf("Requeue of an auto-acked message = %v, want ErrMessageState", err)
	}
}
