package amqp_test

// Tests against the three-node RabbitMQ cluster of scripts/rabbitmq-cluster.sh
// (brokertest.AMQPClusterURLs): the conformance suite with connections spread
// over the nodes, quorum queues and streams reached through other nodes than
// their leader's, and a URL list whose first nodes are down. The fault tests
// (a node stopped, a node cut off, the whole cluster restarted) are chaos/'s.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// clusterCtl runs rabbitmqctl against one of the cluster's nodes.
func clusterCtl(t *testing.T, node string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		brokertest.Unavailable(t, "rabbitmqctl not on PATH")
	}
	out, err := exec.Command("rabbitmqctl", append([]string{"-n", node}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl -n %s %s: %v\n%s", node, strings.Join(args, " "), err, out)
	}
	return out
}

// openNode opens a transport connection to one node of the cluster, closed
// when the test ends.
func openNode(t *testing.T, raw string) transport.Conn {
	t.Helper()
	c, err := tryOpen(t, transport.Config{}, raw)
	if err != nil {
		t.Fatalf("open %s: %v", raw, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClusterConformance runs the driver contract against the cluster, each
// connection on the next node: what one connection declares and publishes,
// another reads through a different node, so the contract holds across the
// cluster and not only on one node. Delayed messages go through a quorum
// delay topology of the test's own, replicated over the three nodes.
//
// It does not run in parallel with the package's other tests: the Delay
// checks time publishes through quorum queues replicated over three nodes,
// and on a busy two-core machine the package's parallel tests beside it
// delayed a publish past a check's one-second margin.
func TestClusterConformance(t *testing.T) {
	cl := brokertest.AMQPClusterURLs(t)
	var b [4]byte
	rand.Read(b[:])
	prefix := "kgotest" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		c, err := tryOpen(t, transport.Config{}, cl.URLs[0])
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer c.Close()
		ctx := context.Background()
		for _, what := range []string{"list_queues", "list_exchanges"} {
			for _, line := range strings.Split(string(clusterCtl(t, cl.Nodes[0], "-q", what, "name")), "\n") {
				name := strings.TrimSpace(line)
				if !strings.HasPrefix(name, prefix+"_") {
					continue
				}
				var err error
				if what == "list_queues" {
					_, err = c.DeleteQueue(ctx, name, false, false)
				} else {
					err = c.DeleteExchange(ctx, name, false)
				}
				if err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
		}
	})
	all := transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout | transport.FeatureHeaders |
		transport.FeatureExchangeBindings | transport.FeaturePriority | transport.FeatureTTL | transport.FeatureDeadLetter |
		transport.FeatureMaxLength | transport.FeatureConfirms | transport.FeatureMandatory | transport.FeatureQueueTypes |
		transport.FeatureDirectReplyTo | transport.FeatureDelay
	// The first delayed publish declares the delay topology: 28 quorum
	// queues, each a Raft group over three nodes, which takes seconds. The
	// Delay checks time a publish of a second or two, so the topology is
	// declared before they start.
	warm := openNode(t, cl.URLs[0]+"?native_delayed_delivery_queue_type=quorum&native_delayed_delivery_prefix="+prefix)
	wq := queue(t, warm, "warmup", nil)
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	if err := warm.Publish(wctx, &transport.Publishing{RoutingKey: wq, Delay: time.Second, Confirm: true, Body: []byte("warm-up")}); err != nil {
		t.Fatalf("declaring the delay topology: %v", err)
	}
	t.Logf("delay topology (28 quorum queues) declared in %v", time.Since(began).Round(time.Millisecond))
	var next atomic.Uint64
	transporttest.Run(t, func(t *testing.T) transport.Conn {
		raw := cl.URLs[int(next.Add(1)-1)%len(cl.URLs)]
		raw += "?native_delayed_delivery_queue_type=quorum&native_delayed_delivery_prefix=" + prefix
		c, err := tryOpen(t, transport.Config{}, raw)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return c
	}, transporttest.WithFeatures(all))
}

// TestClusterQuorumQueue declares a quorum queue through one node, publishes
// to it with confirms through a second and consumes through the third: the
// queue is replicated on all three, its leader on the first.
func TestClusterQuorumQueue(t *testing.T) {
	t.Parallel()
	cl := brokertest.AMQPClusterURLs(t)
	c1, c2, c3 := openNode(t, cl.URLs[0]), openNode(t, cl.URLs[1]), openNode(t, cl.URLs[2])
	q := name(t, "quorum")
	transporttest.DeclareQueue(t, c1, transport.Queue{Name: q, Durable: true, Arguments: map[string]any{"x-queue-type": "quorum"}})
	t.Cleanup(func() { _, _ = c1.DeleteQueue(context.Background(), q, false, false) })

	// The queue has a member on every node.
	members := string(clusterCtl(t, cl.Nodes[0], "-q", "list_queues", "name", "members"))
	for _, line := range strings.Split(members, "\n") {
		if strings.HasPrefix(line, q+"\t") {
			for _, n := range cl.Nodes {
				if !strings.Contains(line, n) {
					t.Errorf("quorum queue members %q lack node %s", line, n)
				}
			}
		}
	}

	const n = 20
	for i := range n {
		transporttest.Publish(t, c2, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte(strconv.Itoa(i))})
	}
	sub, err := c3.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 5})
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	for i := range n {
		d := receive(t, sub)
		if got := string(d.Body); got != strconv.Itoa(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
}

// TestClusterStream reads a stream through another node than its leader's,
// from the offsets a consumer names with x-stream-offset: "first" reads
// every message, a number starts at that offset, and reading again starts
// over (a stream keeps what was read).
func TestClusterStream(t *testing.T) {
	t.Parallel()
	cl := brokertest.AMQPClusterURLs(t)
	c1, c2 := openNode(t, cl.URLs[0]), openNode(t, cl.URLs[1])
	q := name(t, "stream")
	transporttest.DeclareQueue(t, c1, transport.Queue{Name: q, Durable: true, Arguments: map[string]any{"x-queue-type": "stream"}})
	t.Cleanup(func() { _, _ = c1.DeleteQueue(context.Background(), q, false, false) })
	const n = 10
	for i := range n {
		transporttest.Publish(t, c1, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte(strconv.Itoa(i))})
	}
	read := func(offset any, from int) {
		t.Helper()
		// Streams need a prefetch and manual acknowledgements.
		sub, err := c2.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 4,
			Arguments: map[string]any{"x-stream-offset": offset}})
		if err != nil {
			t.Fatalf("consume from offset %v: %v", offset, err)
		}
		defer sub.Cancel(context.Background())
		for i := from; i < n; i++ {
			d := receive(t, sub)
			if got := string(d.Body); got != strconv.Itoa(i) {
				t.Fatalf("offset %v: message %d: got %q", offset, i, got)
			}
			if off, ok := d.Headers["x-stream-offset"]; !ok || fmt.Sprint(off) != strconv.Itoa(i) {
				t.Errorf("offset %v: message %d has x-stream-offset %v", offset, i, off)
			}
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
	}
	read("first", 0)
	read(int64(6), 6)
	read("first", 0) // reading does not consume
}

