package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// brokerURL names a memory broker of the test's own. The in-process broker
// lives as long as the process, as Kombu's does, so the name is unique per
// run too (go test -count=N).
func brokerURL(t *testing.T) string {
	return fmt.Sprintf("memory:///%s-%d", strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()), brokerSeq.Add(1))
}

var brokerSeq atomic.Int64

// dial connects to a fresh memory broker of the test's own.
func dial(t *testing.T) *kombu.Connection {
	t.Helper()
	return dialURL(t, brokerURL(t))
}

func dialURL(t *testing.T, url string) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run starts c.Run and returns a function that stops it and returns its error.
func run(t *testing.T, c *kombu.Consumer) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// getBody takes one message from q, or fails the test.
func getBody(t *testing.T, conn *kombu.Connection, q string) (string, *kombu.Message) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := kombu.Queue{Name: q}.Get(ctxT(t), conn, kombu.WithAutoAck())
		if err == nil {
			return string(msg.Body), msg
		}
		if !errors.Is(err, kombu.ErrEmpty) || time.Now().After(deadline) {
			t.Fatalf("get from %s: %v", q, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ready(t *testing.T, conn *kombu.Connection, q string) int {
	t.Helper()
	info, err := kombu.Queue{Name: q}.Inspect(ctxT(t), conn)
	if err != nil {
		t.Fatal(err)
	}
	return info.Messages
}

// workAndDeadLetter is a work queue whose rejected messages go to "dead".
var workAndDeadLetter = kombu.Topology{
	Exchanges: []kombu.Exchange{{Name: "dlx", Type: kombu.ExchangeFanout}},
	Queues:    []kombu.Queue{{Name: "dead", Bindings: []kombu.Binding{{Exchange: "dlx"}}}},
}

func TestHandlerOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		handler func(ctx context.Context, msg *kombu.Message) error
		// where the message ends up: "acked", "dead" or "requeued"
		want string
	}{
		{"nil acks", func(context.Context, *kombu.Message) error { return nil }, "acked"},
		{"error dead-letters", func(context.Context, *kombu.Message) error { return errors.New("boom") }, "dead"},
		{"panic dead-letters", func(context.Context, *kombu.Message) error { panic("boom") }, "dead"},
		{"Requeue redelivers", func(context.Context, *kombu.Message) error { return kombu.Requeue(errors.New("later")) }, "requeued"},
		{"handler's own settle wins", func(_ context.Context, m *kombu.Message) error {
			if err := m.Requeue(); err != nil {
				return err
			}
			return errors.New("ignored: the handler settled the message itself")
		}, "requeued"},
		{"decode error dead-letters", func(_ context.Context, m *kombu.Message) error {
			var v struct{ ID int }
			return m.Decode(&v)
		}, "dead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dial(t)
			ctx := ctxT(t)
			var mu sync.Mutex
			var seen []bool // Redelivered of each delivery
			h := kombu.HandlerFunc(func(ctx context.Context, m *kombu.Message) error {
				mu.Lock()
				seen = append(seen, m.Redelivered())
				first := len(seen) == 1
				mu.Unlock()
				if !first {
					return nil // a requeued message is acked the second time
				}
				return tt.handler(ctx, m)
			})
			work := kombu.Queue{Name: "work", DeadLetterExchange: "dlx"}
			c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: work, Handler: h}},
				kombu.WithTopology(workAndDeadLetter))
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, c)
			if err := kombu.NewProducer(conn).Publish(ctx, []byte(`{"ID":`), kombu.WithRoutingKey("work"),
				kombu.WithContentType("application/json", "utf-8")); err != nil {
				t.Fatal(err)
			}
			switch tt.want {
			case "dead":
				if body, _ := getBody(t, conn, "dead"); body != `{"ID":` {
					t.Fatalf("dead-lettered body %q", body)
				}
			case "requeued":
				waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 2 })
				mu.Lock()
				if seen[0] || !seen[1] {
					t.Fatalf("redelivered flags %v, want [false true]", seen)
				}
				mu.Unlock()
			case "acked":
				waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 1 })
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if n := ready(t, conn, "work"); n != 0 {
				t.Fatalf("%d messages left in the work queue", n)
			}
			if tt.want != "dead" {
				if n := ready(t, conn, "dead"); n != 0 {
					t.Fatalf("%d messages dead-lettered, want 0", n)
				}
			}
		})
	}
}

