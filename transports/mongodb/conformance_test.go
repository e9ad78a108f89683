package mongodb_test

import (
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestConformance(t *testing.T) {
	s := ferret(t)
	transporttest.Run(t, func(t *testing.T) transport.Conn { return s.open(t, "conformance", "") },
		transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureFanout|
			transport.FeatureConfirms|transport.FeatureMandatory|transport.FeatureDeadLetter))
}
