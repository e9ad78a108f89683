package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// A connection the broker closes comes back: the consumer resumes on the
// new session with its queue redeclared, publishing goes on, and every
// confirmed message is consumed.
func TestRecoveryAfterTheBrokerClosesTheConnection(t *testing.T) {
	connName := name(t, "conn")
	queueName := name(t, "q")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dialRecovering(t, ctx, connName)
	q := kombu.Queue{Name: queueName, Expires: time.Minute}

	var mu sync.Mutex
	seen := map[string]int{}
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(
		func(_ context.Context, m *kombu.Message) error {
			mu.Lock()
			defer mu.Unlock()
			seen[string(m.Body)]++
			return nil
		})}}, kombu.WithPrefetch(10))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()

	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queueName))
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if err := p.Publish(ctx, []byte(fmt.Sprint(i))); err != nil {
				t.Errorf("publish %d: %v", i, err)
			}
		}
	}
	publish(0, 50)

	// Kill the connection broker-side while messages are flowing.
	rabbitmqctl(t, "close_connection", connectionPID(t, connName), "test kills it")
	publish(50, 100) // waits for the new session where needed, never drops

	// Messages keep flowing after recovery.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d distinct messages of 100 after recovery", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	for i := range 100 {
		if seen[fmt.Sprint(i)] == 0 {
			t.Errorf("message %d lost", i)
		}
	}
	mu.Unlock()
	if err := conn.Err(); err != nil {
		t.Fatalf("connection done after recovery: %v", err)
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run returned during recovery: %v", err)
	default:
	}
	c.Close()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A message taken on one session and settled after the connection came
