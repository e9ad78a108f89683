package redis_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/alloctest"
	"github.com/kombu-go/kombu/internal/brokertest"
)

// Allocation budgets per message through the public API on Redis (see
// internal/alloctest for what is counted). A speed-up lowers them to what
// the tests then log.
const (
	// publishAllocBudget: measured 28 in each of 75 runs while every
	// routed publish ran the publish script through a pipeline; 13 since a
	// watched route is a plain LPUSH and one message skips the pipeline
	// (publish.go): the SDK's 1 (the encoded body), the Kombu envelope,
	// and go-redis's command.
	publishAllocBudget = 13
	// deliverAllocBudget: measured 164 to 196 over 75 runs, the only
	// budget that moves from run to run; 174 to 202 since takes write a
	// receipt (receipt.go: the take number and receipt key ride along as
	// two more arguments), on a machine loaded by other test runs, taking
	// the fewest of three rounds (alloctest.measure). The low end is a
	// message whose wake-up finds it waiting; about 31 more (the take
	// script's round trip, and the client-tracking invalidation it causes)
	// come with a take that finds the queue empty, which a consumer woken
	// by its own take's invalidation makes after some messages or after
	// nearly every one, depending on timing. The budget is the top of that
	// range and 4 more; a consumer that stops taking in vain would make the
	// count steady and let the budget fall to about 170.
	deliverAllocBudget = 206
)

func TestPublishAllocs(t *testing.T) {
	alloctest.Publish(t, brokertest.RedisURL(t), publishAllocBudget)
}

func TestDeliverAllocs(t *testing.T) {
	alloctest.Deliver(t, brokertest.RedisURL(t), deliverAllocBudget)
}
