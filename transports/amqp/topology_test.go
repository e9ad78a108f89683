package amqp_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

func TestExchangeTypesRoute(t *testing.T) {
	t.Parallel()
	c := open(t)
	tests := []struct {
		kind       string
		bindingKey string
		bindArgs   map[string]any
		routingKey string
		headers    map[string]any
		want       bool
	}{
		{kind: "direct", bindingKey: "a", routingKey: "a", want: true},
		{kind: "direct", bindingKey: "a", routingKey: "b", want: false},
		{kind: "topic", bindingKey: "shop.*.placed", routingKey: "shop.eu.placed", want: true},
		{kind: "topic", bindingKey: "shop.#", routingKey: "shop", want: true},
		{kind: "topic", bindingKey: "shop.*", routingKey: "shop.eu.placed", want: false},
		{kind: "fanout", bindingKey: "ignored", routingKey: "anything", want: true},
		{kind: "headers", bindArgs: map[string]any{"x-match": "all", "a": 1, "b": "x"},
			headers: map[string]any{"a": 1, "b": "x", "c": true}, want: true},
		{kind: "headers", bindArgs: map[string]any{"x-match": "all", "a": 1, "b": "x"},
			headers: map[string]any{"a": 1}, want: false},
		{kind: "headers", bindArgs: map[string]any{"x-match": "any", "a": 1, "b": "x"},
			headers: map[string]any{"b": "x"}, want: true},
		{kind: "headers", bindArgs: map[string]any{"x-match": "any", "a": 1, "b": "x"},
			headers: map[string]any{"a": 2, "b": "y"}, want: false},
	}
	for _, tt := range tests {
		ex := exchange(t, c, tt.kind)
		q := queue(t, c, tt.kind, nil)
		bind(t, c, transport.Binding{Source: ex, Destination: q, RoutingKey: tt.bindingKey, Arguments: tt.bindArgs})
		err := c.Publish(ctxT(t), &transport.Publishing{Exchange: ex, RoutingKey: tt.routingKey, Headers: tt.headers,
			Mandatory: true, Confirm: true, Body: []byte("m")})
		if got := err == nil; got != tt.want {
			t.Errorf("%s exchange, binding %q %v, key %q headers %v: routed = %v (%v), want %v",
				tt.kind, tt.bindingKey, tt.bindArgs, tt.routingKey, tt.headers, got, err, tt.want)
		}
		if !tt.want && !errors.Is(err, transport.ErrUnroutable) {
			t.Errorf("%s: got %v, want ErrUnroutable", tt.kind, err)
		}
		if n := len(bodies(t, c, q)); n != map[bool]int{true: 1, false: 0}[tt.want] {
			t.Errorf("%s: queue holds %d messages", tt.kind, n)
		}
	}
}

func TestExchangePassiveAndDelete(t *testing.T) {
	t.Parallel()
	c := open(t)
	missing := name(t, "missing")
	err := c.DeclareExchange(ctxT(t), transport.Exchange{Name: missing, Type: "direct", Passive: true})
	if !errors.Is(err, transport.ErrNotFound) || !strings.Contains(err.Error(), "no exchange '"+missing+"'") {
		t.Fatalf("passive declare of a missing exchange: %v, want ErrNotFound naming it", err)
	}
	// The declaration channel was closed by the 404: the next call works.
	ex := name(t, "ex")
	declareExchange(t, c, transport.Exchange{Name: ex, Type: "topic", Durable: true, AutoDelete: false,
		Arguments: map[string]any{"alternate-exchange": "amq.fanout"}})
	if err := c.DeclareExchange(ctxT(t), transport.Exchange{Name: ex, Type: "topic", Passive: true}); err != nil {
		t.Fatalf("passive declare of an existing exchange: %v", err)
	}
	// Redeclaring with another type is refused and names the argument.
	err = c.DeclareExchange(ctxT(t), transport.Exchange{Name: ex, Type: "fanout", Durable: true})
	if !errors.Is(err, transport.ErrPrecondition) || !strings.Contains(err.Error(), "inequivalent arg 'type' for exchange '"+ex+"'") {
		t.Fatalf("redeclare with another type: %v", err)
	}
	// if-unused refuses an exchange with bindings.
	q := queue(t, c, "q", nil)
	bind(t, c, transport.Binding{Source: ex, Destination: q, RoutingKey: "#"})
	if err := c.DeleteExchange(ctxT(t), ex, true); !errors.Is(err, transport.ErrInUse) {
		t.Fatalf("delete if-unused of a bound exchange: %v, want ErrInUse", err)
	}
	if err := c.DeleteExchange(ctxT(t), ex, false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := c.DeclareExchange(ctxT(t), transport.Exchange{Name: ex, Type: "topic", Passive: true}); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("passive declare after delete: %v, want ErrNotFound", err)
	}
}

