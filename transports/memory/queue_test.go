package memory_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestServerNamedQueue(t *testing.T) {
	c := dial(t)
	a := transporttest.DeclareQueue(t, c, transport.Queue{Exclusive: true}).Name
	b := transporttest.DeclareQueue(t, c, transport.Queue{Exclusive: true}).Name
	pattern := regexp.MustCompile(`^amq\.gen-[A-Za-z0-9_-]{22}$`)
	if !pattern.MatchString(a) || a == b {
		t.Fatalf("names %q and %q: want two distinct amq.gen- names", a, b)
	}
	// RabbitMQ reserves amq. names, even for redeclaring a server-named queue.
	if _, err := c.DeclareQueue(context.Background(), transport.Queue{Name: a, Exclusive: true}); err == nil {
		t.Error("redeclaring a server-named queue by name succeeded")
	}
	if ready(t, c, a) != 0 {
		t.Error("new queue not empty")
	}
}

func TestQueueDeclaration(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	args := map[string]any{"x-message-ttl": 1000, "x-max-length": int64(10)}
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q", Durable: true, Arguments: args})
	send(t, c, "q", "one", "two")
	// Same values in other Go types are the same declaration.
	info, err := c.DeclareQueue(ctx, transport.Queue{Name: "q", Durable: true, Arguments: map[string]any{"x-message-ttl": int32(1000), "x-max-length": 10.0}})
	if err != nil {
		t.Fatal(err)
	}
	if info != (transport.QueueInfo{Name: "q", Messages: 2}) {
		t.Errorf("info = %+v", info)
	}
	for _, tt := range []struct {
		q    transport.Queue
		text string
	}{
		{transport.Queue{Name: "q", Arguments: args}, `memory: queue "q": durable is true, declared as false`},
		{transport.Queue{Name: "q", Durable: true, Exclusive: true, Arguments: args}, `memory: queue "q": exclusive is false, declared as true`},
		{transport.Queue{Name: "q", Durable: true, AutoDelete: true, Arguments: args}, `memory: queue "q": auto-delete is false, declared as true`},
		{transport.Queue{Name: "q", Durable: true, Arguments: map[string]any{"x-message-ttl": 2000, "x-max-length": 10}}, `memory: queue "q": argument x-message-ttl is 1000, declared as 2000`},
		{transport.Queue{Name: "q", Durable: true, Arguments: map[string]any{"x-message-ttl": 1000}}, `memory: queue "q": argument x-max-length is 10, declared as absent`},
	} {
		_, err := c.DeclareQueue(ctx, tt.q)
		wantErr(t, err, transport.ErrPrecondition, tt.text)
	}
	_, err = c.DeclareQueue(ctx, transport.Queue{Name: "missing", Passive: true})
	wantErr(t, err, transport.ErrNotFound, `queue "missing"`)
}

