package redis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// The driver contract on a real Redis Cluster (3 masters), in the
// Kombu-compatible mode: every key under one hash tag.
func TestClusterConformance(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	runConformance(t, cl.URL("cluster_mode=kombu&global_keyprefix={kgt-conformance}:"))
}

// Cluster URLs: the nodes, the hash tag the layout needs, database 0.
func TestClusterURLs(t *testing.T) {
	for _, tc := range []struct {
		raw, want string // want: "" for valid, else a part of the error
	}{
		{"redis+cluster://h1:7000,h2:7001,h3", ""},
		{"redis+cluster://u:p@h1:7000,h2:7001/0?global_keyprefix={app}:", ""},
		{"redis+cluster://h1:7000?global_keyprefix=app:", ""}, // sharded
		{"redis+cluster://h1:7000?cluster_mode=kombu&global_keyprefix=app:", "no hash tag"},
		{"redis+cluster://h1:7000?global_keyprefix={}app", "holds a brace"},
		{"redis+cluster://h1:7000?cluster_mode=sharded&global_keyprefix={app}:", "holds a brace"},
		{"redis+cluster://h1:7000/2", "database 0 only"},
		{"redis+cluster://u:secret@h1:7000,h2/2", "database 0 only"},
		{"redis+cluster://u:secret@h1:7000,h2/?cluster_mode=kombu&global_keyprefix=x", "no hash tag"},
		{"redis+cluster:///", "at least one node"},
		{"redis+cluster://h1:7000?cluster_mode=sharded", ""},
		{"redis+cluster://h1:7000?cluster_mode=kombu", ""},
		{"redis+cluster://h1:7000?cluster_mode=other", "want sharded or kombu"},
		{"redis://h1?cluster_mode=kombu", "redis+cluster:// URLs"},
		{"redis+cluster://h1:7000?master_name=m", "sentinel"},
	} {
		u, err := transport.Parse(tc.raw)
		if err == nil {
			_, err = kredis.ParseOptionsForTest(u)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.want != "" && (err == nil || !errors.Is(err, transport.ErrInvalidURL) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want ErrInvalidURL saying %q", tc.raw, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "secret"):
			t.Errorf("%s: the error shows the password: %v", tc.raw, err)
		}
	}
	// The mode: sharded by default, kombu when asked for or when
	// global_keyprefix holds a hash tag (as before the sharded mode).
	for raw, want := range map[string]string{
		"redis+cluster://u:secret@h1:7000,h2/?socket_timeout=2":                    "[h1:7000 h2:6379] u secret  true",
		"redis+cluster://h1:7000?cluster_mode=kombu":                               "[h1:7000]   {kombu}: false",
		"redis+cluster://h1:7000?global_keyprefix={app}:":                          "[h1:7000]   {app}: false",
		"redis+cluster://h1:7000?global_keyprefix=app:":                            "[h1:7000]   app: true",
		"redis+cluster://h1:7000?cluster_mode=kombu&global_keyprefix={app}:":       "[h1:7000]   {app}: false",
		"redis+cluster://h1:7000?cluster_mode=sharded&global_keyprefix=app.queue.": "[h1:7000]   app.queue. true",
	} {
		u, _ := transport.Parse(raw)
		o, err := kredis.ParseOptionsForTest(u)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%v %s %s %s %v", o.Cluster, o.User, o.Pass, o.Prefix, o.Sharded); got != want {
			t.Errorf("%s: parsed %q, want %q", raw, got, want)
		}
	}
}

// A cluster URL naming a Redis that is not a cluster fails to open with an
// error that says so.
func TestClusterURLOnPlainRedis(t *testing.T) {
	srv := brokertest.StartRedis(t)
	u, err := transport.Parse("redis+cluster://" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := kredis.Driver{}.Open(ctx, u, transport.Config{})
	if err == nil {
		c.Close()
		t.Fatal("opened a cluster connection to a plain Redis")
	}
	if !errors.Is(err, transport.ErrInvalidURL) || !strings.Contains(err.Error(), "not a cluster") {
		t.Fatalf("error %v, want ErrInvalidURL saying the server is not a cluster", err)
	}
}

// deadAddr is a local address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A node list where some nodes are down at start: the connection is made
// through the others, and works.
func TestClusterSomeSeedNodesDown(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	addrs := append([]string{deadAddr(t), deadAddr(t)}, cl.Addrs()[1]) // down ones first
	for range 3 {
		c := openURL(t, "redis+cluster://"+strings.Join(addrs, ",")+"/?global_keyprefix={seed}:")
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "q"}); err != nil {
			t.Fatal(err)
		}
		send(t, c, "q", "hello")
		s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
		d := recv(t, s)
		if string(d.Body) != "hello" {
			t.Fatalf("got %q", d.Body)
		}
		ack(t, d)
		cancel()
		c.Close()
	}
}