func TestInternalExchangeAndExchangeBinding(t *testing.T) {
	t.Parallel()
	c := open(t)
	front := exchange(t, c, "topic")
	back := name(t, "internal")
	declareExchange(t, c, transport.Exchange{Name: back, Type: "direct", Internal: true, AutoDelete: true})
	q := queue(t, c, "q", nil)
	bind(t, c, transport.Binding{Source: back, Destination: q, RoutingKey: "k"})
	bind(t, c, transport.Binding{Source: front, Destination: back, DestinationIsExchange: true, RoutingKey: "#"})

	publish(t, c, &transport.Publishing{Exchange: front, RoutingKey: "k", Confirm: true, Mandatory: true, Body: []byte("via")})
	if got := bodies(t, c, q); !slices.Equal(got, []string{"via"}) {
		t.Fatalf("through the exchange binding: %q", got)
	}
	// Publishing straight to an internal exchange is refused.
	err := c.Publish(ctxT(t), &transport.Publishing{Exchange: back, RoutingKey: "k", Confirm: true, Body: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "internal") {
		t.Errorf("publish to an internal exchange: %v", err)
	}
	if err := c.Unbind(ctxT(t), transport.Binding{Source: front, Destination: back, DestinationIsExchange: true, RoutingKey: "#"}); err != nil {
		t.Fatal(err)
	}
	err = c.Publish(ctxT(t), &transport.Publishing{Exchange: front, RoutingKey: "k", Confirm: true, Mandatory: true, Body: []byte("x")})
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("after unbinding the exchanges: %v, want ErrUnroutable", err)
	}
	if err := c.Unbind(ctxT(t), transport.Binding{Source: back, Destination: q, RoutingKey: "k"}); err != nil {
		t.Fatal(err)
	}
}

func TestQueueDeclareInfo(t *testing.T) {
	t.Parallel()
	c := open(t)
	// A server-named, exclusive queue.
	info := declareQueue(t, c, transport.Queue{Exclusive: true})
	if !strings.HasPrefix(info.Name, "amq.gen-") {
		t.Fatalf("server-named queue is %q", info.Name)
	}
	toQueue(t, c, info.Name, "1")
	toQueue(t, c, info.Name, "2")
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{info.Name}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := next(t, sub)
	got, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: info.Name, Passive: true})
	if err != nil {
		t.Fatal(err)
	}
	if got != (transport.QueueInfo{Name: info.Name, Messages: 1, Consumers: 1}) {
		t.Errorf("passive declare: %+v, want 1 ready message and 1 consumer", got)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	sub.Cancel(ctxT(t))

	// Another connection may not use it.
	other := open(t)
	_, err = other.PurgeQueue(ctxT(t), info.Name)
	if !errors.Is(err, transport.ErrResourceLocked) {
		t.Errorf("purge of another connection's exclusive queue: %v, want ErrResourceLocked", err)
	}

	missing := name(t, "missing")
	_, err = c.DeclareQueue(ctxT(t), transport.Queue{Name: missing, Passive: true})
	if !errors.Is(err, transport.ErrNotFound) || !strings.Contains(err.Error(), "no queue '"+missing+"'") {
		t.Errorf("passive declare of a missing queue: %v", err)
	}
}

