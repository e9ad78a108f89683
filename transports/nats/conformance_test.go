package nats_test

import (
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestConformance(t *testing.T) {
	e := newEnv(t)
	transporttest.Run(t, func(t *testing.T) transport.Conn { return e.open(t, "&polling_interval=0.02") },
		transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureFanout|
			transport.FeatureConfirms|transport.FeatureMandatory|transport.FeatureDeadLetter|transport.FeatureLivePrefetch))
}
