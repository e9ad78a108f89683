package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestPrefetchBoundsWhatIsTaken(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "1", "2", "3", "4", "5")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 2})
	bodies, ds := recvBodies(t, s, 2)
	if !slices.Equal(bodies, []string{"1", "2"}) {
		t.Fatalf("got %q", bodies)
	}
	none(t, s, 100*time.Millisecond)
	if n := len(e.list("q")); n != 3 {
		t.Errorf("q holds %d, want 3 left", n)
	}
	if n := len(e.unacked()); n != 2 {
		t.Errorf("%d unacked, want 2", n)
	}
	if err := ds[1].Acknowledger.Ack(ds[1].Tag, true); err != nil { // settles both
		t.Fatal(err)
	}
	bodies, ds = recvBodies(t, s, 2)
	if !slices.Equal(bodies, []string{"3", "4"}) {
		t.Fatalf("got %q", bodies)
	}
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, true); err != nil {
		t.Fatal(err)
	}
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); !errors.Is(err, transport.ErrPrecondition) {
		t.Errorf("second ack: %v", err)
	}
	ack(t, ds[1])
	ack(t, recv(t, s))
	transporttest.Eventually(t, "every ack", func() bool { return len(e.unacked()) == 0 && len(e.unackedIndex()) == 0 })
}

func TestRequeueGoesToTheBackMarkedRedelivered(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "first", "second")
	d, err := c.Get(context.Background(), "q", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
		t.Fatal(err)
	}
	items := e.list("q")
	if len(items) != 2 || !strings.Contains(items[0], `"c2Vjb25k"`) { // base64("second") is next
		t.Fatalf("queue after requeue %q", items)
	}
	m := envelope(t, items[1])
	if prop(m, "headers", "redelivered") != true || prop(m, "properties", "delivery_info", "redelivered") != true {
		t.Errorf("requeued envelope %s", items[1])
	}
	if len(e.unacked()) != 0 || len(e.unackedIndex()) != 0 {
		t.Errorf("unacked record left: %v", e.unacked())
	}
	second, _ := c.Get(context.Background(), "q", true)
	first, _ := c.Get(context.Background(), "q", true)
	if string(second.Body) != "second" || string(first.Body) != "first" || !first.Redelivered || second.Redelivered {
		t.Errorf("got %q (redelivered %t), %q (redelivered %t)", second.Body, second.Redelivered, first.Body, first.Redelivered)
	}
	// Reject without requeue drops it.
	send(t, c, "q", "drop")
	d, _ = c.Get(context.Background(), "q", false)
	if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	transporttest.Eventually(t, "the reject to reach Redis", func() bool { return len(e.unacked()) == 0 && len(e.list("q")) == 0 })
}

func TestCloseRestoresUnsettledToTheFront(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "a", "b", "c")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 2})
	_, ds := recvBodies(t, s, 2)
	_ = ds
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	items := e.list("q")
	if len(items) != 3 {
		t.Fatalf("q holds %d after close", len(items))
	}
	var bodies []string
	for _, raw := range items {
		m := envelope(t, raw)
		bodies = append(bodies, prop(m, "body").(string))
		if prop(m, "body") != "Yw==" && prop(m, "headers", "redelivered") != true {
			t.Errorf("restored %s not marked redelivered", raw)
		}
	}
	if want := []string{"YQ==", "Yg==", "Yw=="}; !slices.Equal(bodies, want) { // a, b restored ahead of c
		t.Errorf("order after close %q, want %q", bodies, want)
	}
	if len(e.unacked()) != 0 {
		t.Errorf("unacked left: %v", e.unacked())
	}
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("ack after close: %v", err)
	}
}

func TestCancelReturnsWhatWasNotHandedOver(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "1", "2", "3", "4", "5")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 5})
	d := recv(t, s)
	transporttest.Eventually(t, "the batch to be taken", func() bool { return len(e.list("q")) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-s.Deliveries(); ok {
		t.Fatal("delivery after cancel")
	}
	items := e.list("q")
	if len(items) != 4 {
		t.Fatalf("q holds %d after cancel, want 4", len(items))
	}
	for _, raw := range items {
		if strings.Contains(raw, "redelivered") {
			t.Errorf("message never handed over came back marked: %s", raw)
		}
	}
	if un := e.unacked(); len(un) != 1 {
		t.Errorf("unacked %v, want the delivered one only", un)
	}
	ack(t, d) // still settles after cancel
	transporttest.Eventually(t, "the ack", func() bool { return len(e.unacked()) == 0 })
}

func TestAutoAckRecordsNothing(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "1", "2")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, AutoAck: true})
	for _, d := range []*transport.Delivery{recv(t, s), recv(t, s)} {
		if d.Acknowledger != nil {
			t.Error("auto-acked delivery has an acknowledger")
		}
	}
	if len(e.unacked()) != 0 {
		t.Errorf("unacked %v", e.unacked())
	}
}

