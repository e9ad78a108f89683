package memory_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// deaths returns a delivery's x-death entries.
func deaths(t *testing.T, d *transport.Delivery) []map[string]any {
	t.Helper()
	list, ok := d.Headers["x-death"].([]any)
	if !ok {
		t.Fatalf("x-death = %#v, want []any", d.Headers["x-death"])
	}
	out := make([]map[string]any, len(list))
	for i, e := range list {
		if out[i], ok = e.(map[string]any); !ok {
			t.Fatalf("x-death[%d] = %#v, want map[string]any", i, e)
		}
	}
	return out
}

// checkDeath compares an x-death entry with the expected fields, and checks
// its time is recent.
func checkDeath(t *testing.T, got map[string]any, count int64, reason, queue, exchange, key string) {
	t.Helper()
	if got["count"] != count || got["reason"] != reason || got["queue"] != queue || got["exchange"] != exchange {
		t.Errorf("x-death entry %v, want count %d reason %q queue %q exchange %q", got, count, reason, queue, exchange)
	}
	if keys, _ := got["routing-keys"].([]any); !slices.Equal(keys, []any{key}) {
		t.Errorf("routing-keys = %#v, want [%q]", got["routing-keys"], key)
	}
	if at, ok := got["time"].(time.Time); !ok || time.Since(at) > time.Minute {
		t.Errorf("time = %#v", got["time"])
	}
}

// eventuallyGet polls a queue until it holds a message, for deaths caused by
// timers.
func eventuallyGet(t *testing.T, c transport.Conn, queue string) *transport.Delivery {
	t.Helper()
	var d *transport.Delivery
	transporttest.Eventually(t, "a message in "+queue, func() bool {
		var err error
		d, err = c.Get(context.Background(), queue, true)
		return err == nil
	})
	return d
}

func TestQueueTTLDeadLetters(t *testing.T) {
	c := dial(t)
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dlx", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead"})
	transporttest.Bind(t, c, transport.Binding{Source: "dlx", Destination: "dead", RoutingKey: "expired-work"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "work", Arguments: map[string]any{
		"x-message-ttl": 20, "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "expired-work",
	}})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "work", Body: []byte("late"), Headers: map[string]any{"app": "test"}})

	d := eventuallyGet(t, c, "dead")
	if string(d.Body) != "late" || d.Exchange != "dlx" || d.RoutingKey != "expired-work" || d.Headers["app"] != "test" {
		t.Fatalf("dead-lettered delivery %+v", d)
	}
	ds := deaths(t, d)
	if len(ds) != 1 {
		t.Fatalf("%d x-death entries, want 1", len(ds))
	}
	checkDeath(t, ds[0], 1, "expired", "work", "", "work")
	if d.Headers["x-first-death-reason"] != "expired" || d.Headers["x-first-death-queue"] != "work" {
		t.Errorf("x-first-death headers: %v", d.Headers)
	}
	if got := ready(t, c, "work"); got != 0 {
		t.Errorf("work still holds %d", got)
	}
}

func TestMessageExpirationDeadLetters(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "dead"})
	// The lower of queue TTL and message expiration applies.
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "work", Arguments: map[string]any{
		"x-message-ttl": 60_000, "x-dead-letter-exchange": "",
		"x-dead-letter-routing-key": "dead",
	}})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "work", Body: []byte("short"), Properties: transport.Properties{Expiration: 20 * time.Millisecond}})
	d := eventuallyGet(t, c, "dead")
	if d.Properties.Expiration != 0 {
		t.Errorf("dead-lettered copy keeps expiration %v", d.Properties.Expiration)
	}
	ds := deaths(t, d)
	checkDeath(t, ds[0], 1, "expired", "work", "", "work")
	if ds[0]["original-expiration"] != "20" {
		t.Errorf("original-expiration = %#v, want \"20\"", ds[0]["original-expiration"])
	}
}

func TestExpiredMessageIsNotDelivered(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: []byte("gone"), Properties: transport.Properties{Expiration: time.Millisecond}})
	send(t, c, "q", "kept")
	transporttest.Eventually(t, "expiry", func() bool { return ready(t, c, "q") == 1 })
	if got := drain(t, c, "q"); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("got %q", got)
	}
	// A TTL too long to add to the clock does not wrap around.
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "forever", Arguments: map[string]any{"x-message-ttl": int64(math.MaxInt64)}})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "forever", Body: []byte("x"), Properties: transport.Properties{Expiration: math.MaxInt64}})
	if got := drain(t, c, "forever"); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("got %q", got)
	}
}

// A message that expires behind one that does not waits for the head to
// go, as on RabbitMQ; then it expires without anyone taking it: taking the
// head arms the expiry timer for the next one.
func TestExpiryBehindAHeadThatDoesNotExpire(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "kept")
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: []byte("gone"), Properties: transport.Properties{Expiration: 20 * time.Millisecond}})
	// The timer armed for "gone" fires, finds "kept" at the head, and is
	// not armed again.
	time.Sleep(100 * time.Millisecond)
	if n := ready(t, c, "q"); n != 2 {
		t.Fatalf("%d ready before the head is taken, want 2: an expired message behind the head waits", n)
	}
	if d := get(t, c, "q", true); string(d.Body) != "kept" {
		t.Fatalf("got %q, want the head, kept", d.Body)
	}
	transporttest.Eventually(t, "the expired message gone once it is the head", func() bool { return ready(t, c, "q") == 0 })
}

func TestRejectDeadLettersAndCountsRepeats(t *testing.T) {
	c := dial(t)
	// a and b dead-letter into each other; rejections are never a cycle.
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "a", Arguments: map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "b"}})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "b", Arguments: map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "a"}})
	send(t, c, "a", "bounce")
	reject := func(queue string) {
		d := get(t, c, queue, false)
		if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
	reject("a")
	reject("b")
	reject("a")
	d := get(t, c, "b", true)
	ds := deaths(t, d)
	if len(ds) != 2 {
		t.Fatalf("x-death = %v, want 2 entries", ds)
	}
	// The repeated death moved to the front with its count incremented.
	checkDeath(t, ds[0], 2, "rejected", "a", "", "a")
	checkDeath(t, ds[1], 1, "rejected", "b", "", "b")
	if d.RoutingKey != "b" || d.Headers["x-first-death-queue"] != "a" {
		t.Errorf("routing key %q, x-first-death-queue %v", d.RoutingKey, d.Headers["x-first-death-queue"])
	}
}

func TestRejectWithoutDeadLetterExchangeDrops(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "x")
	d := get(t, c, "q", false)
	if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	if got := ready(t, c, "q"); got != 0 {
		t.Fatalf("ready = %d", got)
	}
}

func TestExpiryCycleIsDropped(t *testing.T) {
	c := dial(t)
	// q dead-letters through a fanout that leads back to q and on to r: the
	// copy for q would loop on expiry forever, so RabbitMQ drops it.
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "loop", Type: transport.ExchangeFanout})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q", Arguments: map[string]any{"x-message-ttl": 10, "x-dead-letter-exchange": "loop"}})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "r"})
	transporttest.Bind(t, c, transport.Binding{Source: "loop", Destination: "q"})
	transporttest.Bind(t, c, transport.Binding{Source: "loop", Destination: "r"})
	send(t, c, "q", "x")
	d := eventuallyGet(t, c, "r")
	checkDeath(t, deaths(t, d)[0], 1, "expired", "q", "", "q")
	if got := ready(t, c, "q"); got != 0 {
		t.Fatalf("q holds %d, want the cycling copy dropped", got)
	}
}
