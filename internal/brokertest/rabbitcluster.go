package brokertest

import (
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// DefaultAMQPClusterURL is the ";"-separated URL list of the three-node
// RabbitMQ cluster scripts/rabbitmq-cluster.sh starts (kc1..kc3@localhost).
const DefaultAMQPClusterURL = "amqp://guest:guest@127.0.0.1:5681//;amqp://guest:guest@127.0.0.1:5682//;amqp://guest:guest@127.0.0.1:5683//"

// DefaultAMQPClusterNodes are the Erlang node names of that cluster, in the
// order of its URLs (rabbitmqctl -n NODE). KOMBU_TEST_AMQP_CLUSTER_NODES
// overrides them, ";"-separated.
var DefaultAMQPClusterNodes = []string{"kc1@localhost", "kc2@localhost", "kc3@localhost"}

// AMQPCluster is a RabbitMQ cluster the tests may use.
type AMQPCluster struct {
	URLs  []string // one AMQP URL per node
	Nodes []string // the nodes' Erlang names, in the order of URLs
}

// List returns the URLs as kombu.Dial takes them, ";"-separated.
func (c *AMQPCluster) List() string { return strings.Join(c.URLs, ";") }

// AMQPClusterURLs returns the RabbitMQ cluster the tests use
// (KOMBU_TEST_AMQP_CLUSTER_URL, a ";"-separated list, or the one
// scripts/rabbitmq-cluster.sh starts), after checking that every node
// accepts TCP connections: a test that stops nodes needs them all up to
// begin with. Without them it skips, or fails under KOMBU_REQUIRE_BROKERS=1
// (.ci/run starts the cluster first).
func AMQPClusterURLs(t testing.TB) *AMQPCluster {
	t.Helper()
	raw := os.Getenv("KOMBU_TEST_AMQP_CLUSTER_URL")
	if raw == "" {
		raw = DefaultAMQPClusterURL
	}
	c := &AMQPCluster{URLs: strings.Split(raw, ";"), Nodes: DefaultAMQPClusterNodes}
	if nodes := os.Getenv("KOMBU_TEST_AMQP_CLUSTER_NODES"); nodes != "" {
		c.Nodes = strings.Split(nodes, ";")
	}
	for _, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("KOMBU_TEST_AMQP_CLUSTER_URL: %q: %v", s, err)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "5672")
		}
		conn, err := net.DialTimeout("tcp", host, 2*time.Second)
		if err != nil {
			Unavailable(t, "RabbitMQ cluster node not reachable at "+host+" (start it with scripts/rabbitmq-cluster.sh up): "+err.Error())
			return nil
		}
		conn.Close()
	}
	return c
}
