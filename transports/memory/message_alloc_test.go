package memory_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/alloctest"
)

// Allocation budgets per message through the public API on the in-process
// broker (see internal/alloctest for what is counted). They are today's
// counts, steady from run to run; a speed-up lowers them to what the tests
// then log. Encoding the test's order takes 1 and decoding it 7 (see
// runtime/overhead_alloc_test.go), in any program that sends it: issue 13
// allows the SDK and the broker 3 more, end to end.
const (
	// publishAllocBudget: measured 2. The SDK's 1 (the encoded body, which
	// the broker keeps as it is: transport.Publishing.BodyOwned), and the
	// broker's 1: the message with its entry in the queue, and, when the
	// queue has consumers, its delivery and the delivery's copy of the
	// body (a producer's properties, the same every time, are shared).
	publishAllocBudget = 2
	// deliverAllocBudget: measured 10. The publish's 2 (its delivery made
	// ready with it: the queue has a consumer); the consumer's 8: the
	// Message, and 7 decoding the order. 2 above encoding and decoding.
	deliverAllocBudget = 10
)

func TestPublishAllocs(t *testing.T) { alloctest.Publish(t, "memory:///alloctest", publishAllocBudget) }

func TestDeliverAllocs(t *testing.T) { alloctest.Deliver(t, "memory:///alloctest", deliverAllocBudget) }
