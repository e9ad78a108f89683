package kombu_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	kombu "github.com/kombu-go/kombu/runtime"
)

// A producer with WithDeclare declares its queue before its first publish,
// so a message published before any consumer exists waits in the queue.
func TestWithDeclareKeepsMessagesPublishedBeforeAConsumer(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	ex := kombu.Exchange{Name: "invoices", Type: kombu.ExchangeTopic}
	q := kombu.Queue{Name: "invoices.issued", Bindings: []kombu.Binding{{Exchange: "invoices", RoutingKey: "invoice.*"}}}
	p := kombu.NewProducer(conn, kombu.WithExchange(ex), kombu.WithRoutingKey("invoice.issued"), kombu.WithDeclare(q))
	for _, body := range []string{"first", "second"} {
		if err := p.Publish(ctx, body); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"first", "second"} {
		if got, _ := getBody(t, conn, q.Name); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// Every kind of entity can be declared, in the order given; the producer's
// exchange comes first, so a queue can be bound to it.
func TestWithDeclareEntities(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	dlx := kombu.Exchange{Name: "dlx", Type: kombu.ExchangeFanout}
	dead := kombu.Queue{Name: "dead", Bindings: []kombu.Binding{{Exchange: "dlx"}}}
	work := kombu.Queue{Name: "work", DeadLetterExchange: "dlx", Bindings: []kombu.Binding{{Exchange: "jobs", RoutingKey: "job"}}}
	// A topology's exclusive queues belong to its consumers: skipped.
	topo := kombu.Topology{Exchanges: []kombu.Exchange{dlx}, Queues: []kombu.Queue{dead, {Name: "mine", Exclusive: true}}}
	p := kombu.NewProducer(conn, kombu.WithExchange(kombu.Exchange{Name: "jobs"}), kombu.WithRoutingKey("job"),
		kombu.WithDeclare(topo), kombu.WithDeclare(work)) // accumulates
	if err := p.Publish(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if n := ready(t, conn, "work"); n != 1 {
		t.Errorf("work holds %d messages, want 1", n)
	}
	if _, err := (kombu.Queue{Name: "mine"}).Inspect(ctx, conn); !errors.Is(err, kombu.ErrNotFound) {
		t.Errorf("the topology's exclusive queue: %v, want it not declared (ErrNotFound)", err)
	}
	// The dead-letter exchange and its queue were declared too: a
	// rejected message reaches them.
	msg, err := kombu.Queue{Name: "work"}.Get(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Reject(false); err != nil {
		t.Fatal(err)
	}
	if got, _ := getBody(t, conn, "dead"); got != "x" {
		t.Errorf("dead-lettered %q", got)
	}
}

// A producer must not declare a queue that belongs to a consumer's
// connection.
func TestWithDeclareRefusesConsumersQueues(t *testing.T) {
	conn := dial(t)
	for _, q := range []kombu.Queue{{}, {Name: "exclusive", Exclusive: true}} {
		err := kombu.NewProducer(conn, kombu.WithRoutingKey("x"), kombu.WithDeclare(q)).Publish(ctxT(t), "x")
		if !errors.Is(err, kombu.ErrNotSupported) || !strings.Contains(err.Error(), "belongs to the consumer") {
			t.Errorf("WithDeclare(queue %q): %v, want ErrNotSupported saying why", q.Name, err)
		}
	}
}

// Declarations are cached per session: a queue deleted behind the
// producer's back is not declared again until the connection is recovered
// (transports/amqp tests that), and with WithUnroutableWarning the dropped
// message is logged, once per route.
func TestUnroutableWarningOncePerRoute(t *testing.T) {
	logs := &logBuffer{}
	conn, err := kombu.Dial(context.Background(), brokerURL(t), kombu.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx := ctxT(t)
	q := kombu.Queue{Name: "work"}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("work"), kombu.WithDeclare(q), kombu.WithUnroutableWarning())
	if err := p.Publish(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Delete(ctx, conn); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.Publish(ctx, "dropped"); err != nil {
			t.Fatalf("a dropped message without WithMandatory: %v, want nil", err)
		}
	}
	other := kombu.NewProducer(conn, kombu.WithRoutingKey("elsewhere"), kombu.WithUnroutableWarning())
	if err := other.Publish(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	// Without the option, nothing is logged.
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey("quiet")).Publish(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "reached no queue"); n != 2 {
		t.Errorf("%d warnings, want one per route:\n%s", n, out)
	}
	for _, want := range []string{"routing_key=work", "routing_key=elsewhere"} {
		if !strings.Contains(out, want) {
			t.Errorf("no warning with %s:\n%s", want, out)
		}
	}
	// WithMandatory wins over the warning: the publish fails.
	err = p.Publish(ctx, "x", kombu.WithMandatory())
	if !errors.Is(err, kombu.ErrUnroutable) {
		t.Errorf("mandatory publish to a deleted queue: %v, want ErrUnroutable", err)
	}
}

// Concurrent first publishes wait for one of them to declare, and none is
// published before the queue exists.
func TestWithDeclareConcurrentFirstPublishes(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("many"), kombu.WithDeclare(kombu.Queue{Name: "many"}))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Publish(ctx, "x"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := ready(t, conn, "many"); n != 20 {
		t.Errorf("the queue holds %d messages, want 20", n)
	}
}
