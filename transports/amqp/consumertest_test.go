package amqp_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/consumertest"
)

func TestShutdownNeverDeadLettersOrStrands(t *testing.T) {
	consumertest.Shutdown(t, brokertest.AMQPURL(t))
}

// RabbitMQ dead-letters in the broker: x-death, and no error text but what
// WithMessageRetry's copies carry.
func TestDeadLetterSaysWhy(t *testing.T) {
	consumertest.DeadLetterReason(t, brokertest.AMQPURL(t), true)
}

func TestDefaultPrefetchFitsTheHandlers(t *testing.T) {
	consumertest.Prefetch(t, brokertest.AMQPURL(t))
}
