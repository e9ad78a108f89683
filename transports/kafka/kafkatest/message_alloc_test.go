package kafkatest

import (
	"testing"

	"github.com/kombu-go/kombu/internal/alloctest"
)

// Allocation budgets per message through the public API on Kafka (see
// internal/alloctest for what is counted), on a kfake cluster of one
// broker in this process: its own work counts too. A speed-up lowers them
// to what the tests then log.
const (
	// publishAllocBudget: measured 63 before and after this budget came
	// (a confirmed publish is one ProduceSync): the SDK's encoded body,
	// the Kombu envelope, franz-go's produce and kfake's handling of it.
	publishAllocBudget = 63
	// deliverAllocBudget (the publish included): measured 249 while every
	// ack made a commit, 160 since acks coalesce into a commit at most
	// every commit_interval or commit_every acks (group.go's commits),
	// whose share per message moves a little with timing; 157 in each of
	// three runs since the envelope decoder keeps the body and every
	// string in one arena (virtual's envfast.go): 3 over.
	deliverAllocBudget = 160
)

func TestPublishAllocs(t *testing.T) {
	alloctest.Publish(t, url(startCluster(t, 1), ""), publishAllocBudget)
}

func TestDeliverAllocs(t *testing.T) {
	alloctest.Deliver(t, url(startCluster(t, 1), ""), deliverAllocBudget)
}
