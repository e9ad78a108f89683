package redis_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// A connection whose Redis goes away is lost, as an AMQP connection is:
// Done closes, Err and every operation's error are ErrClosed (so the
// runtime waits for a new connection and publishes again there). What
// its deliveries' handlers settle meanwhile is not dropped: once Redis is
// back, closing the lost connection applies the acknowledgement and the
// requeue, and returns the message still unsettled at once, leaving
// nothing in the unacked hash for the visibility timeout.
func TestLostRedisIsReportedAndLateSettlementsApplied(t *testing.T) {
	srv := brokertest.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := openURL(t, srv.URL(0)+"?visibility_timeout=3600")
	if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "work"}); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one", "two", "three"} {
		if err := c.Publish(ctx, &transport.Publishing{RoutingKey: "work", Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"work"}, Prefetch: 3})
	if err != nil {
		t.Fatal(err)
	}
	var ds []*transport.Delivery
	for range 3 {
		select {
		case d := <-sub.Deliveries():
			ds = append(ds, d)
		case <-ctx.Done():
			t.Fatal("no delivery")
		}
	}

	srv.Stop()
	err = c.Publish(ctx, &transport.Publishing{RoutingKey: "work", Body: []byte("four")})
	if !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("publish with Redis down: %v, want an error that is ErrClosed (the connection lost)", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done is not closed once a publish found Redis unreachable")
	}
	if err := c.Err(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Err() = %v, want the loss, an error that is ErrClosed", err)
	}
	select {
	case <-sub.Done():
	case <-ctx.Done():
		t.Fatal("the subscription did not end with its connection")
	}
	if err := sub.Err(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("subscription Err() = %v, want the loss", err)
	}
	// Handlers go on while Redis is down: their settlements are taken.
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); err != nil {
		t.Fatalf("ack with Redis down: %v", err)
	}
	if err := ds[1].Acknowledger.Reject(ds[1].Tag, true); err != nil {
		t.Fatalf("requeue with Redis down: %v", err)
	}

	srv.Start()
	if err := c.Close(); err != nil {
		t.Fatalf("closing the lost connection once Redis is back: %v", err)
	}
	check := openURL(t, srv.URL(0))
	var got []string
	for {
		d, err := check.Get(ctx, "work", true)
		if errors.Is(err, transport.ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d.Body))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"three", "two"}) {
		t.Fatalf("the queue holds %q, want two (requeued) and three (unsettled, returned): one was acked", got)
	}
	if err := check.Publish(ctx, &transport.Publishing{RoutingKey: "probe", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	n, err := check.DeleteQueue(ctx, "probe", false, false)
	if err != nil || n != 1 {
		t.Fatalf("a fresh connection to the restarted Redis does not work: %d, %v", n, err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if h, err := raw.HLen(ctx, "unacked").Result(); err != nil || h != 0 {
		t.Fatalf("%d entries left in the unacked hash (%v): a settlement was dropped", h, err)
	}
}

// A Redis that answers slowly (paused, busy) is not lost: a command that
// timed out on a connection that is up fails on its own, and the
// connection goes on once Redis answers again. Only Redis unreachable
// loses it.
func TestSlowRedisIsNotLost(t *testing.T) {
	srv := brokertest.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := openURL(t, srv.URL(0)+"?socket_timeout=0.2")
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if err := raw.Do(ctx, "CLIENT", "PAUSE", "2000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	err := c.Publish(ctx, &transport.Publishing{RoutingKey: "work", Body: []byte("slow")})
	switch {
	case err == nil:
		t.Fatal("a publish to Redis paused for 2 s did not time out after 0.2 s: the test checks nothing")
	case errors.Is(err, transport.ErrClosed):
		t.Fatalf("publish to a paused Redis: %v: a slow Redis was taken for a lost one", err)
	}
	select {
	case <-c.Done():
		t.Fatalf("the connection ended while Redis was only paused: %v", c.Err())
	default:
	}
	for {
		err := c.Publish(ctx, &transport.Publishing{RoutingKey: "work", Body: []byte("after")})
		if err == nil {
			break
		}
		if errors.Is(err, transport.ErrClosed) || ctx.Err() != nil {
			t.Fatalf("publish once the pause is over: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Through the runtime: a publish made while Redis is down waits for it to
// come back (bounded by its context) and is made there, as on RabbitMQ;
// a handler that acks while Redis is down has its ack applied (the message
// is not handed out again), and the consumer goes on on the new
// connection.
func TestPublishAndAckThroughARedisRestart(t *testing.T) {
	srv := brokertest.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, srv.URL(0)+"?visibility_timeout=3600",
		kombu.WithReconnectPolicy(kombu.RetryPolicy{IntervalStart: 50 * time.Millisecond, IntervalStep: 50 * time.Millisecond, IntervalMax: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	inHandler := make(chan *kombu.Message, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "work"},
		Handler: kombu.HandlerFunc(func(_ context.Context, msg *kombu.Message) error {
			mu.Lock()
			seen[string(msg.Body)]++
			mu.Unlock()
			if string(msg.Body) == "before" {
				inHandler <- msg
				<-release // acks once Redis is down
			}
			return nil
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("work"))
	if err := p.Publish(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	held := <-inHandler

	srv.Stop()
	published := make(chan error, 1)
	go func() { published <- p.Publish(ctx, []byte("during")) }()
	select {
	case <-conn.Lost():
	case <-ctx.Done():
		t.Fatal("the connection did not notice Redis was gone")
	}
	close(release) // the handler returns, and its message is acked, while Redis is down
	for held.State() != kombu.StateAcked {
		if ctx.Err() != nil {
			t.Fatalf("the message was %s, not acked", held.State())
		}
		time.Sleep(time.Millisecond)
	}
	srv.Start()
	if err := <-published; err != nil {
		t.Fatalf("a publish made while Redis was down: %v, want it made once Redis was back", err)
	}
	for {
		mu.Lock()
		done := seen["during"] > 0
		mu.Unlock()
		if done {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the message published during the outage was not consumed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	conn.Close()
	mu.Lock()
	defer mu.Unlock()
	if seen["before"] != 1 || seen["during"] != 1 {
		t.Fatalf("deliveries %v, want each message once: the ack made while Redis was down must be applied", seen)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if h, err := raw.HLen(ctx, "unacked").Result(); err != nil || h != 0 {
		t.Fatalf("%d entries left in the unacked hash (%v)", h, err)
	}
}

// openURL opens a driver connection, closed when the test ends.
func openURL(t *testing.T, raw string) transport.Conn {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := kredis.Driver{}.Open(ctx, u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
