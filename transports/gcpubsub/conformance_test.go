package gcpubsub_test

import (
	"context"
	"testing"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/gcpubsub"
)

// startServer starts pstest, the fake Pub/Sub server the client's authors
// ship, in process, and returns its address.
func startServer(t testing.TB) (*pstest.Server, string) {
	t.Helper()
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, srv.Addr
}

// open opens a connection to the server's project.
func open(t testing.TB, addr, query string) transport.Conn {
	t.Helper()
	u, err := transport.Parse("gcpubsub://projects/kombu-test?emulator_host=" + addr + query)
	if err != nil {
		t.Fatal(err)
	}
	c, err := gcpubsub.Driver{}.Open(context.Background(), u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	_, addr := startServer(t)
	transporttest.Run(t, func(t *testing.T) transport.Conn { return open(t, addr, "&polling_interval=0.01") },
		transporttest.WithUnordered(), transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureFanout|transport.FeatureConfirms|transport.FeatureDeadLetter))
}
