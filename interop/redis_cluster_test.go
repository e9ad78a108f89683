package interop_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Python Kombu and Go on a Redis Cluster, in the Kombu-compatible mode:
// both use global_keyprefix "{tag}:", so every key is in the slot of "tag".
// Kombu 5.2's redis transport has no cluster client: it is given a plain
// redis:// URL of the master that owns that slot, where every key it
// touches lives (any other node would answer MOVED). Go dials the cluster
// with redis+cluster:// and follows the slot wherever it moves.
func newRedisClusterEnv(t *testing.T) *redisEnv {
	t.Helper()
	requirePython(t)
	if out, err := exec.Command(python, "-c", "import redis").CombinedOutput(); err != nil {
		brokertest.Unavailable(t, "Python's redis client not available: "+string(bytes.TrimSpace(out)))
	}
	cl := brokertest.StartRedisCluster(t, 3, 0)
	prefix := "{kgi-cluster}:"
	owner := cl.MasterOf(prefix)
	// The owner must not be the first node, else Go would pass even if
	// it only spoke to the node it was given first.
	addrs := cl.Addrs()
	for i, a := range addrs {
		if strings.HasSuffix(a, fmt.Sprintf(":%d", owner)) {
			addrs[0], addrs[i] = addrs[i], addrs[0]
			addrs = append(addrs[1:], addrs[0])
			break
		}
	}
	raw := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", owner), Protocol: 2})
	t.Cleanup(func() { raw.Close() })
	return &redisEnv{
		t:    t,
		base: fmt.Sprintf("redis://127.0.0.1:%d/0", owner),
		// Python Kombu reads only the kombu mode's layout.
		goBase: "redis+cluster://" + strings.Join(addrs, ",") + "/?cluster_mode=kombu",
		prefix: prefix,
		raw:    raw,
	}
}

func TestRedisClusterKombuPublishesGoConsumes(t *testing.T) {
	e := newRedisClusterEnv(t)
	conn := e.dial()
	col := runConsumer(t, conn, []kombu.Queue{
		{Name: "cx.orders", Bindings: []kombu.Binding{{Exchange: "cx.direct", RoutingKey: "order.placed"}}},
	}, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{{Name: "cx.direct"}}}))
	body := map[string]any{"order_id": "A-1"}
	e.pyPublish([]map[string]any{
		{"body": body, "exchange": "cx.direct", "routing_key": "order.placed", "serializer": "json"},
		{"body": body, "exchange": "cx.direct", "routing_key": "order.placed", "serializer": "json", "priority": 6},
	})
	msgs := col.wait(t, 2)
	for i, m := range msgs {
		var got map[string]any
		if err := m.Decode(&got); err != nil || !reflect.DeepEqual(got, body) {
			t.Errorf("message %d decoded %v, %v", i, got, err)
		}
	}
	if msgs[1].Properties.Priority != 6 {
		t.Errorf("second message priority %d", msgs[1].Properties.Priority)
	}
	// Everything is under the tag, on the owner.
	for _, k := range e.keys("") {
		if !strings.HasPrefix(k, e.prefix) {
			t.Errorf("key %q outside the hash tag", k)
		}
	}
}

func TestRedisClusterGoPublishesKombuConsumes(t *testing.T) {
	e := newRedisClusterEnv(t)
	// Kombu declares the topology; Go routes by the bindings Kombu wrote.
	e.peer("declare", map[string]any{
		"exchanges": []map[string]any{{"name": "cg.topic", "type": "topic"}},
		"queues": []map[string]any{{"name": "cg.q", "bindings": []map[string]any{
			{"exchange": "cg.topic", "type": "topic", "routing_key": "parcel.#"},
		}}},
	}, "--transport-options", e.pyOptions())
	conn := e.dial()
	ctx := context.Background()
	p := kombu.NewProducer(conn, kombu.WithExchange(kombu.Exchange{Name: "cg.topic", Type: kombu.ExchangeTopic}))
	for i := range 3 {
		if err := p.Publish(ctx, map[string]any{"n": i}, kombu.WithRoutingKey("parcel.shipped")); err != nil {
			t.Fatal(err)
		}
	}
	got := e.pyConsume("cg.q", 3)
	for i, m := range got {
		if string(m.Body) != fmt.Sprintf(`{"n": %d}`, i) && string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("Kombu got %s, want n=%d", m.Body, i)
		}
		if m.DeliveryInfo["exchange"] != "cg.topic" {
			t.Errorf("delivery info %v", m.DeliveryInfo)
		}
	}
	// Kombu acked them: nothing left unacked.
	if n, err := e.raw.HLen(ctx, e.prefix+"unacked").Result(); err != nil || n != 0 {
		t.Errorf("unacked holds %d (%v)", n, err)
	}
}
