package redis_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// fanoutChannel is the channel a broadcast to the exchange is published on
// in the test's database, with the test's key prefix.
func (e *env) fanoutChannel(exchange, key string) string {
	db := strings.TrimPrefix(e.base[strings.LastIndex(e.base, "/"):], "/")
	if db == "" {
		db = "0"
	}
	ch := e.prefix + "/" + db + "." + exchange
	if key != "" {
		ch += "/" + key
	}
	return ch
}

func serverNamedQueue(t *testing.T, c transport.Conn) string {
	t.Helper()
	info, err := c.DeclareQueue(context.Background(), transport.Queue{Exclusive: true, AutoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	return info.Name
}

// The issue: a broadcast consumer's queue is bound, then something is
// published, and only then does the consumer start. A broadcast published
// after Bind returns must be waiting in the queue.
func TestFanoutBindBuffersBeforeConsume(t *testing.T) {
	e := newEnv(t)
	c, p := e.dial(), e.dial()
	transporttest.DeclareExchange(t, p, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	for i := range 20 { // many rounds, in case the race is narrow
		transporttest.DeclareExchange(t, c, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
		q := serverNamedQueue(t, c)
		transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: q, RoutingKey: ""})
		// Mandatory: it fails if nobody is subscribed to the channel now.
		body := fmt.Sprintf("early-%d", i)
		if err := p.Publish(context.Background(), &transport.Publishing{Exchange: "news", Body: []byte(body), Mandatory: true}); err != nil {
			t.Fatalf("round %d: broadcast right after Bind: %v", i, err)
		}
		transporttest.Eventually(t, "the broadcast in the queue's list", func() bool { return len(e.list(q)) == 1 })
		s := consume(t, c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
		d := recv(t, s)
		if string(d.Body) != body || d.Exchange != "news" || d.Queue != q {
			t.Fatalf("round %d: got %q from %q on %q", i, d.Body, d.Exchange, d.Queue)
		}
		ack(t, d)
		none(t, s, 50*time.Millisecond)
		if err := s.Cancel(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteQueue(context.Background(), q, false, false); err != nil {
			t.Fatal(err)
		}
	}
}

// Each queue bound on a connection gets one copy of a broadcast, however
// many of its bindings match and however many queues share a pattern; and
// Unbind stops the copying at once.
func TestFanoutCopiesOncePerQueueAndUnbindStops(t *testing.T) {
	e := newEnv(t)
	c, p := e.dial(), e.dial()
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	transporttest.DeclareExchange(t, p, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	qa, qb, qc := "qa", "qb", "qc"
	for _, q := range []string{qa, qb, qc} {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
	}
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: qa, RoutingKey: ""})
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: qa, RoutingKey: ""}) // again: still one binding
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: qb, RoutingKey: ""})
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: qc, RoutingKey: "a.#"}) // pattern .../news/a.*
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: qc, RoutingKey: "#"})   // pattern .../news/*: both match "a.b"

	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("all")})
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", RoutingKey: "a.b", Body: []byte("keyed")})
	// The same bytes published twice are two broadcasts (Kombu's
	// envelopes differ by their delivery tag, raw ones need not).
	raw := `{"body": "cmF3", "content-encoding": "binary", "content-type": "application/data", "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "news", "routing_key": "a.c"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "same"}}`
	for range 2 {
		if err := e.raw.Publish(ctx, e.fanoutChannel("news", "a.c"), raw).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The connection copies in the order it receives: once the last
	// broadcast is in qa, everything before it has been copied.
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("marker")})
	transporttest.Eventually(t, "the marker", func() bool { l := e.list(qa); return len(l) > 0 && strings.Contains(l[len(l)-1], "bWFya2Vy") })
	bodies := func(q string) []string {
		var out []string
		for _, m := range e.list(q) {
			b, _ := envelope(t, m)["body"].(string)
			out = append(out, b)
		}
		return out
	}
	// base64: all=YWxs, keyed=a2V5ZWQ=, raw=cmF3, marker=bWFya2Vy.
	if got := bodies(qa); !sameSet(got, []string{"YWxs", "bWFya2Vy"}) {
		t.Errorf("qa holds %q", got)
	}
	if got := bodies(qb); !sameSet(got, []string{"YWxs", "bWFya2Vy"}) {
		t.Errorf("qb holds %q", got)
	}
	if got := bodies(qc); !sameSet(got, []string{"a2V5ZWQ=", "cmF3", "cmF3"}) {
		t.Errorf("qc holds %q, want keyed once and raw twice", got)
	}
	for _, q := range []string{qa, qb, qc} {
		if _, err := c.PurgeQueue(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	// Unbind qa: broadcasts after it returns are not copied to qa; qb,
	// bound with the same pattern, still gets them.
	if err := c.Unbind(ctx, transport.Binding{Source: "news", Destination: qa}); err != nil {
		t.Fatal(err)
	}
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("after")})
	transporttest.Eventually(t, "the broadcast in qb", func() bool { return len(e.list(qb)) == 1 })
	if l := e.list(qa); len(l) != 0 {
		t.Errorf("qa, unbound, holds %q", l)
	}
	// Once no queue needs the pattern, the connection unsubscribes.
	if err := c.Unbind(ctx, transport.Binding{Source: "news", Destination: qb}); err != nil {
		t.Fatal(err)
	}
	transporttest.Eventually(t, "no subscriber left for the exchange's channel", func() bool {
		n, err := e.raw.Publish(ctx, e.fanoutChannel("news", ""), "").Result() // an empty payload is ignored
		return err == nil && n == 0
	})
	err := p.Publish(ctx, &transport.Publishing{Exchange: "news", Body: []byte("late"), Mandatory: true})
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Errorf("mandatory broadcast after every unbind: %v", err)
	}
	if l := e.list(qb); len(l) != 1 {
		t.Errorf("qb, unbound, holds %q", l)
	}
	// Deleting a queue drops its bindings too; qc's patterns go with it.
	if _, err := c.DeleteQueue(ctx, qc, false, false); err != nil {
		t.Fatal(err)
	}
	transporttest.Eventually(t, "no subscriber left after the delete", func() bool {
		n, err := e.raw.Publish(ctx, e.fanoutChannel("news", "a.b"), "").Result()
		return err == nil && n == 0
	})
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", RoutingKey: "a.b", Body: []byte("gone")})
	time.Sleep(50 * time.Millisecond)
	if l := e.list(qc); len(l) != 0 {
		t.Errorf("qc, deleted, holds %q", l)
	}
}

