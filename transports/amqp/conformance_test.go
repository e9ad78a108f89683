package amqp_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestConformance runs the driver contract against the test RabbitMQ.
func TestConformance(t *testing.T) {
	t.Parallel()
	brokertest.AMQPURL(t) // skips, or fails, without a broker
	all := transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout | transport.FeatureHeaders |
		transport.FeatureExchangeBindings | transport.FeaturePriority | transport.FeatureTTL | transport.FeatureDeadLetter |
		transport.FeatureMaxLength | transport.FeatureConfirms | transport.FeatureMandatory | transport.FeatureQueueTypes |
		transport.FeatureDirectReplyTo | transport.FeatureDelay
	// Delayed messages go through a topology of the test's own (quorum,
	// the default), deleted afterwards.
	url, _ := delayURL(t, "quorum")
	transporttest.Run(t, func(t *testing.T) transport.Conn {
		c, err := tryOpen(t, transport.Config{}, url)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return c
	}, transporttest.WithFeatures(all))
}
