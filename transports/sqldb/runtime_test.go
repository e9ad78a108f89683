package sqldb_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/consumertest"
	"github.com/kombu-go/kombu/internal/simpletest"
)

// The runtime's own contracts (SimpleQueue, SimpleBuffer, producer pools,
// consumer shutdown, dead-letter reasons), held on each database by the
// same checks as on the other transports.

func TestSimpleQueueAndPools(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) { simpletest.Run(t, db.url()) })
}

func TestConsumerShutdown(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) { consumertest.Shutdown(t, db.url()) })
}

func TestDeadLetterReason(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) { consumertest.DeadLetterReason(t, db.url(), false) })
}