func TestPurgeAndDeleteCounts(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	for range 3 {
		toQueue(t, c, q, "x")
	}
	if n, err := c.PurgeQueue(ctxT(t), q); err != nil || n != 3 {
		t.Fatalf("purge = %d, %v; want 3", n, err)
	}
	toQueue(t, c, q, "x")
	toQueue(t, c, q, "y")
	if _, err := c.DeleteQueue(ctxT(t), q, false, true); !errors.Is(err, transport.ErrInUse) ||
		!strings.Contains(err.Error(), "not empty") {
		t.Fatalf("delete if-empty of a full queue: %v, want ErrInUse", err)
	}
	if n, err := c.DeleteQueue(ctxT(t), q, false, false); err != nil || n != 2 {
		t.Fatalf("delete = %d, %v; want 2", n, err)
	}
	if n, err := c.DeleteQueue(ctxT(t), q, false, false); err != nil || n != 0 {
		t.Fatalf("delete of a missing queue = %d, %v; want 0, nil", n, err)
	}
	if _, err := c.PurgeQueue(ctxT(t), q); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("purge of a missing queue: %v, want ErrNotFound", err)
	}
}

func TestRedeclareWithOtherTTL(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := declareQueue(t, c, transport.Queue{Name: name(t, "q"), Arguments: map[string]any{"x-message-ttl": int64(2000)}}).Name
	_, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: q, Arguments: map[string]any{"x-message-ttl": int64(1000)}})
	if !errors.Is(err, transport.ErrPrecondition) {
		t.Fatalf("redeclare with another TTL: %v, want ErrPrecondition", err)
	}
	for _, want := range []string{"'x-message-ttl'", "queue '" + q + "'", "'1000'", "'2000'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// The declaration channel was closed by the broker; the next call on
	// the same connection still works, with a Go int too.
	info, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: q, Arguments: map[string]any{"x-message-ttl": 2000}})
	if err != nil || info.Name != q {
		t.Fatalf("next declaration: %+v, %v", info, err)
	}
	// time.Duration arguments are sent as milliseconds.
	if _, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: q, Arguments: map[string]any{"x-message-ttl": 2 * time.Second}}); err != nil {
		t.Fatalf("declaration with a time.Duration: %v", err)
	}
	// Values AMQP cannot carry are refused before anything is sent.
	_, err = c.DeclareQueue(ctxT(t), transport.Queue{Name: q, Arguments: map[string]any{"x-bad": struct{}{}}})
	if err == nil || !strings.Contains(err.Error(), `"x-bad"`) {
		t.Fatalf("declaration with a struct argument: %v", err)
	}
}

func TestMessageTTLDeadLetters(t *testing.T) {
	t.Parallel()
	c := open(t)
	dlx := exchange(t, c, "direct")
	dlq := queue(t, c, "dlq", nil)
	bind(t, c, transport.Binding{Source: dlx, Destination: dlq, RoutingKey: "dead"})
	q := queue(t, c, "ttl", map[string]any{
		"x-message-ttl":             int64(50),
		"x-dead-letter-exchange":    dlx,
		"x-dead-letter-routing-key": "dead",
	})
	toQueue(t, c, q, "expires")
	var d *transport.Delivery
	eventually(t, "the message in the dead-letter queue", func() bool {
		var err error
		d, err = c.Get(ctxT(t), dlq, true)
		return err == nil
	})
	if string(d.Body) != "expires" {
		t.Fatalf("dead-lettered %q", d.Body)
	}
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) != 1 {
		t.Fatalf("x-death = %#v", d.Headers["x-death"])
	}
	death, _ := deaths[0].(map[string]any)
	if death["reason"] != "expired" || death["queue"] != q {
		t.Errorf("x-death entry %v, want reason expired from %s", death, q)
	}
	// The type every transport gives x-death's time (Redis stores a string).
	if at, ok := death["time"].(time.Time); !ok || time.Since(at) > time.Minute {
		t.Errorf("x-death time %#v, want a time.Time of the last minute", death["time"])
	}
	if ready(t, c, q) != 0 {
		t.Error("the expired message is still in its queue")
	}
}

