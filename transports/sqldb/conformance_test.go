package sqldb_test

import (
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// The whole driver contract, on each database, in tables of the test's
// own.
func TestConformance(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		url := db.url()
		transporttest.Run(t, func(t *testing.T) transport.Conn { return open(t, url) },
			transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureFanout|
				transport.FeatureConfirms|transport.FeatureMandatory|transport.FeatureDeadLetter|transport.FeatureDelay))
	})
}