func TestDecodeErrorHookAndAcceptList(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	type failure struct {
		contentType string
		err         error
	}
	failures := make(chan failure, 4)
	var handled []string
	var mu sync.Mutex
	c, err := kombu.NewConsumer(conn,
		[]kombu.Subscription{{
			Queue: kombu.Queue{Name: "events", DeadLetterExchange: "dlx"},
			Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
				var v map[string]any
				if err := m.Decode(&v); err != nil {
					return err
				}
				mu.Lock()
				handled = append(handled, fmt.Sprint(v["n"]))
				mu.Unlock()
				return nil
			}),
		}},
		kombu.WithTopology(workAndDeadLetter),
		kombu.WithAccept("json"),
		kombu.WithDecodeErrorHandler(func(m *kombu.Message, err error) {
			failures <- failure{m.Properties.ContentType, err}
		}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("events"))
	mustPublish(t, p.Publish(ctx, map[string]int{"n": 1}))
	mustPublish(t, p.Publish(ctx, "plain text is not accepted"))                                       // text/plain refused
	mustPublish(t, p.Publish(ctx, []byte("{bad json"), kombu.WithContentType("application/json", ""))) // malformed
	mustPublish(t, p.Publish(ctx, map[string]int{"n": 2}))

	for _, want := range []error{kombu.ErrContentDisallowed, kombu.ErrDecode} {
		select {
		case f := <-failures:
			if !errors.Is(f.err, want) {
				t.Fatalf("hook got %v (%s), want %v", f.err, f.contentType, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("decode-error hook not called for %v", want)
		}
	}
	// Both bad messages are dead-lettered, not lost, and the consumer went on.
	getBody(t, conn, "dead")
	getBody(t, conn, "dead")
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 })
	if handled[0] != "1" || handled[1] != "2" {
		t.Fatalf("handled %v", handled)
	}
}

func TestGracefulShutdownFinishesInFlightAndReturnsTheRest(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var acked sync.WaitGroup
	acked.Add(1)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "slow"},
		Handler: kombu.HandlerFunc(func(ctx context.Context, m *kombu.Message) error {
			close(started)
			<-release
			acked.Done()
			return ctx.Err() // still alive: shutdown must not cancel a running handler early
		}),
	}}, kombu.WithPrefetch(10))
	if err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("slow"))
	for i := range 5 {
		mustPublish(t, p.Publish(ctx, i))
	}
	stop := run(t, c)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case <-stopped:
		t.Fatal("Run returned while a handler was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	acked.Wait()
	// The one in flight was acked; the four prefetched but never handled are
	// back in the queue, ready for the next consumer.
	if n := ready(t, conn, "slow"); n != 4 {
		t.Fatalf("%d messages back in the queue, want 4", n)
	}
}

func TestShutdownTimeoutBoundsAStuckHandler(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	started := make(chan struct{})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "stuck"},
		Handler: kombu.HandlerFunc(func(ctx context.Context, m *kombu.Message) error {
			close(started)
			<-ctx.Done() // only the shutdown timeout ends this
			return ctx.Err()
		}),
	}}, kombu.WithShutdownTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, kombu.NewProducer(conn).Publish(ctx, 1, kombu.WithRoutingKey("stuck")))
	stop := run(t, c)
	<-started
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Run took %v to stop with a 100ms shutdown timeout", d)
	}
}

func TestCloseStopsRun(t *testing.T) {
	conn := dial(t)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue:   kombu.Queue{Name: "q"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestRunReportsQueueDeletion(t *testing.T) {
	conn := dial(t)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue:   kombu.Queue{Name: "doomed"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	waitFor(t, func() bool {
		info, err := kombu.Queue{Name: "doomed"}.Inspect(ctxT(t), conn)
		return err == nil && info.Consumers == 1
	})
	if _, err := (kombu.Queue{Name: "doomed"}).Delete(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, kombu.ErrNotFound) {
			t.Fatalf("Run returned %v, want an error wrapping ErrNotFound", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its queue was deleted")
	}
}

func TestBroadcastQueuesAreServerNamed(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	news := kombu.Exchange{Name: "news", Type: kombu.ExchangeFanout}
	got := make(chan string, 4)
	for i := range 2 {
		c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
			Queue: kombu.Queue{Bindings: []kombu.Binding{{Exchange: "news"}}},
			Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
				got <- fmt.Sprintf("%d:%s", i, m.Body)
				return nil
			}),
		}}, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{news}}))
		if err != nil {
			t.Fatal(err)
		}
		if q := c.Queues()[0]; !strings.HasPrefix(q, "amq.gen-") {
			t.Fatalf("broadcast queue named %q, want a server-generated name", q)
		}
		run(t, c)
	}
	mustPublish(t, kombu.NewProducer(conn, kombu.WithExchange(news)).Publish(ctx, []byte("hi")))
	seen := map[string]bool{}
	for range 2 {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v received the broadcast", seen)
		}
	}
	if !seen["0:hi"] || !seen["1:hi"] {
		t.Fatalf("received %v, want both consumers", seen)
	}
}

