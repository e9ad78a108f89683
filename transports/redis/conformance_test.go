package redis_test

import (
	"context"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// TestConformance runs the driver contract against the test Redis, under a
// key prefix of its own (which also keeps the unacked hash to itself).
func TestConformance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	runConformance(t, e.url())
}

// runConformance runs the driver contract on connections to raw.
func runConformance(t *testing.T, raw string) {
	runConformanceWith(t, raw, transport.FeatureDeadLetter|transport.FeatureDelay)
}

// runConformanceWith runs it with the features every mode has and extra.
func runConformanceWith(t *testing.T, raw string, extra transport.Features) {
	all := transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout | transport.FeaturePriority |
		transport.FeatureConfirms | transport.FeatureMandatory | extra
	transporttest.Run(t, func(t *testing.T) transport.Conn {
		u, err := transport.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), transporttest.DefaultTimeout)
		defer cancel()
		c, err := kredis.Driver{}.Open(ctx, u, transport.Config{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return c
	}, transporttest.WithFeatures(all), transporttest.WithLowestPriorityFirst())
}
