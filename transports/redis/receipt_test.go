package redis_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// A take whose reply is lost (Redis ran the script, then stopped or the
// connection broke before the reply came) leaves its messages in the
// unacked hash with nobody holding them. They must come back to their
// queue at once, through the take's receipt, not after the visibility
// timeout (an hour here). Found by the chaos suite's Redis restart test.
func TestLostTakeReplyReturnsTheMessages(t *testing.T) {
	e := newEnv(t)
	const q = "lost-reply"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := e.url("visibility_timeout=3600")

	t.Run("consume", func(t *testing.T) {
		c := e.dialURL(url)
		if _, err := c.DeclareQueue(ctx, transport.Queue{Name: q}); err != nil {
			t.Fatal(err)
		}
		send(t, c, q, "a", "b", "c")
		kredis.LoseNextTakeReply(c, false)
		sub := consume(t, c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
		// The lost reply loses the connection, as a broken socket does,
		// and ends the subscription; nothing was handed over.
		select {
		case d, ok := <-sub.Deliveries():
			if ok {
				t.Fatalf("delivered %q although the take's reply was lost", d.Body)
			}
		case <-ctx.Done():
			t.Fatal("the subscription did not end")
		}
		c.Close()
		checkBack(t, e, url, q, "a", "b", "c")
	})

	t.Run("consume, reply late", func(t *testing.T) {
		// The connection is not lost: the subscription returns what the
		// take recorded before it takes again, and so delivers it.
		c := e.dialURL(url)
		defer c.Close()
		send(t, c, q, "e", "f")
		kredis.LoseNextTakeReply(c, true)
		sub := consume(t, c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
		got, ds := recvBodies(t, sub, 2)
		if !slices.Equal(got, []string{"e", "f"}) {
			t.Fatalf("got %q, want e and f", got)
		}
		for _, d := range ds {
			if d.Redelivered {
				t.Errorf("%q marked redelivered, but no handler saw it", d.Body)
			}
			ack(t, d)
		}
		if err := sub.Cancel(ctx); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if n := len(e.unacked()); n != 0 {
			t.Fatalf("%d entries left in the unacked hash", n)
		}
	})

	t.Run("get", func(t *testing.T) {
		c := e.dialURL(url)
		if _, err := c.DeclareQueue(ctx, transport.Queue{Name: q}); err != nil {
			t.Fatal(err)
		}
		send(t, c, q, "d")
		kredis.LoseNextTakeReply(c, false)
		if d, err := c.Get(ctx, q, false); err == nil {
			t.Fatalf("Get returned %q although its reply was lost", d.Body)
		}
		c.Close()
		checkBack(t, e, url, q, "d")
	})
}

// checkBack checks that the queue holds the bodies again, in order and
// not marked redelivered (they never reached a handler), and that nothing
// is left in the unacked hash.
func checkBack(t *testing.T, e *env, url, q string, bodies ...string) {
	t.Helper()
	if n := len(e.unacked()); n != 0 {
		t.Fatalf("%d entries left in the unacked hash: stranded until the visibility timeout", n)
	}
	c := e.dialURL(url)
	defer c.Close()
	sub := consume(t, c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
	got, ds := recvBodies(t, sub, len(bodies))
	if !slices.Equal(got, bodies) {
		t.Fatalf("got %q back, want %q", got, bodies)
	}
	for _, d := range ds {
		if d.Redelivered {
			t.Errorf("%q marked redelivered, but no handler saw it", d.Body)
		}
		ack(t, d)
	}
}
