//go:build unix

package filesystem_test

import (
	"context"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/filesystem"
)

// dialer opens connections to one folder of the test's own.
func dialer(t *testing.T) func(t *testing.T) transport.Conn {
	dir := t.TempDir()
	return func(t *testing.T) transport.Conn {
		t.Helper()
		u, err := transport.Parse("filesystem://" + dir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := filesystem.Driver{}.Open(context.Background(), u, transport.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func TestConformance(t *testing.T) {
	transporttest.Run(t, dialer(t), transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureFanout|
		transport.FeatureConfirms|transport.FeatureMandatory|transport.FeatureDeadLetter|transport.FeatureDelay))
}
