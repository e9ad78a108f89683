package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/memory"
)

// TestDelayLateness measures how late delayed messages arrive.
func TestDelayLateness(t *testing.T) {
	if testing.Short() {
		t.Skip("takes several seconds")
	}
	u, _ := transport.Parse("memory:///" + t.Name())
	t.Cleanup(func() { memory.Discard(t.Name()) })
	c, err := memory.Driver{}.Open(context.Background(), u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DeclareQueue(context.Background(), transport.Queue{Name: "work"}); err != nil {
		t.Fatal(err)
	}
	p50, p99, worst := transporttest.Lateness(transporttest.DelayLateness(t, c, "work", 40))
	t.Logf("memory: 40 messages delayed 1-3.9 s: lateness p50 %v p99 %v max %v", p50, p99, worst)
	if worst > time.Second {
		t.Errorf("a message arrived %v late, want within a second", worst)
	}
}