// TestClusterSomeNodesDown dials a URL list whose first two entries answer
// nothing (a node that is down at start): Dial connects to the one that
// is up, and the connection works.
func TestClusterSomeNodesDown(t *testing.T) {
	t.Parallel()
	cl := brokertest.AMQPClusterURLs(t)
	down := func() string {
		// A port nobody listens on: taken and released again.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "amqp://guest:guest@" + ln.Addr().String() + "//"
	}
	list := down() + ";" + down() + ";" + cl.URLs[2]
	conn, err := kombu.Dial(ctxT(t), list, kombu.WithConnectTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("dial %s: %v", list, err)
	}
	defer conn.Close()
	up, _ := url.Parse(cl.URLs[2])
	if got := conn.URL(); !strings.Contains(got, up.Host) {
		t.Errorf("connected to %s, want the node that is up (%s)", got, up.Host)
	}
	q := kombu.Queue{Name: name(t, "somedown"), Type: kombu.QueueQuorum}
	if _, err := q.Declare(ctxT(t), conn); err != nil {
		t.Fatalf("declare: %v", err)
	}
	defer q.Delete(context.Background(), conn)
}

// receive waits for the subscription's next delivery.
func receive(t *testing.T, sub transport.Subscription) *transport.Delivery {
	t.Helper()
	select {
	case d, ok := <-sub.Deliveries():
		if !ok {
			t.Fatalf("subscription ended: %v", sub.Err())
		}
		return d
	case <-ctxT(t).Done():
		t.Fatal("no delivery within the test's wait")
	}
	return nil
}
