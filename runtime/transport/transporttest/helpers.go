package transporttest

import (
	"context"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Helpers for a driver's own tests (Kombu layouts, interop, recovery: what
// Run does not cover). Each bounds its call by DefaultTimeout and fails t
// on error.

func callContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), DefaultTimeout)
}

// DeclareQueue declares q on c and returns what the broker reported.
func DeclareQueue(t testing.TB, c transport.Conn, q transport.Queue) transport.QueueInfo {
	t.Helper()
	ctx, cancel := callContext()
	defer cancel()
	info, err := c.DeclareQueue(ctx, q)
	if err != nil {
		t.Fatalf("declare queue %q: %v", q.Name, err)
	}
	return info
}

// DeclareExchange declares ex on c.
func DeclareExchange(t testing.TB, c transport.Conn, ex transport.Exchange) {
	t.Helper()
	ctx, cancel := callContext()
	defer cancel()
	if err := c.DeclareExchange(ctx, ex); err != nil {
		t.Fatalf("declare exchange %q: %v", ex.Name, err)
	}
}

// Bind binds on c.
func Bind(t testing.TB, c transport.Conn, b transport.Binding) {
	t.Helper()
	ctx, cancel := callContext()
	defer cancel()
	if err := c.Bind(ctx, b); err != nil {
		t.Fatalf("bind %q to %q with key %q: %v", b.Destination, b.Source, b.RoutingKey, err)
	}
}

// Publish publishes p on c.
func Publish(t testing.TB, c transport.Conn, p *transport.Publishing) {
	t.Helper()
	ctx, cancel := callContext()
	defer cancel()
	if err := c.Publish(ctx, p); err != nil {
		t.Fatalf("publish to exchange %q with routing key %q: %v", p.Exchange, p.RoutingKey, err)
	}
}

// Eventually polls cond every few milliseconds until it holds, and fails t
// if it does not within DefaultTimeout. It is for what brokers do on their
// own time (expiry, restores, broadcasts); the check must not depend on
// how fast that is.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(DefaultTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", DefaultTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