func TestMalformedMessageReachesTheConsumer(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	ctx := context.Background()
	e.raw.LPush(ctx, e.prefix+"q", "not json", `{"body": 5}`)
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 2})
	a, b := recv(t, s), recv(t, s)
	for _, d := range []*transport.Delivery{a, b} {
		if d.Properties.ContentType != "application/x-kombu-invalid-envelope" || d.Headers["compression"] == nil {
			t.Errorf("malformed message delivered as %+v", d)
		}
		if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
			t.Error(err)
		}
	}
	// A JSON object is recorded (and restorable); other text is not.
	transporttest.Eventually(t, "rejects", func() bool { return len(e.unacked()) == 0 })
}

func TestIdleConsumerWakesAtOnce(t *testing.T) {
	e := newEnv(t)
	// A polling interval this long means only a wake-up can deliver in time.
	c := e.dial("polling_interval=30")
	p := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	none(t, s, 300*time.Millisecond) // let it go idle, with tracking set up
	for i := range 3 {
		start := time.Now()
		transporttest.Publish(t, p, &transport.Publishing{RoutingKey: "q", Body: []byte("x"), Properties: transport.Properties{Priority: uint8(i * 4)}})
		d := recv(t, s)
		if lat := time.Since(start); lat > 2*time.Second {
			t.Errorf("message %d took %v to arrive", i, lat)
		}
		ack(t, d)
	}
}

func TestFanoutConsumers(t *testing.T) {
	e := newEnv(t)
	c1, c2, p := e.dial(), e.dial(), e.dial()
	var subs []transport.Subscription
	for i, c := range []transport.Conn{c1, c2} {
		transporttest.DeclareExchange(t, c, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
		q := transporttest.DeclareQueue(t, c, transport.Queue{Name: ""}).Name
		transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: q, RoutingKey: ""})
		if i == 0 {
			// A second queue on the same connection bound with a key.
			q2 := transporttest.DeclareQueue(t, c, transport.Queue{Name: fmt.Sprintf("keyed-%d", i)}).Name
			transporttest.Bind(t, c, transport.Binding{Source: "news", Destination: q2, RoutingKey: "sports.#"})
			subs = append(subs, consume(t, c, transport.ConsumeSpec{Queues: []string{q, q2}, Prefetch: 10}))
			continue
		}
		subs = append(subs, consume(t, c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10}))
	}
	// The publisher only needs to know the exchange is a fanout.
	transporttest.DeclareExchange(t, p, transport.Exchange{Name: "news", Type: transport.ExchangeFanout, Durable: true})
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", Body: []byte("all")})
	transporttest.Publish(t, p, &transport.Publishing{Exchange: "news", RoutingKey: "sports.x", Body: []byte("sport")})
	for i, s := range subs {
		d := recv(t, s)
		if string(d.Body) != "all" || d.Exchange != "news" {
			t.Errorf("subscriber %d got %q from %q", i, d.Body, d.Exchange)
		}
		ack(t, d)
	}
	// Kombu's pattern rule: "sports.#" subscribes to ".../news/sports.*";
	// queues bound with "" only get broadcasts published without a key.
	d := recv(t, subs[0])
	if string(d.Body) != "sport" || !strings.HasPrefix(d.Queue, "keyed-") {
		t.Errorf("keyed queue got %q on %q", d.Body, d.Queue)
	}
	ack(t, d)
	none(t, subs[1], 200*time.Millisecond)
	err := p.Publish(context.Background(), &transport.Publishing{Exchange: "news", RoutingKey: "nobody", Mandatory: true})
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Errorf("mandatory broadcast nobody hears: %v", err)
	}
	// Exclusive queues go when their connection closes, bindings and all,
	// as do auto-delete queues bound to a fanout exchange (Kombu's rule).
	ctx := context.Background()
	excl, err := c2.DeclareQueue(ctx, transport.Queue{Exclusive: true, AutoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.DeclareQueue(ctx, transport.Queue{Name: "auto", AutoDelete: true}); err != nil {
		t.Fatal(err)
	}
	transporttest.DeclareQueue(t, c2, transport.Queue{Name: "durable"})
	for _, q := range []string{excl.Name, "auto", "durable"} {
		transporttest.Bind(t, c2, transport.Binding{Source: "news", Destination: q, RoutingKey: "k"})
		send(t, c2, q, "kept?")
	}
	c2.Close()
	ks := e.keys()
	if slices.Contains(ks, excl.Name) || slices.Contains(ks, "auto") || !slices.Contains(ks, "durable") {
		t.Errorf("keys after close %q", ks)
	}
	members, _ := e.raw.SMembers(ctx, e.prefix+"_kombu.binding.news").Result()
	for _, m := range members {
		if strings.HasSuffix(m, sep+excl.Name) || strings.HasSuffix(m, sep+"auto") {
			t.Errorf("binding %q left after close", m)
		}
	}
}

func TestBatchPublishAndTake(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	const n = 2000
	ps := make([]*transport.Publishing, n)
	for i := range ps {
		ps[i] = &transport.Publishing{RoutingKey: "q", Body: fmt.Appendf(nil, "%d", i)}
	}
	if err := c.(transport.BatchPublisher).PublishBatch(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
	if got := len(e.list("q")); got != n {
		t.Fatalf("q holds %d", got)
	}
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 100})
	for i := range n {
		d := recv(t, s)
		if string(d.Body) != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, d.Body)
		}
		ack(t, d)
	}
	transporttest.Eventually(t, "every ack", func() bool { return len(e.unacked()) == 0 })
}
