package memory_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	_ "github.com/kombu-go/kombu/transports/memory"
)

var conformanceRuns atomic.Int64

// TestConformance runs the driver contract against a broker of its own,
// through the driver registered for the memory scheme.
func TestConformance(t *testing.T) {
	driver, ok := transport.Lookup("memory")
	if !ok {
		t.Fatal("no driver registered for memory://")
	}
	raw := fmt.Sprintf("memory:///conformance-%d", conformanceRuns.Add(1))
	all := transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout | transport.FeatureHeaders |
		transport.FeatureExchangeBindings | transport.FeaturePriority | transport.FeatureTTL | transport.FeatureDeadLetter |
		transport.FeatureMaxLength | transport.FeatureConfirms | transport.FeatureMandatory | transport.FeatureDelay
	transporttest.Run(t, func(t *testing.T) transport.Conn {
		u, err := transport.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		c, err := driver.Open(context.Background(), u, transport.Config{})
		if err != nil {
			t.Fatalf("open %s: %v", raw, err)
		}
		return c
	}, transporttest.WithFeatures(all))
}
