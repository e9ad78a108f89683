package memory_test

import (
	"context"
	"slices"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// routedTo publishes p and returns, in order, the queues among queues that
// received it and how many copies each got.
func routedTo(t *testing.T, c transport.Conn, p *transport.Publishing, queues ...string) []string {
	t.Helper()
	transporttest.Publish(t, c, p)
	var got []string
	for _, q := range queues {
		for range drain(t, c, q) {
			got = append(got, q)
		}
	}
	return got
}

func TestDirectRouting(t *testing.T) {
	c := dial(t)
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "d", Type: transport.ExchangeDirect})
	for _, q := range []string{"q1", "q2", "q3"} {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
	}
	transporttest.Bind(t, c, transport.Binding{Source: "d", Destination: "q1", RoutingKey: "a"})
	transporttest.Bind(t, c, transport.Binding{Source: "d", Destination: "q2", RoutingKey: "a"})
	transporttest.Bind(t, c, transport.Binding{Source: "d", Destination: "q2", RoutingKey: "b"})
	transporttest.Bind(t, c, transport.Binding{Source: "d", Destination: "q3", RoutingKey: ""})
	transporttest.Bind(t, c, transport.Binding{Source: "d", Destination: "q1", RoutingKey: "a"}) // duplicate: no second copy

	for _, tt := range []struct {
		key  string
		want []string
	}{
		{"a", []string{"q1", "q2"}},
		{"b", []string{"q2"}},
		{"", []string{"q3"}},
		{"c", nil},
	} {
		got := routedTo(t, c, &transport.Publishing{Exchange: "d", RoutingKey: tt.key}, "q1", "q2", "q3")
		if !slices.Equal(got, tt.want) {
			t.Errorf("key %q routed to %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestDefaultExchangeRoutesByQueueName(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "jobs"})
	if got := routedTo(t, c, &transport.Publishing{RoutingKey: "jobs"}, "jobs"); !slices.Equal(got, []string{"jobs"}) {
		t.Fatalf("routed to %v", got)
	}
	if got := routedTo(t, c, &transport.Publishing{RoutingKey: "nope"}, "jobs"); got != nil {
		t.Fatalf("routed to %v", got)
	}
	ctx := context.Background()
	if err := c.DeclareExchange(ctx, transport.Exchange{Name: "", Type: "direct"}); err == nil {
		t.Error("declaring the default exchange succeeded")
	}
	if err := c.DeclareExchange(ctx, transport.Exchange{Name: "", Passive: true}); err != nil {
		t.Errorf("passive declare of the default exchange: %v", err)
	}
	if err := c.DeleteExchange(ctx, "", false); err == nil {
		t.Error("deleting the default exchange succeeded")
	}
	if err := c.Bind(ctx, transport.Binding{Source: "", Destination: "jobs", RoutingKey: "x"}); err == nil {
		t.Error("binding to the default exchange succeeded")
	}
}

func TestTopicRoutingThroughExchange(t *testing.T) {
	c := dial(t)
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "t", Type: transport.ExchangeTopic})
	keys := map[string]string{"all": "#", "one": "*", "ab": "a.*", "deep": "a.#", "empty": ""}
	var queues []string
	for q, key := range keys {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
		transporttest.Bind(t, c, transport.Binding{Source: "t", Destination: q, RoutingKey: key})
		queues = append(queues, q)
	}
	slices.Sort(queues)
	for _, tt := range []struct {
		key  string
		want []string
	}{
		{"", []string{"all", "empty"}},
		{"a", []string{"all", "deep", "one"}},
		{"a.b", []string{"ab", "all", "deep"}},
		{"a.b.c", []string{"all", "deep"}},
		{"b.a", []string{"all"}},
	} {
		got := routedTo(t, c, &transport.Publishing{Exchange: "t", RoutingKey: tt.key}, queues...)
		if !slices.Equal(got, tt.want) {
			t.Errorf("key %q routed to %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestFanoutRouting(t *testing.T) {
	c := dial(t)
	for _, q := range []string{"q1", "q2"} {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
		transporttest.Bind(t, c, transport.Binding{Source: "amq.fanout", Destination: q, RoutingKey: "ignored-" + q})
	}
	got := routedTo(t, c, &transport.Publishing{Exchange: "amq.fanout", RoutingKey: "whatever"}, "q1", "q2")
	if !slices.Equal(got, []string{"q1", "q2"}) {
		t.Fatalf("routed to %v", got)
	}
}

func TestHeadersRoutingThroughExchange(t *testing.T) {
	c := dial(t)
	for _, q := range []string{"all", "any"} {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
	}
	transporttest.Bind(t, c, transport.Binding{Source: "amq.headers", Destination: "all", Arguments: map[string]any{"format": "pdf", "size": 3}})
	transporttest.Bind(t, c, transport.Binding{Source: "amq.match", Destination: "any", Arguments: map[string]any{"x-match": "any", "format": "pdf", "size": 3}})
	if got := routedTo(t, c, &transport.Publishing{Exchange: "amq.headers", Headers: map[string]any{"format": "pdf", "size": int64(3)}}, "all", "any"); !slices.Equal(got, []string{"all"}) {
		t.Errorf("all: routed to %v", got)
	}
	if got := routedTo(t, c, &transport.Publishing{Exchange: "amq.headers", Headers: map[string]any{"format": "pdf"}}, "all", "any"); got != nil {
		t.Errorf("all with a missing header: routed to %v", got)
	}
	if got := routedTo(t, c, &transport.Publishing{Exchange: "amq.match", Headers: map[string]any{"size": uint16(3)}}, "all", "any"); !slices.Equal(got, []string{"any"}) {
		t.Errorf("any: routed to %v", got)
	}
	err := c.Bind(context.Background(), transport.Binding{Source: "amq.headers", Destination: "all", Arguments: map[string]any{"x-match": "most"}})
	if err == nil {
		t.Error("bind with x-match \"most\" succeeded")
	}
}

func TestExchangeToExchange(t *testing.T) {
	c := dial(t)
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "front", Type: transport.ExchangeTopic})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "middle", Type: transport.ExchangeFanout, Internal: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "back", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "other"})
	transporttest.Bind(t, c, transport.Binding{Source: "front", Destination: "middle", DestinationIsExchange: true, RoutingKey: "a.*"})
	transporttest.Bind(t, c, transport.Binding{Source: "middle", Destination: "back", DestinationIsExchange: true})
	transporttest.Bind(t, c, transport.Binding{Source: "back", Destination: "q", RoutingKey: "a.b"})
	transporttest.Bind(t, c, transport.Binding{Source: "back", Destination: "other", RoutingKey: "a.c"})
	// A second path to q, and a cycle back to the front.
	transporttest.Bind(t, c, transport.Binding{Source: "front", Destination: "q", RoutingKey: "#"})
	transporttest.Bind(t, c, transport.Binding{Source: "back", Destination: "front", DestinationIsExchange: true, RoutingKey: "a.b"})

	if got := routedTo(t, c, &transport.Publishing{Exchange: "front", RoutingKey: "a.b"}, "q", "other"); !slices.Equal(got, []string{"q"}) {
		t.Errorf("a.b routed to %v, want one copy in q", got)
	}
	if got := routedTo(t, c, &transport.Publishing{Exchange: "front", RoutingKey: "a.c"}, "q", "other"); !slices.Equal(got, []string{"q", "other"}) {
		t.Errorf("a.c routed to %v", got)
	}
	// The routing key travels unchanged through the chain.
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "front", RoutingKey: "a.c"})
	d := get(t, c, "other", true)
	if d.Exchange != "front" || d.RoutingKey != "a.c" {
		t.Errorf("delivery exchange %q routing key %q, want front a.c", d.Exchange, d.RoutingKey)
	}
	drain(t, c, "q")

	err := c.Publish(context.Background(), &transport.Publishing{Exchange: "middle"})
	if err == nil {
		t.Error("publishing to an internal exchange succeeded")
	}
	wantErr(t, c.Bind(context.Background(), transport.Binding{Source: "front", Destination: "nope", DestinationIsExchange: true}), transport.ErrNotFound, `exchange "nope"`)
}

