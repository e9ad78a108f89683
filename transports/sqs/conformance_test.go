package sqs_test

import (
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestConformance(t *testing.T) {
	g := startGoaws(t)
	transporttest.Run(t, func(t *testing.T) transport.Conn { return g.open(t, "") },
		transporttest.WithTimeout(3*testVisibility*1e9),
		transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureFanout|
			transport.FeatureConfirms|transport.FeatureMandatory|transport.FeatureDeadLetter))
}