func TestQueueArgumentErrors(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	for _, tt := range []struct {
		args   map[string]any
		target error // nil: any error
		text   string
	}{
		{map[string]any{"x-message-ttl": "1000"}, nil, `argument x-message-ttl must be a non-negative integer number of milliseconds, got string "1000"`},
		{map[string]any{"x-message-ttl": time.Second}, nil, "got time.Duration"},
		{map[string]any{"x-expires": 0}, nil, "x-expires must be a positive integer"},
		{map[string]any{"x-max-length": -1}, nil, "x-max-length must be a non-negative integer"},
		{map[string]any{"x-max-priority": 256}, nil, "x-max-priority must be an integer from 0 to 255"},
		{map[string]any{"x-dead-letter-routing-key": "k"}, nil, "needs x-dead-letter-exchange"},
		{map[string]any{"x-queue-type": "quorum"}, transport.ErrNotSupported, `x-queue-type="quorum"`},
		{map[string]any{"x-queue-type": "stream"}, transport.ErrNotSupported, "x-queue-type"},
		{map[string]any{"x-overflow": "reject-publish"}, transport.ErrNotSupported, "x-overflow"},
		{map[string]any{"x-single-active-consumer": true}, transport.ErrNotSupported, "x-single-active-consumer"},
		{map[string]any{"x-delivery-limit": 3}, transport.ErrNotSupported, "x-delivery-limit"},
	} {
		_, err := c.DeclareQueue(ctx, transport.Queue{Name: "q", Arguments: tt.args})
		if err == nil {
			t.Errorf("args %v: declared", tt.args)
			continue
		}
		if tt.target != nil {
			wantErr(t, err, tt.target, tt.text)
		} else if !containsAll(err.Error(), `memory: queue "q": `, tt.text) {
			t.Errorf("args %v: err = %q, want %q", tt.args, err, tt.text)
		}
	}
	// Accepted: advisory arguments, classic queues, custom non-x arguments.
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "ok", Arguments: map[string]any{
		"x-queue-type": "classic", "x-queue-mode": "lazy", "x-overflow": "drop-head",
		"x-single-active-consumer": false, "x-message-ttl": uint8(5), "owner": "me",
	}})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestExclusiveQueue(t *testing.T) {
	owner, other := dial(t), dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, owner, transport.Queue{Name: "mine", Exclusive: true})
	transporttest.DeclareQueue(t, owner, transport.Queue{Name: "mine", Exclusive: true}) // the owner may redeclare
	send(t, other, "mine", "publishing is allowed")

	locked := `queue "mine" is exclusive to another connection`
	_, err := other.DeclareQueue(ctx, transport.Queue{Name: "mine", Exclusive: true})
	wantErr(t, err, transport.ErrResourceLocked, locked)
	_, err = other.DeclareQueue(ctx, transport.Queue{Name: "mine", Passive: true})
	wantErr(t, err, transport.ErrResourceLocked, locked)
	_, err = other.Consume(ctx, transport.ConsumeSpec{Queues: []string{"mine"}})
	wantErr(t, err, transport.ErrResourceLocked, locked)
	wantErr(t, other.Bind(ctx, transport.Binding{Source: "amq.fanout", Destination: "mine"}), transport.ErrResourceLocked, locked)
	_, err = other.Get(ctx, "mine", true)
	wantErr(t, err, transport.ErrResourceLocked, locked)
	_, err = other.PurgeQueue(ctx, "mine")
	wantErr(t, err, transport.ErrResourceLocked, locked)
	_, err = other.DeleteQueue(ctx, "mine", false, false)
	wantErr(t, err, transport.ErrResourceLocked, locked)

	if got := ready(t, owner, "mine"); got != 1 {
		t.Fatalf("ready = %d, want 1", got)
	}
	owner.Close()
	_, err = other.DeclareQueue(ctx, transport.Queue{Name: "mine", Passive: true})
	wantErr(t, err, transport.ErrNotFound, "")
	// The name is free again.
	transporttest.DeclareQueue(t, other, transport.Queue{Name: "mine", Exclusive: true})
}

func TestAutoDeleteQueue(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "auto", AutoDelete: true})
	transporttest.Bind(t, c, transport.Binding{Source: "amq.fanout", Destination: "auto"})
	// Without ever having had a consumer it stays.
	s1 := consume(t, c, transport.ConsumeSpec{Queues: []string{"auto"}})
	s2 := consume(t, c, transport.ConsumeSpec{Queues: []string{"auto"}})
	if err := s1.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ready(t, c, "auto"); got != 0 {
		t.Fatalf("ready = %d", got)
	}
	if err := s2.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := c.DeclareQueue(ctx, transport.Queue{Name: "auto", Passive: true})
	wantErr(t, err, transport.ErrNotFound, "")
	// Its binding went with it.
	if err := c.Publish(ctx, &transport.Publishing{Exchange: "amq.fanout", Mandatory: true}); !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("publish after auto-delete: %v, want ErrUnroutable", err)
	}
}