// What would be CROSSSLOT in Kombu's layout without a hash tag (a queue's
// priority lists, two queues routed by one publish script, the take script
// over lists, unacked and unacked_index, the restore and dead-letter
// scripts) works on the cluster and never reaches the user.
func TestClusterNoCrossSlot(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	// Without the tag these keys are in different slots: the test would
	// have met CROSSSLOT.
	slots := map[int64]bool{}
	for _, k := range []string{"orders", "orders" + sep + "9", "unacked", "unacked_index", "_kombu.binding.ex", "audit"} {
		s, err := raw.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[s] = true
	}
	if len(slots) < 2 {
		t.Fatalf("the untagged keys share a slot; the test proves nothing")
	}
	// And a script over two of them, through the cluster client, is refused.
	err := raw.Eval(ctx, "return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])", []string{"orders", "orders" + sep + "9"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("untagged multi-key script: %v, want CROSSSLOT", err)
	}

	c := openURL(t, cl.URL("global_keyprefix={xs}:&visibility_timeout=1&unacked_restore_interval=0.2"))
	if err := c.DeclareExchange(ctx, transport.Exchange{Name: "ex", Type: "direct"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "dead"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"orders", "audit"} {
		args := map[string]any{"x-max-priority": 9, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
		if _, err := c.DeclareQueue(ctx, transport.Queue{Name: q, Arguments: args}); err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ctx, transport.Binding{Destination: q, Source: "ex", RoutingKey: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []uint8{0, 9, 5} {
		if err := c.Publish(ctx, &transport.Publishing{Exchange: "ex", RoutingKey: "k", Properties: transport.Properties{Priority: p}, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("routed publish: %v", err)
		}
	}
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"orders", "audit"}, Prefetch: 6})
	// Consumers are woken by client tracking on the tag's master.
	for !kredis.WakeActive(c) {
		if ctx.Err() != nil {
			t.Fatal("client tracking never came on: consumers would poll")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ... on that master: client tracking announces only its own writes.
	owner, err := raw.MasterForKey(ctx, "{xs}:")
	if err != nil {
		t.Fatal(err)
	}
	tracking := regexp.MustCompile(`flags=[A-Za-z]*t[A-Za-z]* .* redir=[1-9]`)
	for {
		list, err := owner.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if tracking.MatchString(list) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no tracking client on the tag's master %s:\n%s", owner.Options().Addr, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
	bodies, ds := recvBodies(t, s, 6)
	if len(bodies) != 6 {
		t.Fatalf("got %v", bodies)
	}
	// Requeue one, reject one, ack the rest: scripts over lists and unacked.
	if err := ds[0].Acknowledger.Reject(ds[0].Tag, true); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds[1:] {
		ack(t, d)
	}
	d := recv(t, s)
	if !d.Redelivered {
		t.Fatalf("requeued message not marked redelivered")
	}
	// Reject it without requeue: the dead-letter script moves it from
	// unacked to the dead-letter queue.
	if err := d.Acknowledger.Reject(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	s2 := consume(t, c, transport.ConsumeSpec{Queues: []string{"dead"}, Prefetch: 1})
	d = recv(t, s2)
	if d.Headers["x-death"] == nil {
		t.Fatalf("dead letter without x-death: %v", d.Headers)
	}
	ack(t, d)
	none(t, s, 300*time.Millisecond)
	// Every key the connection wrote is under the tag, on one node.
	keys := 0
	err = raw.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error {
		ks, err := n.Keys(ctx, "*").Result()
		for _, k := range ks {
			if !strings.HasPrefix(k, "{xs}:") {
				return fmt.Errorf("key %q outside the tag", k)
			}
			keys++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys == 0 {
		t.Fatal("no keys found")
	}
}