func TestPerMessageExpiration(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	publish(t, c, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte("short"),
		Properties: transport.Properties{Expiration: 30 * time.Millisecond}})
	publish(t, c, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte("long"),
		Properties: transport.Properties{Expiration: time.Minute}})
	time.Sleep(100 * time.Millisecond)
	if got := bodies(t, c, q); !slices.Equal(got, []string{"long"}) {
		t.Fatalf("after 100ms the queue holds %q, want only the long-lived message", got)
	}
}

func TestMaxLengthDropsHead(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", map[string]any{"x-max-length": 2})
	for _, b := range []string{"1", "2", "3", "4"} {
		toQueue(t, c, q, b)
	}
	if got := bodies(t, c, q); !slices.Equal(got, []string{"3", "4"}) {
		t.Fatalf("queue holds %q, want the two newest", got)
	}
}

func TestMaxLengthRejectPublishNacks(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", map[string]any{"x-max-length": 1, "x-overflow": "reject-publish"})
	toQueue(t, c, q, "1")
	err := c.Publish(ctxT(t), &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte("2")})
	if !errors.Is(err, transport.ErrNacked) {
		t.Fatalf("publish to a full reject-publish queue: %v, want ErrNacked", err)
	}
	// The channel survives a nack.
	toQueue(t, c, name(t, "nowhere"), "x")
	if got := bodies(t, c, q); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("queue holds %q", got)
	}
}

func TestMaxPriorityOrder(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", map[string]any{"x-max-priority": uint8(10)})
	for _, p := range []uint8{1, 9, 0, 5} {
		publish(t, c, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte{'0' + p},
			Properties: transport.Properties{Priority: p}})
	}
	if got := bodies(t, c, q); !slices.Equal(got, []string{"9", "5", "1", "0"}) {
		t.Fatalf("delivered %q, want highest priority first", got)
	}
}

func TestQuorumDeliveryLimitDeadLetters(t *testing.T) {
	t.Parallel()
	c := open(t)
	dlq := queue(t, c, "dlq", nil)
	q := declareQueue(t, c, transport.Queue{Name: name(t, "quorum"), Durable: true, Arguments: map[string]any{
		"x-queue-type":              "quorum",
		"x-delivery-limit":          2,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": dlq,
	}}).Name
	toQueue(t, c, q, "poison")
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctxT(t))
	// Delivered once and redelivered up to the limit, then dead-lettered.
	for i := range 3 {
		d := next(t, sub)
		if string(d.Body) != "poison" || d.Redelivered != (i > 0) {
			t.Fatalf("delivery %d: %q redelivered=%v", i, d.Body, d.Redelivered)
		}
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
			t.Fatal(err)
		}
	}
	var dead *transport.Delivery
	eventually(t, "the poison message in the dead-letter queue", func() bool {
		var err error
		dead, err = c.Get(ctxT(t), dlq, true)
		return err == nil
	})
	if string(dead.Body) != "poison" {
		t.Fatalf("dead-lettered %q", dead.Body)
	}
	quiet(t, sub, 100*time.Millisecond)
}

func TestStreamQueueDeclare(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := declareQueue(t, c, transport.Queue{Name: name(t, "stream"), Durable: true,
		Arguments: map[string]any{"x-queue-type": "stream", "x-max-length-bytes": int64(1 << 20)}}).Name
	toQueue(t, c, q, "s")
	// Streams are read with a consumer, prefetch, manual acks and an offset.
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10,
		Arguments: map[string]any{"x-stream-offset": "first"}})
	if err != nil {
		t.Fatal(err)
	}
	d := next(t, sub)
	if string(d.Body) != "s" {
		t.Fatalf("read %q from the stream", d.Body)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	if err := sub.Cancel(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
