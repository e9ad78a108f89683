package kombu_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// counting returns a consumer factory for queue q whose handler counts
// messages into n.
func counting(q string, n *atomic.Int64) kombu.ConsumerFactory {
	return func(conn *kombu.Connection) (*kombu.Consumer, error) {
		return kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: q},
			Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { n.Add(1); return nil })}})
	}
}

func fastRestarts(maxRetries int) kombu.WorkerOption {
	return kombu.WithRestartBackoff(kombu.RetryPolicy{MaxRetries: maxRetries,
		IntervalStart: 5 * time.Millisecond, IntervalStep: 5 * time.Millisecond, IntervalMax: 10 * time.Millisecond})
}

func TestWorkerRunsConsumersAndRemakesAFailedOne(t *testing.T) {
	conn := dial(t)
	var a, b atomic.Int64
	var ready, failed atomic.Int64
	w := kombu.NewWorker(conn, fastRestarts(0), kombu.WithWorkerHooks(kombu.WorkerHooks{
		ConsumeReady:   func(*kombu.Consumer) { ready.Add(1) },
		ConsumerFailed: func(error) { failed.Add(1) },
	}))
	w.Consume(counting("a", &a))
	w.Consume(counting("b", &b))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, func() bool { return ready.Load() == 2 })

	p := kombu.NewProducer(w.ProducerConnection())
	mustPublish(t, p.Publish(ctxT(t), "1", kombu.WithRoutingKey("a")))
	mustPublish(t, p.Publish(ctxT(t), "2", kombu.WithRoutingKey("b")))
	waitFor(t, func() bool { return a.Load() == 1 && b.Load() == 1 })

	// The broker ends a's consumer: the worker makes it again, which
	// declares the queue again, and consuming goes on.
	if _, err := (kombu.Queue{Name: "a"}).Delete(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return failed.Load() == 1 && ready.Load() == 3 })
	mustPublish(t, p.Publish(ctxT(t), "3", kombu.WithRoutingKey("a")))
	waitFor(t, func() bool { return a.Load() == 2 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestWorkerGivesUpPastItsRestartPolicy(t *testing.T) {
	conn := dial(t)
	var tries atomic.Int64
	w := kombu.NewWorker(conn, fastRestarts(2))
	boom := errors.New("cannot make the consumer")
	w.Consume(func(*kombu.Connection) (*kombu.Consumer, error) { tries.Add(1); return nil, boom })
	err := w.Run(ctxT(t))
	if !errors.Is(err, boom) || tries.Load() != 3 {
		t.Fatalf("Run: %v after %d tries, want the error after 1 + 2 restarts", err, tries.Load())
	}
}

func TestWorkerStopsWhenTheConnectionCloses(t *testing.T) {
	conn := dial(t)
	var n atomic.Int64
	w := kombu.NewWorker(conn, fastRestarts(0))
	w.Consume(counting("q", &n))
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	waitFor(t, func() bool {
		info, err := kombu.Queue{Name: "q"}.Inspect(ctxT(t), conn)
		return err == nil && info.Consumers == 1
	})
	conn.Close()
	select {
	case err := <-done:
		if !errors.Is(err, kombu.ErrClosed) {
			t.Fatalf("Run: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the connection closed")
	}
}
