package redis_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// clusterTraffic publishes and consumes through package kombu on a
// cluster URL while fault runs, then checks that every publish that was
// confirmed was consumed (at least once: a failover may hand a message out
// again).
func clusterTraffic(t *testing.T, cl *brokertest.RedisCluster, prefix, url string, fault func()) {
	t.Helper()
	clusterTrafficOn(t, cl, prefix, "work", url, fault)
}

// clusterTrafficOn is clusterTraffic through the queue named.
func clusterTrafficOn(t *testing.T, cl *brokertest.RedisCluster, prefix, queue, url string, fault func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url,
		kombu.WithReconnectPolicy(kombu.RetryPolicy{IntervalStart: 50 * time.Millisecond, IntervalStep: 50 * time.Millisecond, IntervalMax: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	seen := map[string]int{}
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: queue},
		Handler: kombu.HandlerFunc(func(_ context.Context, msg *kombu.Message) error {
			mu.Lock()
			seen[string(msg.Body)]++
			mu.Unlock()
			return nil
		}),
	}}, kombu.WithPrefetch(20))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()

	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue))
	stop := make(chan struct{})
	var confirmed []string
	failed := 0
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			body := "m-" + strconv.Itoa(i)
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			err := p.Publish(pctx, []byte(body))
			pcancel()
			if err != nil {
				failed++ // not confirmed: it may or may not arrive
				continue
			}
			confirmed = append(confirmed, body)
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond) // traffic before the fault
	fault()
	time.Sleep(500 * time.Millisecond) // and after it
	close(stop)
	<-pubDone
	if len(confirmed) == 0 {
		t.Fatal("nothing was published")
	}
	for {
		mu.Lock()
		missing := 0
		var first string
		for _, b := range confirmed {
			if seen[b] == 0 {
				if missing == 0 {
					first = b
				}
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d confirmed messages never consumed (first %s); where they are: %s", missing, len(confirmed), first, whereabouts(cl, prefix, queue))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	mu.Unlock()
	t.Logf("%d confirmed, %d failed publishes, %d consumed, %d redeliveries", len(confirmed), failed, len(seen), dups)
}

// A master killed while publishing and consuming (the one holding the
// hash tag's slot, so every key): its replica is promoted, the
// connection follows (MOVED, a new connection), and nothing confirmed is
// lost. Redis replicates asynchronously, so a write the master confirmed
// in the last instant before dying can in principle be missing on the
// replica; on one machine the window is well under a millisecond.
func TestClusterMasterKilledReplicaPromoted(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 1)
	const prefix = "{failover}:"
	clusterTraffic(t, cl, prefix, cl.URL("global_keyprefix="+prefix+"&visibility_timeout=3600"), func() {
		owner := cl.MasterOf(prefix)
		cl.Kill(owner)
		deadline := time.Now().Add(30 * time.Second)
		for {
			// The cluster is ok again once a replica took the slot over.
			if p, ok := cl.LiveMasterOf(prefix); ok && p != owner {
				break
			}
			if time.Now().After(deadline) {
				var nodes string
				for _, p := range cl.Ports {
					if p != owner {
						nodes, _ = cl.CLI(p, "cluster", "nodes")
						break
					}
				}
				t.Fatalf("no replica was promoted within 30 s (master :%d killed):\n%s", owner, nodes)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("master :%d killed, :%d promoted", owner, cl.MasterOf(prefix))
	})
}

// The same in cluster_mode=sharded: the master holding the queue's slot
// (the queue's own hash tag) is killed under traffic.
func TestClusterShardedMasterKilledReplicaPromoted(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 1)
	const key = "{work}" // the queue's list
	clusterTraffic(t, cl, "", cl.URL("cluster_mode=sharded&visibility_timeout=3600"), func() {
		owner := cl.MasterOf(key)
		cl.Kill(owner)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if p, ok := cl.LiveMasterOf(key); ok && p != owner {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no replica was promoted within 30 s (master :%d killed)", owner)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("master :%d (the queue's) killed, :%d promoted", owner, cl.MasterOf(key))
	})
}

// The hash tag's slot resharded to another master (redis-cli --cluster
// reshard, MIGRATE key by key) while publishing and consuming: ASK during
// the migration, MOVED after it, followed; nothing confirmed is lost.
func TestClusterReshard(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	prefix, from, to, count := reshardPlan(t, cl)
	clusterTraffic(t, cl, prefix, cl.URL("global_keyprefix="+prefix+"&visibility_timeout=3600"), func() {
		cl.Reshard(from, to, count)
		if got := cl.MasterOf(prefix); got != to {
			t.Fatalf("after resharding %d slots the tag's slot is on :%d, want :%d", count, got, to)
		}
		t.Logf("%d slots (the tag's included) moved from :%d to :%d", count, from, to)
	})
}

// The same in cluster_mode=sharded: the slot of the queue's own hash tag
// is resharded to another master under traffic.
func TestClusterShardedReshard(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	tag, from, to, count := reshardPlan(t, cl) // "{reshard-<n>}:"
	queue := strings.TrimSuffix(strings.TrimPrefix(tag, "{"), "}:")
	key := "{" + queue + "}" // the queue's list: the tag's slot
	clusterTrafficOn(t, cl, "", queue, cl.URL("cluster_mode=sharded&visibility_timeout=3600"), func() {
		cl.Reshard(from, to, count)
		if got := cl.MasterOf(key); got != to {
			t.Fatalf("after resharding %d slots the queue's slot is on :%d, want :%d", count, got, to)
		}
		t.Logf("%d slots (the queue's included) moved from :%d to :%d", count, from, to)
	})
}

// masterPort returns the port of a shard's master.
func masterPort(t *testing.T, sh goredis.ClusterShard) int {
	for _, n := range sh.Nodes {
		if n.Role == "master" {
			return int(n.Port)
		}
	}
	t.Fatalf("shard %+v has no master", sh)
	return 0
}

// trackingOn waits until a client on the node at addr has client tracking
// on, redirected (the wake hub's), and reports whether one came in time.
func trackingOn(ctx context.Context, t *testing.T, addr string) bool {
	t.Helper()
	node := goredis.NewClient(&goredis.Options{Addr: addr})
	defer node.Close()
	tracking := regexp.MustCompile(`flags=[A-Za-z]*t[A-Za-z]* .* redir=[1-9]`)
	for ctx.Err() == nil {
		if list, err := node.ClientList(ctx).Result(); err == nil && tracking.MatchString(list) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Consumers' wake-ups follow the keyprefix's slot: after it is resharded
// to another master, client tracking is set up again there (tracking on
// the old master would announce nothing, and consumers would only poll).
func TestClusterWakeUpsFollowTheSlot(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prefix, from, to, count := reshardPlan(t, cl)
	c := openURL(t, cl.URL("global_keyprefix="+prefix))
	if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	if !trackingOn(ctx, t, fmt.Sprintf("127.0.0.1:%d", from)) {
		t.Fatal("no tracking client on the slot's master")
	}
	cl.Reshard(from, to, count)
	if !trackingOn(ctx, t, fmt.Sprintf("127.0.0.1:%d", to)) {
		a, _ := cl.CLI(from, "client", "list")
		b, _ := cl.CLI(to, "client", "list")
		t.Fatalf("tracking was not set up again on the slot's new master:\nold :%d\n%s\nnew :%d\n%s", from, a, to, b)
	}
	send(t, c, "q", "after")
	if d := recv(t, s); string(d.Body) != "after" {
		t.Fatalf("got %q", d.Body)
	}
}

// reshardPlan picks a key prefix whose hash tag's slot is near the start
// of its master's range, and the move that takes it to another master:
// redis-cli moves a source's slots lowest first, so moving count slots
// from from to to moves the tag's.
func reshardPlan(t *testing.T, cl *brokertest.RedisCluster) (prefix string, from, to, count int) {
	ctx := context.Background()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	shards, err := raw.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// redis-cli moves a source's slots lowest first: pick a tag whose slot
	// is near the start of its master's range, and move the slots up to it.
	for i := 0; prefix == ""; i++ {
		p := "{reshard-" + strconv.Itoa(i) + "}:"
		slot, err := raw.ClusterKeySlot(ctx, p).Result()
		if err != nil {
			t.Fatal(err)
		}
		for j, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start <= slot && slot <= r.End && slot-r.Start < 300 {
					prefix, count = p, int(slot-r.Start)+1
					from = masterPort(t, sh)
					to = masterPort(t, shards[(j+1)%len(shards)])
				}
			}
		}
	}
	return prefix, from, to, count
}

// whereabouts says how many messages the queue and the unacked hash hold,
// for a failure's message: stuck in the queue, taken and not delivered,
// or gone.
func whereabouts(cl *brokertest.RedisCluster, prefix, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	queue, unacked := prefix+name, prefix+"unacked"
	if !strings.Contains(prefix, "{") { // cluster_mode=sharded
		queue, unacked = prefix+"{"+name+"}", prefix+"{"+name+"}:unacked"
	}
	q, qerr := raw.LLen(ctx, queue).Result()
	u, uerr := raw.HLen(ctx, unacked).Result()
	return fmt.Sprintf("queue %d (%v), unacked %d (%v)", q, qerr, u, uerr)
}