func TestQueueExpires(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "idle", Arguments: map[string]any{"x-expires": 20}})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "busy", Arguments: map[string]any{"x-expires": 20}})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"busy"}, AutoAck: true})
	// A declaration or Get would renew the lease, as on RabbitMQ; a mandatory
	// publish observes the queue without using it.
	gone := func(q string) func() bool {
		return func() bool {
			err := c.Publish(ctx, &transport.Publishing{RoutingKey: q, Mandatory: true})
			return errors.Is(err, transport.ErrUnroutable)
		}
	}
	transporttest.Eventually(t, "the idle queue to expire", gone("idle"))
	if gone("busy")() {
		t.Fatal("the consumed queue expired")
	}
	if err := s.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	transporttest.Eventually(t, "the busy queue to expire once unused", gone("busy"))
}

func TestPurgeAndDelete(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	send(t, c, "q", "1", "2", "3")
	unacked := get(t, c, "q", false)
	n, err := c.PurgeQueue(ctx, "q")
	if err != nil || n != 2 {
		t.Fatalf("purge = %d, %v; want 2 ready messages (not the unacked one)", n, err)
	}
	if err := unacked.Acknowledger.Reject(unacked.Tag, true); err != nil {
		t.Fatal(err)
	}
	send(t, c, "q", "4")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	recv(t, s) // "1", redelivered; "4" stays ready behind the prefetch limit
	_, err = c.DeleteQueue(ctx, "q", true, false)
	wantErr(t, err, transport.ErrInUse, `queue "q" has 1 consumers`)
	if err := s.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteQueue(ctx, "q", false, true)
	wantErr(t, err, transport.ErrInUse, `queue "q" has 1 messages`)
	n, err = c.DeleteQueue(ctx, "q", true, false)
	if err != nil || n != 1 {
		t.Fatalf("delete = %d, %v; want 1", n, err)
	}
	n, err = c.DeleteQueue(ctx, "q", false, false)
	if err != nil || n != 0 {
		t.Fatalf("deleting a missing queue = %d, %v; want 0, nil", n, err)
	}
	_, err = c.PurgeQueue(ctx, "q")
	wantErr(t, err, transport.ErrNotFound, `queue "q"`)
}

func TestPriorityQueue(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "p", Arguments: map[string]any{"x-max-priority": 5}})
	for i, prio := range []uint8{1, 5, 3, 9, 0, 5} {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "p", Body: []byte{'a' + byte(i)}, Properties: transport.Properties{Priority: prio}})
	}
	// Highest first, 9 capped to 5, and arrival order within a priority.
	if got, want := drain(t, c, "p"), []string{"b", "d", "f", "c", "a", "e"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
	// Without x-max-priority, priority is ignored.
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "fifo"})
	for i, prio := range []uint8{1, 9, 3} {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "fifo", Body: []byte{'a' + byte(i)}, Properties: transport.Properties{Priority: prio}})
	}
	if got, want := drain(t, c, "fifo"), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestNamedBrokersAreIsolated(t *testing.T) {
	a := dial(t, brokerPath(t)+"-a")
	b := dial(t, brokerPath(t)+"-b")
	a2 := dial(t, brokerPath(t)+"-a")
	transporttest.DeclareQueue(t, a, transport.Queue{Name: "q"})
	send(t, a, "q", "x")
	_, err := b.DeclareQueue(context.Background(), transport.Queue{Name: "q", Passive: true})
	wantErr(t, err, transport.ErrNotFound, "")
	if got := ready(t, a2, "q"); got != 1 {
		t.Fatalf("same name, other connection: ready = %d, want 1", got)
	}
	// memory:// and memory:/// are both the default broker.
	name := "default-broker-" + brokerPath(t)
	transporttest.DeclareQueue(t, dial(t, ""), transport.Queue{Name: name, AutoDelete: true})
	ready(t, dial(t, "/"), name)
}

func TestContextDone(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Publish(ctx, &transport.Publishing{}); !errors.Is(err, context.Canceled) {
		t.Errorf("publish with a done context: %v", err)
	}
	if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "q"}); !errors.Is(err, context.Canceled) {
		t.Errorf("declare with a done context: %v", err)
	}
}