func TestAlternateExchange(t *testing.T) {
	c := dial(t)
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "ae", Type: transport.ExchangeFanout})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "x", Type: transport.ExchangeDirect, Arguments: map[string]any{"alternate-exchange": "ae"}})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "unrouted"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.Bind(t, c, transport.Binding{Source: "ae", Destination: "unrouted"})
	transporttest.Bind(t, c, transport.Binding{Source: "x", Destination: "q", RoutingKey: "k"})
	if got := routedTo(t, c, &transport.Publishing{Exchange: "x", RoutingKey: "k", Mandatory: true}, "q", "unrouted"); !slices.Equal(got, []string{"q"}) {
		t.Errorf("k routed to %v", got)
	}
	if got := routedTo(t, c, &transport.Publishing{Exchange: "x", RoutingKey: "other", Mandatory: true}, "q", "unrouted"); !slices.Equal(got, []string{"unrouted"}) {
		t.Errorf("other routed to %v", got)
	}
}

func TestExchangeDeclaration(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "orders", Type: transport.ExchangeTopic, Durable: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "orders", Type: transport.ExchangeTopic, Durable: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "orders", Passive: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "amq.direct", Type: transport.ExchangeDirect, Durable: true})

	for _, tt := range []struct {
		ex   transport.Exchange
		text string
	}{
		{transport.Exchange{Name: "orders", Type: transport.ExchangeDirect, Durable: true}, `memory: exchange "orders": type is topic, declared as direct`},
		{transport.Exchange{Name: "orders", Type: transport.ExchangeTopic}, `memory: exchange "orders": durable is true, declared as false`},
		{transport.Exchange{Name: "orders", Type: transport.ExchangeTopic, Durable: true, AutoDelete: true}, `memory: exchange "orders": auto-delete is false, declared as true`},
		{transport.Exchange{Name: "orders", Type: transport.ExchangeTopic, Durable: true, Internal: true}, `memory: exchange "orders": internal is false, declared as true`},
		{transport.Exchange{Name: "orders", Type: transport.ExchangeTopic, Durable: true, Arguments: map[string]any{"alternate-exchange": "ae"}}, `memory: exchange "orders": argument alternate-exchange is absent, declared as "ae"`},
		{transport.Exchange{Name: "amq.direct", Type: transport.ExchangeDirect}, `memory: exchange "amq.direct": durable is true, declared as false`},
	} {
		wantErr(t, c.DeclareExchange(ctx, tt.ex), transport.ErrPrecondition, tt.text)
	}
	wantErr(t, c.DeclareExchange(ctx, transport.Exchange{Name: "missing", Passive: true}), transport.ErrNotFound, `exchange "missing"`)
	wantErr(t, c.DeclareExchange(ctx, transport.Exchange{Name: "delayed", Type: "x-delayed-message"}), transport.ErrNotSupported, `unknown exchange type "x-delayed-message"`)
	wantErr(t, c.DeclareExchange(ctx, transport.Exchange{Name: "y", Type: "direct", Arguments: map[string]any{"x-delayed-type": "direct"}}), transport.ErrNotSupported, "x-delayed-type")
	if err := c.DeclareExchange(ctx, transport.Exchange{Name: "amq.mine", Type: "direct"}); err == nil {
		t.Error("declaring an amq. exchange succeeded")
	}
}

