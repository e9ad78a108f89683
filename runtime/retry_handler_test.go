package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

func TestWithRetryRetriesThenDeadLetters(t *testing.T) {
	conn := dial(t)
	var mu sync.Mutex
	attempts := map[string][]time.Time{}
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "work", DeadLetterExchange: "dlx"},
		Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
			mu.Lock()
			defer mu.Unlock()
			body := string(m.Body)
			attempts[body] = append(attempts[body], time.Now())
			if body == "poison" {
				return errors.New("always fails")
			}
			if body == "flaky" && len(attempts[body]) < 2 {
				return errors.New("fails once")
			}
			return nil
		}),
	}}, kombu.WithTopology(workAndDeadLetter),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 3, IntervalStart: 20 * time.Millisecond, IntervalStep: 20 * time.Millisecond, IntervalMax: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("work"))
	mustPublish(t, p.Publish(ctxT(t), []byte("poison")))
	mustPublish(t, p.Publish(ctxT(t), []byte("flaky")))
	mustPublish(t, p.Publish(ctxT(t), []byte("fine")))

	// The poison message is tried 1 + 3 times, then dead-lettered, and it
	// never blocked the others.
	body, dead := getBody(t, conn, "dead")
	if body != "poison" {
		t.Fatalf("dead-lettered %q", body)
	}
	if n, _ := dead.Headers[kombu.RetriesHeader].(int64); n != 3 {
		t.Errorf("dead message's %s = %v, want 3", kombu.RetriesHeader, dead.Headers[kombu.RetriesHeader])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts["poison"]) != 4 || len(attempts["flaky"]) != 2 || len(attempts["fine"]) != 1 {
		t.Fatalf("attempts: poison %d, flaky %d, fine %d; want 4, 2, 1",
			len(attempts["poison"]), len(attempts["flaky"]), len(attempts["fine"]))
	}
	// Back-off: the waits between tries grow (20ms, 40ms, 60ms), and the
	// first retry of "poison" came after "fine" was handled.
	p0 := attempts["poison"]
	for i := 1; i < len(p0); i++ {
		if gap := p0[i].Sub(p0[i-1]); gap < time.Duration(i)*20*time.Millisecond {
			t.Errorf("retry %d came %v after the previous try, want at least %v", i, gap, time.Duration(i)*20*time.Millisecond)
		}
	}
	if !attempts["fine"][0].Before(p0[1]) {
		t.Error("the poison message's retry held up the queue")
	}
	if n := ready(t, conn, "work"); n != 0 {
		t.Errorf("%d messages left in work", n)
	}
}

func TestWithRetryNeedsAPositiveBound(t *testing.T) {
	conn := dial(t)
	_, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "q"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil })}},
		kombu.WithMessageRetry(kombu.RetryPolicy{}))
	if err == nil {
		t.Fatal("WithMessageRetry without MaxRetries accepted")
	}
}

// A handler that is not implemented never will be on a retry: its message
// is dead-lettered at once, without WithMessageRetry's copies.
func TestUnimplementedIsNotRetried(t *testing.T) {
	conn := dial(t)
	var calls atomic.Int32
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "work", DeadLetterExchange: "dlx"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			calls.Add(1)
			return fmt.Errorf("%w: shop.v1.Shop.Refund", kombu.ErrUnimplemented)
		}),
	}}, kombu.WithTopology(workAndDeadLetter),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 3, IntervalStart: time.Millisecond, IntervalStep: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	mustPublish(t, kombu.NewProducer(conn, kombu.WithRoutingKey("work")).Publish(ctxT(t), []byte("refund")))
	body, dead := getBody(t, conn, "dead")
	if body != "refund" {
		t.Fatalf("dead-lettered %q", body)
	}
	if n := dead.Retries(); n != 0 || calls.Load() != 1 {
		t.Fatalf("the unimplemented message was retried %d times, handled %d times; want 0 and 1", n, calls.Load())
	}
}
