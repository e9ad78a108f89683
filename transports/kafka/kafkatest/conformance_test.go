package kafkatest

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/kafka"
)

// startCluster starts a kfake cluster of n brokers in process.
func startCluster(t testing.TB, n int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(n)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// url is a kafka URL naming the cluster's first broker, with the others
// as extra seeds.
func url(c *kfake.Cluster, query string) string {
	addrs := c.ListenAddrs()
	u := "kafka://" + addrs[0] + "?brokers=" + strings.Join(addrs[1:], ",")
	if query != "" {
		u += "&" + query
	}
	return u
}

func open(t testing.TB, raw string) transport.Conn {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var cfg transport.Config
	if os.Getenv("KAFKA_TEST_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := kafka.Driver{}.Open(context.Background(), u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	c := startCluster(t, 3)
	raw := url(c, "polling_interval=0.05")
	transporttest.Run(t, func(t *testing.T) transport.Conn { return open(t, raw) },
		transporttest.WithFeatures(transport.FeatureDirect|transport.FeatureTopic|transport.FeatureConfirms|
			transport.FeatureMandatory|transport.FeatureDeadLetter))
}
