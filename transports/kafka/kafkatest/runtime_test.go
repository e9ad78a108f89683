package kafkatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
	"github.com/kombu-go/kombu/transports/kafka"
)

// TestNotAnEnvelope: a record that is not Kombu's envelope reaches the
// consumer's decode-error hook, goes to "<queue>.dlq" as it was, and is
// committed past only once it is there; the records after it are
// handled.
func TestNotAnEnvelope(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	raw, adm := admin(t, c)
	conn, err := kombu.Dial(ctx, url(c, "polling_interval=0.05"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queue := unique("garbage")
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue))
	if err := p.Publish(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: queue, Value: []byte("\x00not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	hooked := make(chan error, 1)
	handled := make(chan string, 2)
	cons, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: queue},
		Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
			var s string
			if err := m.Decode(&s); err != nil {
				return err
			}
			handled <- s
			return nil
		}),
	}}, kombu.WithDecodeErrorHandler(func(m *kombu.Message, err error) {
		if m.Properties.ContentType != virtual.InvalidEnvelopeType {
			err = errors.Join(err, errors.New("unexpected content type "+m.Properties.ContentType))
		}
		hooked <- err
	}))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(rctx) }()
	defer func() { stop(); <-done }()

	for _, want := range []string{"first", "second"} {
		select {
		case got := <-handled:
			if got != want {
				t.Fatalf("handled %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatal("not handled:", want)
		}
	}
	select {
	case err := <-hooked:
		t.Logf("decode-error hook: %v", err)
	case <-ctx.Done():
		t.Fatal("the decode-error hook was not called")
	}
	dl := readAll(t, ctx, c, queue+kafka.DLQSuffix, 1)[0]
	if string(dl.Value) != "\x00not json" {
		t.Fatalf("dead letter %q", dl.Value)
	}
	eventually(t, ctx, "committed past all three", func() bool {
		resp, err := adm.FetchOffsets(ctx, queue+"-consumer-group")
		if err != nil {
			return false
		}
		o, ok := resp.Lookup(queue, 0)
		return ok && o.At == 3
	})
}

type job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

// The SDK end to end on Kafka: Dial, a SimpleQueue, Put, Len, Get, Ack.
func TestSimpleQueue(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	conn, err := kombu.Dial(ctx, url(c, "polling_interval=0.05"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs, err := kombu.NewSimpleQueue[job](ctx, conn, unique("jobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	for i, task := range []string{"wash the car", "buy milk"} {
		if err := jobs.Put(ctx, job{ID: i + 1, Task: task}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := jobs.Len(ctx); err != nil || n != 2 {
		t.Fatalf("Len: %d, %v", n, err)
	}
	for want := 1; want <= 2; want++ {
		j, msg, err := jobs.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if j.ID != want {
			t.Fatalf("got job %d, want %d (one partition keeps the order)", j.ID, want)
		}
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := jobs.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len after acks: %d, %v", n, err)
	}
}