func TestExchangeDeletion(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "x", Type: transport.ExchangeDirect})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.Bind(t, c, transport.Binding{Source: "x", Destination: "q", RoutingKey: "k"})
	wantErr(t, c.DeleteExchange(ctx, "x", true), transport.ErrInUse, `exchange "x" has 1 bindings`)
	if err := c.DeleteExchange(ctx, "x", false); err != nil {
		t.Fatal(err)
	}
	wantErr(t, c.DeclareExchange(ctx, transport.Exchange{Name: "x", Passive: true}), transport.ErrNotFound, "")
	if err := c.DeleteExchange(ctx, "x", false); err != nil {
		t.Errorf("deleting a missing exchange: %v", err)
	}
	if err := c.DeleteExchange(ctx, "amq.topic", false); err == nil {
		t.Error("deleting amq.topic succeeded")
	}
}

func TestAutoDeleteExchange(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "auto", Type: transport.ExchangeFanout, AutoDelete: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "auto", Passive: true}) // no binding yet: still there
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q1"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q2"})
	transporttest.Bind(t, c, transport.Binding{Source: "auto", Destination: "q1"})
	transporttest.Bind(t, c, transport.Binding{Source: "auto", Destination: "q2"})
	if err := c.Unbind(ctx, transport.Binding{Source: "auto", Destination: "q1"}); err != nil {
		t.Fatal(err)
	}
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "auto", Passive: true})
	// Deleting the queue removes the last binding.
	if _, err := c.DeleteQueue(ctx, "q2", false, false); err != nil {
		t.Fatal(err)
	}
	wantErr(t, c.DeclareExchange(ctx, transport.Exchange{Name: "auto", Passive: true}), transport.ErrNotFound, "")
}

func TestBindAndUnbind(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	wantErr(t, c.Bind(ctx, transport.Binding{Source: "missing", Destination: "q"}), transport.ErrNotFound, `exchange "missing"`)
	wantErr(t, c.Bind(ctx, transport.Binding{Source: "amq.direct", Destination: "missing"}), transport.ErrNotFound, `queue "missing"`)
	if err := c.Unbind(ctx, transport.Binding{Source: "amq.direct", Destination: "q", RoutingKey: "never-bound"}); err != nil {
		t.Errorf("unbinding a missing binding: %v", err)
	}
	transporttest.Bind(t, c, transport.Binding{Source: "amq.direct", Destination: "q", RoutingKey: "k", Arguments: map[string]any{"n": 1}})
	// Arguments are part of a binding's identity, compared by value.
	if err := c.Unbind(ctx, transport.Binding{Source: "amq.direct", Destination: "q", RoutingKey: "k", Arguments: map[string]any{"n": 2}}); err != nil {
		t.Fatal(err)
	}
	if got := routedTo(t, c, &transport.Publishing{Exchange: "amq.direct", RoutingKey: "k"}, "q"); len(got) != 1 {
		t.Fatalf("after unbinding a different binding: routed to %v", got)
	}
	if err := c.Unbind(ctx, transport.Binding{Source: "amq.direct", Destination: "q", RoutingKey: "k", Arguments: map[string]any{"n": int64(1)}}); err != nil {
		t.Fatal(err)
	}
	if got := routedTo(t, c, &transport.Publishing{Exchange: "amq.direct", RoutingKey: "k"}, "q"); got != nil {
		t.Fatalf("after unbinding: routed to %v", got)
	}
}