// back is refused with ErrStaleDelivery, never acked with its old tag.
func TestStaleDeliveryAfterRecovery(t *testing.T) {
	connName := name(t, "conn")
	queueName := name(t, "q")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dialRecovering(t, ctx, connName)
	q := kombu.Queue{Name: queueName, Expires: time.Minute}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey(queueName)).Publish(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	var msg *kombu.Message
	var err error
	for msg == nil {
		if msg, err = q.Get(ctx, conn); err != nil && !errors.Is(err, kombu.ErrEmpty) {
			t.Fatal(err)
		}
	}
	rabbitmqctl(t, "close_connection", connectionPID(t, connName), "test kills it")
	// Wait for the new session, then settle the old message.
	for {
		if _, err := q.Inspect(ctx, conn); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := msg.Ack(); !errors.Is(err, kombu.ErrStaleDelivery) {
		t.Fatalf("Ack after recovery: %v, want ErrStaleDelivery", err)
	}
	// The broker gave the message back; it is there for the new session.
	again, err := q.Get(ctx, conn)
	if err != nil || string(again.Body) != "once" || !again.Redelivered() {
		t.Fatalf("after recovery: %v %v", again, err)
	}
	if err := again.Ack(); err != nil {
		t.Fatal(err)
	}
}

// A worker reports the loss and the revival of its connection, and its
// consumer keeps consuming across them.
func TestWorkerHooksOnRabbitMQ(t *testing.T) {
	connName := name(t, "conn")
	queueName := name(t, "q")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dialRecovering(t, ctx, connName)
	events := make(chan string, 8)
	got := make(chan string, 8)
	w := kombu.NewWorker(conn, kombu.WithWorkerHooks(kombu.WorkerHooks{
		ConnectionLost:    func() { events <- "lost" },
		ConnectionRevived: func() { events <- "revived" },
		ConsumeReady:      func(*kombu.Consumer) { events <- "ready" },
	}))
	w.Consume(func(c *kombu.Connection) (*kombu.Consumer, error) {
		return kombu.NewConsumer(c, []kombu.Subscription{{Queue: kombu.Queue{Name: queueName, Expires: time.Minute},
			Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error { got <- string(m.Body); return nil })}})
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	expect := func(ch chan string, want string) {
		t.Helper()
		select {
		case e := <-ch:
			if e != want {
				t.Fatalf("got %q, want %q", e, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q", want)
		}
	}
	expect(events, "ready")
	p := kombu.NewProducer(w.ProducerConnection(), kombu.WithRoutingKey(queueName))
	if err := p.Publish(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	expect(got, "before")
	rabbitmqctl(t, "close_connection", connectionPID(t, connName), "test kills it")
	expect(events, "lost")
	expect(events, "revived")
	if err := p.Publish(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	expect(got, "after")
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A refused login is final: Dial returns it at once (after the broker's own
// delay), never retrying it until the context ends, even with no deadline.
func TestDialWithAWrongPasswordFailsPromptly(t *testing.T) {
	brokertest.AMQPURL(t)
	done := make(chan error, 1)
	go func() {
		_, err := kombu.Dial(context.Background(), "amqp://guest:wrong-password@127.0.0.1:5672//",
			kombu.WithReconnectPolicy(kombu.RetryPolicy{IntervalStart: 10 * time.Millisecond}))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, kombu.ErrAccessRefused) || strings.Contains(err.Error(), "wrong-password") {
			t.Fatalf("got %v, want ErrAccessRefused without the password", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Dial with a wrong password still running after 15s")
	}
}

// WithConcurrency bounds the handlers running at once across a reconnect
// too: the new session's deliveries wait until the handlers still at work
// on the old session's messages have finished.
func TestConcurrencyBoundHoldsAcrossRecovery(t *testing.T) {
	const concurrency, messages = 2, 12
	connName := name(t, "conn")
	queueName := name(t, "q")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dialRecovering(t, ctx, connName)
	q := kombu.Queue{Name: queueName, Expires: time.Minute}

	var mu sync.Mutex
	running, most := 0, 0
	handled := map[string]bool{}
	busy := make(chan struct{}, messages*2)
	var calls atomic.Int32
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(
		func(_ context.Context, m *kombu.Message) error {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			first := calls.Add(1) <= concurrency
			busy <- struct{}{}
			if first {
				time.Sleep(3 * time.Second) // still at work when the connection is back
			} else {
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			running--
			handled[string(m.Body)] = true
			mu.Unlock()
			return nil // the old session's acks fail as stale; those come again
		})}}, kombu.WithPrefetch(10), kombu.WithConcurrency(concurrency))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queueName))
	for i := range messages {
		if err := p.Publish(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for range concurrency {
		<-busy
	}
	rabbitmqctl(t, "close_connection", connectionPID(t, connName), "test kills it")

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		if n == messages {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d distinct messages of %d after recovery", n, messages)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most != concurrency {
		t.Fatalf("at most %d handlers ran at once, want exactly %d (WithConcurrency)", most, concurrency)
	}
}

// dialRecovering connects under the given name (so that a test can find
// the connection in rabbitmqctl and close it) with a retry policy quick
// enough for a test: 50 ms, then 100, 150, 200, ...
func dialRecovering(t *testing.T, ctx context.Context, connName string) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(ctx, brokertest.AMQPURL(t), kombu.WithConnectionName(connName),
		kombu.WithReconnectPolicy(kombu.RetryPolicy{IntervalStart: 50 * time.Millisecond, IntervalStep: 50 * time.Millisecond, IntervalMax: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Stopping an auto-ack consumer hands what amqp091-go still buffers to the
// handler (the broker has forgotten those messages), one handler slot at a
// time as any delivery: WithConcurrency holds during shutdown too.
func TestAutoAckShutdownKeepsConcurrency(t *testing.T) {
	const messages = 300
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dialRecovering(t, ctx, name(t, "conn"))
	q := kombu.Queue{Name: name(t, "q"), Expires: time.Minute}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name))
	for i := range messages {
		if err := p.Publish(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	running, most, handled := 0, 0, 0
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(
		func(context.Context, *kombu.Message) error {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			running--
			handled++
			mu.Unlock()
			return nil
		})}}, kombu.WithAutoAck(), kombu.WithConcurrency(1), kombu.WithShutdownTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	for {
		mu.Lock()
		n := handled
		mu.Unlock()
		if n >= 10 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	left, err := q.Inspect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most != 1 {
		t.Errorf("%d handlers ran at once during shutdown, want 1 (WithConcurrency(1))", most)
	}
	if handled+left.Messages != messages {
		t.Errorf("%d handled + %d left in the queue, want %d: auto-acked messages lost", handled, left.Messages, messages)
	}
	t.Logf("%d handled, %d left in the queue", handled, left.Messages)
}

// A publish whose write fails because the network went is a lost
// connection, ErrClosed, even when it comes before the driver has noticed
// the loss: the runtime then publishes again on the next connection
// (kombu.Shovel and Producer.Publish do), where a bare network error
// would fail the publish for good.
func TestPublishOnACutConnectionIsErrClosed(t *testing.T) {
	proxy, url := brokertest.ProxyURL(t, brokertest.AMQPURL(t), "5672")
	for i := range 20 {
		c := open(t, url)
		q := queue(t, c, "q", nil)
		p := &transport.Publishing{RoutingKey: q, Confirm: i%2 == 0, Body: []byte("x")}
		if err := c.Publish(ctxT(t), p); err != nil {
			t.Fatal(err)
		}
		proxy.Cut()
		for range 3 {
			err := c.Publish(ctxT(t), p)
			if err != nil && !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("publish %d after the cut (confirm %v): %v, want an error that is ErrClosed", i, p.Confirm, err)
			}
		}
		proxy.Restore()
	}
}
