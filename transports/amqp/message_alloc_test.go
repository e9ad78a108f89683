package amqp_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/alloctest"
	"github.com/kombu-go/kombu/internal/brokertest"
)

// Allocation budgets per message through the public API on RabbitMQ (see
// internal/alloctest for what is counted). They are today's counts, the
// same in every one of 40 runs; a speed-up lowers them to what the tests
// then log.
const (
	// publishAllocBudget: measured 44, a confirmed publish. The SDK's 1
	// (the encoded body); nearly all the rest is amqp091-go's: encoding the
	// method, header and body frames (bytes.Buffer, encoding/binary), the
	// deferred confirmation, and reading the broker's basic.ack.
	publishAllocBudget = 44
	// deliverAllocBudget: measured 102: the publish's 44, amqp091-go's
	// reading of the delivery's frames and writing of the ack, the driver's
	// delivery, and the consumer's 8 (the Message, and 7 decoding the
	// order).
	deliverAllocBudget = 102
)

func TestPublishAllocs(t *testing.T) { alloctest.Publish(t, brokertest.AMQPURL(t), publishAllocBudget) }

func TestDeliverAllocs(t *testing.T) { alloctest.Deliver(t, brokertest.AMQPURL(t), deliverAllocBudget) }
