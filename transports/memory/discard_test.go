package memory_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/memory"
)

// A discarded broker is forgotten: the next connection to its URL gets an
// empty one, while a connection still open keeps the old one.
func TestDiscard(t *testing.T) {
	path := brokerPath(t)
	old := dial(t)
	transporttest.DeclareQueue(t, old, transport.Queue{Name: "q"})
	send(t, old, "q", "kept")
	memory.Discard(strings.TrimPrefix(path, "/"))
	fresh := dial(t)
	if _, err := fresh.DeclareQueue(context.Background(), transport.Queue{Name: "q", Passive: true}); err == nil {
		t.Fatal("the broker after Discard still has the old queue")
	}
	if got := drain(t, old, "q"); len(got) != 1 || got[0] != "kept" {
		t.Fatalf("the open connection's broker holds %q, want [kept]", got)
	}
}
