package amqp_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// returned collects what the driver reports to Config.Unroutable.
type returned struct {
	mu   sync.Mutex
	keys []string
}

func (r *returned) report(_, routingKey, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, routingKey)
}

func (r *returned) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

// A NotifyUnroutable message that reaches no queue is reported when the
// broker returns it, with confirms and without, while Publish succeeds; a
// routed one is not reported, and a mandatory one still fails.
func TestNotifyUnroutable(t *testing.T) {
	var r returned
	c, err := tryOpen(t, transport.Config{Unroutable: r.report})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := ctxT(t)
	ex := exchange(t, c, transport.ExchangeDirect)
	q := queue(t, c, "q", nil)
	transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: q, RoutingKey: "routed"})

	for _, p := range []*transport.Publishing{
		{Exchange: ex, RoutingKey: "routed", NotifyUnroutable: true, Confirm: true},
		{Exchange: ex, RoutingKey: "dropped-confirmed", NotifyUnroutable: true, Confirm: true},
		{Exchange: ex, RoutingKey: "routed", NotifyUnroutable: true},
		{Exchange: ex, RoutingKey: "dropped-unconfirmed", NotifyUnroutable: true},
		{Exchange: ex, RoutingKey: "dropped-quietly", Confirm: true},
	} {
		if err := c.Publish(ctx, p); err != nil {
			t.Fatalf("publish with key %s: %v", p.RoutingKey, err)
		}
	}
	err = c.Publish(ctx, &transport.Publishing{Exchange: ex, RoutingKey: "dropped-mandatory", Mandatory: true, NotifyUnroutable: true, Confirm: true})
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("mandatory publish: %v, want ErrUnroutable", err)
	}
	transporttest.Eventually(t, "both returns reported", func() bool { return len(r.get()) >= 2 })
	// The confirmed and unconfirmed messages go on channels of their own, so
	// their returns may come in either order.
	got := r.get()
	if len(got) != 2 || !slices.Contains(got, "dropped-confirmed") || !slices.Contains(got, "dropped-unconfirmed") {
		t.Errorf("reported %q, want dropped-confirmed and dropped-unconfirmed", got)
	}
	transporttest.Eventually(t, "the routed messages", func() bool { return ready(t, c, q) == 2 })
}

// A producer declares its WithDeclare entities again on the session that
// replaces a lost one: a queue lost with the old session (deleted here, as
// a restarted broker loses a transient queue) is back before the next
// publish.
func TestWithDeclareAfterRecovery(t *testing.T) {
	connName := name(t, "conn")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dialRecovering(t, ctx, connName)
	q := kombu.Queue{Name: name(t, "q"), Transient: true, Expires: time.Minute}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name), kombu.WithDeclare(q))
	if err := p.Publish(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Delete(ctx, conn); err != nil {
		t.Fatal(err)
	}
	revived := conn.Revived()
	rabbitmqctl(t, "close_connection", connectionPID(t, connName), "test kills it")
	select {
	case <-revived:
	case <-ctx.Done():
		t.Fatal("the connection did not come back")
	}
	if err := p.Publish(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	msg, err := q.Get(ctx, conn, kombu.WithAutoAck())
	if err != nil {
		t.Fatalf("get after recovery: %v (the queue was not declared again)", err)
	}
	if string(msg.Body) != "after" {
		t.Errorf("got %q, want after", msg.Body)
	}
	_, _ = q.Delete(context.Background(), conn)
}