// Closing the connection ends its subscription (no goroutine left, nobody
// subscribed) and deletes its auto-delete queue, which no late broadcast
// brings back. A new connection binding again receives broadcasts again,
// as after a kombu.Connection's reconnect.
func TestFanoutCloseAndBindAgain(t *testing.T) {
	e := newEnv(t)
	c, p := e.dial(), e.dial()
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	transporttest.DeclareExchange(t, p, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	q := serverNamedQueue(t, c)
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: q, RoutingKey: ""})
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("1")})
	transporttest.Eventually(t, "the broadcast", func() bool { return len(e.list(q)) == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := e.raw.Publish(ctx, e.fanoutChannel("news", ""), "").Result(); err != nil || n != 0 {
		t.Errorf("after close, %d subscribers (%v)", n, err)
	}
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("2")})
	time.Sleep(50 * time.Millisecond)
	if l := e.list(q); len(l) != 0 {
		t.Errorf("the auto-delete queue holds %q after close", l)
	}
	transporttest.Eventually(t, "the relay's goroutine to end", func() bool { return !goroutineRunning("(*fanoutRelay).receive") })

	c2 := e.dial()
	transporttest.DeclareExchange(t, c2, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	q2 := serverNamedQueue(t, c2)
	transporttest.Bind(t, c2, transport.Binding{Source: "news", Destination: q2, RoutingKey: ""})
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("3")})
	s := consume(t, c2, transport.ConsumeSpec{Queues: []string{q2}})
	if d := recv(t, s); string(d.Body) != "3" {
		t.Errorf("got %q", d.Body)
	} else {
		ack(t, d)
	}
}

// When the PUB/SUB connection drops, go-redis reconnects and subscribes
// again, and broadcasts are copied again; a Bind made meanwhile works.
func TestFanoutSubscriptionSurvivesReconnect(t *testing.T) {
	e := newEnv(t)
	name := fmt.Sprintf("kgt-fanout-%d", time.Now().UnixNano())
	c, p := e.dial("client_name="+name), e.dial()
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	transporttest.DeclareExchange(t, p, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	q := transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"}).Name
	transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: q, RoutingKey: ""})
	pubsubIDs := func() []string {
		list, err := e.raw.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, line := range strings.Split(list, "\n") {
			fields := map[string]string{}
			for _, f := range strings.Fields(line) {
				if k, v, ok := strings.Cut(f, "="); ok {
					fields[k] = v
				}
			}
			if fields["name"] == name && fields["psub"] != "" && fields["psub"] != "0" {
				ids = append(ids, fields["id"])
			}
		}
		return ids
	}
	ids := pubsubIDs()
	if len(ids) != 1 {
		t.Fatalf("PUB/SUB connections of the test connection: %q", ids)
	}
	if err := e.raw.Do(ctx, "CLIENT", "KILL", "ID", ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	// Binding at once, before or after the driver notices, still
	// subscribes before Bind returns.
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "news2", Type: transport.ExchangeFanout, Durable: true})
	transporttest.DeclareExchange(t, p, transport.Exchange{Name: "news2", Type: transport.ExchangeFanout, Durable: true})
	q2 := transporttest.DeclareQueue(t, c, transport.Queue{Name: "q2"}).Name
	transporttest.Bind(t, c, transport.Binding{Source: "news2", Destination: q2, RoutingKey: ""})
	if err := p.Publish(ctx, &transport.Publishing{Exchange: "news2", Body: []byte("x"), Mandatory: true}); err != nil {
		t.Fatalf("broadcast after a bind across the reconnect: %v", err)
	}
	transporttest.Eventually(t, "the broadcast in q2", func() bool { return len(e.list(q2)) == 1 })
	transporttest.Eventually(t, "a new PUB/SUB connection", func() bool { ids2 := pubsubIDs(); return len(ids2) == 1 && ids2[0] != ids[0] })
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("after")})
	transporttest.Eventually(t, "the broadcast in the queue", func() bool { return len(e.list(q)) == 1 })
	// And one copy only.
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("after2")})
	transporttest.Eventually(t, "the second broadcast", func() bool { return len(e.list(q)) >= 2 })
	time.Sleep(50 * time.Millisecond)
	if l := e.list(q); len(l) != 2 {
		t.Errorf("queue holds %d messages", len(l))
	}
}

func goroutineRunning(fn string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), fn)
		}
		buf = make([]byte, 2*len(buf))
	}
}
