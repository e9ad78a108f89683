package nats_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/alloctest"
)

// Allocation budgets per message through the public API on NATS (see
// internal/alloctest for what is counted), on the shared server. A
// speed-up lowers them to what the tests then log.
const (
	// publishAllocBudget: measured 28 with jetstream.WithExpectStream on
	// every publish, 23 with the header made once per stream and shared,
	// 20 since a queue whose stream is known publishes without it
	// (store.go's known): the SDK's encoded body, the Kombu envelope, and
	// nats.go's JetStream request and ack.
	publishAllocBudget = 20
	// deliverAllocBudget (the publish included): measured 112, then 107,
	// then 88 in each of three runs once the stored messages carry no
	// header for every consumer to decode, 85 in each of three runs since
	// the envelope decoder keeps the body and every string in one arena
	// (virtual's envfast.go); 2 over, as a delivery's count can move with
	// the timing of the wake-up and the pull.
	deliverAllocBudget = 87
)

func TestPublishAllocs(t *testing.T) {
	e := newEnv(t)
	alloctest.Publish(t, e.url(""), publishAllocBudget)
}

func TestDeliverAllocs(t *testing.T) {
	e := newEnv(t)
	alloctest.Deliver(t, e.url(""), deliverAllocBudget)
}
