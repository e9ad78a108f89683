package azurequeues_test

import (
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestConformance(t *testing.T) {
	a := startAzurite(t)
	raw := a.url("?polling_interval=0.01")
	transporttest.Run(t, func(t *testing.T) transport.Conn { return open(t, raw) },
		transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureFanout|
			transport.FeatureConfirms|transport.FeatureMandatory|transport.FeatureDeadLetter))
}
