package kombu_test

import (
	"context"
	"errors"
	"testing"

	kombu "github.com/kombu-go/kombu/runtime"
)

func TestBatchSendsInOrderOnSend(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	if _, err := (kombu.Queue{Name: "b"}).Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var batch kombu.Batch
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("b"))
	add := kombu.InBatch(&batch)
	for i := range 100 {
		mustPublish(t, p.Publish(ctx, i, add))
	}
	if n := ready(t, conn, "b"); n != 0 || batch.Len() != 100 {
		t.Fatalf("before Send: %d in the queue, %d in the batch; want 0 and 100", n, batch.Len())
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ready(t, conn, "b"); n != 100 || batch.Len() != 0 {
		t.Fatalf("after Send: %d in the queue, %d in the batch; want 100 and 0", n, batch.Len())
	}
	for i := range 100 {
		_, msg := getBody(t, conn, "b")
		var got int
		if err := msg.Decode(&got); err != nil || got != i {
			t.Fatalf("message %d decoded as %d, %v", i, got, err)
		}
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatalf("empty Send: %v", err)
	}
}

func TestBatchReportsFailures(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	var batch kombu.Batch
	p := kombu.NewProducer(conn, kombu.WithMandatory())
	mustPublish(t, p.Publish(ctx, "x", kombu.InBatch(&batch), kombu.WithRoutingKey("nowhere")))
	if err := batch.Send(ctx); !errors.Is(err, kombu.ErrUnroutable) {
		t.Fatalf("got %v, want ErrUnroutable", err)
	}
}

func TestBatchIsForOneConnection(t *testing.T) {
	a, b := dial(t), dial(t)
	var batch kombu.Batch
	ctx := context.Background()
	mustPublish(t, kombu.NewProducer(a).Publish(ctx, "x", kombu.InBatch(&batch)))
	if err := kombu.NewProducer(b).Publish(ctx, "x", kombu.InBatch(&batch)); err == nil {
		t.Fatal("a second connection's message joined the batch")
	}
}

func TestBatchCopiesRawBodies(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	if _, err := (kombu.Queue{Name: "raw"}).Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var batch kombu.Batch
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("raw"))
	buf := make([]byte, 0, 16)
	for _, s := range []string{"first", "second", "third"} {
		buf = append(buf[:0], s...) // the caller reuses its buffer
		mustPublish(t, p.Publish(ctx, buf, kombu.InBatch(&batch)))
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first", "second", "third"} {
		if got, _ := getBody(t, conn, "raw"); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