func TestNewConsumerDeclaresBeforeReturning(t *testing.T) {
	conn := dial(t)
	shop := kombu.Exchange{Name: "shop", Type: kombu.ExchangeTopic}
	_, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue:   kombu.Queue{Name: "orders", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "order.*"}}},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil }),
	}}, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{shop}}))
	if err != nil {
		t.Fatal(err)
	}
	// Not running yet, but a publish is already routed and kept.
	p := kombu.NewProducer(conn, kombu.WithExchange(shop), kombu.WithMandatory())
	mustPublish(t, p.Publish(ctxT(t), "x", kombu.WithRoutingKey("order.placed")))
	if n := ready(t, conn, "orders"); n != 1 {
		t.Fatalf("%d messages in orders, want 1", n)
	}
}

func TestNewConsumerRejectsBadInput(t *testing.T) {
	conn := dial(t)
	ok := kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil })
	if _, err := kombu.NewConsumer(conn, nil); err == nil {
		t.Error("no subscriptions accepted")
	}
	if _, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "q"}}}); err == nil {
		t.Error("nil handler accepted")
	}
	if _, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "q"}, Handler: ok}},
		kombu.WithAccept("pickle")); !errors.Is(err, kombu.ErrUnknownSerializer) {
		t.Errorf("unknown accept name: got %v", err)
	}
	_, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "q2", Bindings: []kombu.Binding{{Exchange: "nowhere", RoutingKey: "k"}}}, Handler: ok,
	}})
	if !errors.Is(err, kombu.ErrNotFound) || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("binding to an undeclared exchange: got %v, want ErrNotFound naming it", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func mustPublish(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunReportsConnectionClosedUnderIt(t *testing.T) {
	conn := dial(t)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue:   kombu.Queue{Name: "q"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	waitFor(t, func() bool {
		info, err := kombu.Queue{Name: "q"}.Inspect(ctxT(t), conn)
		return err == nil && info.Consumers == 1
	})
	conn.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, kombu.ErrClosed) {
			t.Fatalf("Run returned %v, want ErrClosed: a supervisor must tell this from a clean stop", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its connection closed")
	}
}

func TestRunWithCancelledContextIsACleanStop(t *testing.T) {
	conn := dial(t)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue:   kombu.Queue{Name: "q"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error { return nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run with a cancelled context: %v, want nil", err)
	}
}

// An auto-acked message is the consumer's once delivered: stopping hands
// every one it took to the handler (none lost), and Run still returns
// within its shutdown bound while a handler is stuck.
func TestAutoAckShutdownLosesNothingWithinTheBound(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	const sent = 20
	var handled atomic.Int64
	started := make(chan struct{}, sent)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "auto"},
		Handler: kombu.HandlerFunc(func(ctx context.Context, m *kombu.Message) error {
			started <- struct{}{}
			handled.Add(1)
			if string(m.Body) == "0" {
				<-ctx.Done() // stuck until the shutdown timeout cancels it
			}
			return nil
		}),
	}}, kombu.WithAutoAck(), kombu.WithPrefetch(5), kombu.WithConcurrency(2),
		kombu.WithShutdownTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("auto"))
	for i := range sent {
		mustPublish(t, p.Publish(ctx, []byte(fmt.Sprint(i))))
	}
	stop := run(t, c)
	<-started
	<-started
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Run took %v to stop with a 200ms shutdown timeout", d)
	}
	left := ready(t, conn, "auto")
	if got := int(handled.Load()) + left; got != sent {
		t.Fatalf("%d handled + %d back in the queue = %d, want %d: auto-acked messages lost", handled.Load(), left, got, sent)
	}
}
