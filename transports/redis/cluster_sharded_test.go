package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// The driver contract on a Redis Cluster in the sharded mode (the default
// for redis+cluster://): each queue in the slot of its own name. No
// dead-lettering or delays there (cluster.go).
func TestClusterShardedConformance(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	runConformanceWith(t, cl.URL("cluster_mode=sharded&global_keyprefix=kgt-sharded:"), 0)
}

// shardedQueues returns n queue names and the master owning each one's
// slot, checking that they spread over more than one master.
func shardedQueues(ctx context.Context, t *testing.T, raw *goredis.ClusterClient, prefix string, n int) ([]string, map[string]string) {
	owners := map[string]string{}
	var queues []string
	for i := range n {
		q := "sq." + strconv.Itoa(i)
		node, err := raw.MasterForKey(ctx, prefix+"{"+q+"}")
		if err != nil {
			t.Fatal(err)
		}
		owners[q] = node.Options().Addr
		queues = append(queues, q)
	}
	masters := map[string]bool{}
	for _, a := range owners {
		masters[a] = true
	}
	if len(masters) < 2 {
		t.Fatalf("the queues %v all live on one master; the test proves nothing", queues)
	}
	return queues, owners
}

// A routed publish to queues on several masters, and one subscription
// taking from all of them, with priorities, requeues and acknowledgements:
// in Kombu's layout without a hash tag every step of it is CROSSSLOT
// (the publish script over the binding set and the queues' lists, the take
// script over lists of several queues and the global unacked hash). In the
// sharded mode it works, each queue's keys are in its own slot on its own
// master, and no CROSSSLOT reaches the user.
func TestClusterShardedSpansMasters(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	// The same script over two of the queues' lists is refused: the
	// queues really are in different slots.
	err := raw.Eval(ctx, "return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])", []string{"{sq.0}", "{sq.1}"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("multi-queue script: %v, want CROSSSLOT", err)
	}
	queues, owners := shardedQueues(ctx, t, raw, "", 8)

	c := openURL(t, cl.URL("polling_interval=0.02"))
	if !c.Features().Has(transport.FeatureTopic) || c.Features().Has(transport.FeatureDeadLetter) {
		t.Fatalf("features %v: want topic, not dead-letter", c.Features())
	}
	if err := c.DeclareExchange(ctx, transport.Exchange{Name: "sx", Type: "topic"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		if _, err := c.DeclareQueue(ctx, transport.Queue{Name: q, Arguments: map[string]any{"x-max-priority": 9}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ctx, transport.Binding{Destination: q, Source: "sx", RoutingKey: "k.#"}); err != nil {
			t.Fatal(err)
		}
	}
	// Dead-lettering is refused, not half done.
	_, err = c.DeclareQueue(ctx, transport.Queue{Name: "dlq", Arguments: map[string]any{"x-dead-letter-exchange": ""}})
	if !errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("dead-letter queue: %v, want ErrNotSupported", err)
	}
	for i, p := range []uint8{0, 9} {
		if err := c.Publish(ctx, &transport.Publishing{Exchange: "sx", RoutingKey: "k.x", Mandatory: true,
			Properties: transport.Properties{Priority: p}, Body: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatalf("routed publish: %v", err)
		}
	}
	// Every queue has both messages, in its own slot's lists.
	for _, q := range queues {
		node, err := raw.MasterForKey(ctx, "{"+q+"}")
		if err != nil {
			t.Fatal(err)
		}
		n0, _ := node.LLen(ctx, "{"+q+"}").Result()
		n9, _ := node.LLen(ctx, "{"+q+"}"+sep+"9").Result()
		if n0 != 1 || n9 != 1 {
			t.Fatalf("queue %s on %s: %d and %d messages in its lists, want 1 and 1", q, owners[q], n0, n9)
		}
	}
	s := consume(t, c, transport.ConsumeSpec{Queues: queues, Prefetch: 4})
	got := map[string]int{}
	var held []*transport.Delivery
	for range 2 * len(queues) {
		d := recv(t, s)
		got[d.ConsumerTag+"/"+string(d.Body)]++
		if len(held) < 2 {
			held = append(held, d) // unacked for now: records in two queues' slots
			continue
		}
		ack(t, d)
	}
	// Unacked records live beside their queues.
	var records int64
	for _, q := range queues {
		n, err := raw.HLen(ctx, "{"+q+"}:unacked").Result()
		if err != nil {
			t.Fatal(err)
		}
		records += n
	}
	if records != 2 {
		t.Fatalf("%d records in the queues' unacked hashes, want 2", records)
	}
	// Requeue one (return script in its slot), ack the other.
	if err := held[0].Acknowledger.Reject(held[0].Tag, true); err != nil {
		t.Fatal(err)
	}
	ack(t, held[1])
	d := recv(t, s)
	if !d.Redelivered {
		t.Fatal("requeued message not marked redelivered")
	}
	ack(t, d)
	none(t, s, 200*time.Millisecond)
	if len(got) != 2*len(queues) {
		t.Fatalf("got %v", got)
	}
	// Every key is a queue's (in its slot) or a binding set.
	err = raw.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error {
		ks, err := n.Keys(ctx, "*").Result()
		for _, k := range ks {
			if strings.HasPrefix(k, "_kombu.binding.") || strings.HasPrefix(k, "{sq.") || strings.HasPrefix(k, "{lq.") {
				continue
			}
			return fmt.Errorf("key %q is neither a queue's nor a binding set", k)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Listing queues finds bindings on every master: one exchange per
	// queue, whose binding sets are spread over the masters.
	setMasters := map[string]bool{}
	for i := range 8 {
		ex, q := "lx."+strconv.Itoa(i), "lq."+strconv.Itoa(i)
		if err := c.Bind(ctx, transport.Binding{Destination: q, Source: ex, RoutingKey: "k"}); err != nil {
			t.Fatal(err)
		}
		node, err := raw.MasterForKey(ctx, "_kombu.binding."+ex)
		if err != nil {
			t.Fatal(err)
		}
		setMasters[node.Options().Addr] = true
	}
	if len(setMasters) < 2 {
		t.Fatal("the binding sets are all on one master; the listing proves nothing")
	}
	other := openURL(t, cl.URL(""))
	infos, err := other.(transport.QueueLister).ListQueues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, qi := range infos {
		listed[qi.Name] = true
	}
	for i := range 8 {
		if q := "lq." + strconv.Itoa(i); !listed[q] {
			t.Errorf("ListQueues misses %s (bound on another master): %v", q, infos)
		}
	}
	// Acknowledged: the unacked hashes are empty (they were written).
	for _, q := range queues {
		if n, _ := raw.HLen(ctx, "{"+q+"}:unacked").Result(); n != 0 {
			t.Errorf("{%s}:unacked holds %d records after every ack", q, n)
		}
	}
}

// A message whose consumer died is restored past the visibility timeout,
// from its queue's own unacked bookkeeping, and a take whose reply was lost
// is returned at once from its queue's receipt.
func TestClusterShardedRestore(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	queues, _ := shardedQueues(ctx, t, raw, "r.", 6)
	// A record left by a consumer that died an hour ago, in each queue.
	for _, q := range queues {
		env := kombuEnvelope("dead-"+q, "", q, "orphan "+q, 0)
		v := "[" + env + `, "", "` + q + `"]`
		if err := raw.HSet(ctx, "r.{"+q+"}:unacked", "dead-"+q, v).Err(); err != nil {
			t.Fatal(err)
		}
		if err := raw.ZAdd(ctx, "r.{"+q+"}:unacked_index", goredis.Z{Score: float64(time.Now().Add(-time.Hour).Unix()), Member: "dead-" + q}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c := openURL(t, cl.URL("global_keyprefix=r.&visibility_timeout=1&unacked_restore_interval=0.2&polling_interval=0.02"))
	s := consume(t, c, transport.ConsumeSpec{Queues: queues, Prefetch: 10})
	seen := map[string]bool{}
	for range queues {
		d := recv(t, s)
		if !d.Redelivered {
			t.Errorf("restored message %q not marked redelivered", d.Body)
		}
		seen[string(d.Body)] = true
		ack(t, d)
	}
	for _, q := range queues {
		if !seen["orphan "+q] {
			t.Errorf("the orphan of %s was not restored: %v", q, seen)
		}
	}
	// A take whose reply is lost: what it took comes back at once, from
	// the receipt in its queue's slot, not after the visibility timeout
	// (an hour on this connection).
	c = openURL(t, cl.URL("global_keyprefix=r."))
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	defer lcancel()
	send(t, c, "r.lost", "lost reply")
	kredis.LoseNextTakeReply(c, true) // a slow reply: the connection stays
	if g, err := c.Get(ctx, "r.lost", false); err == nil && g != nil {
		t.Fatalf("get with a lost reply returned %q", g.Body)
	}
	for {
		g, err := c.Get(lctx, "r.lost", false)
		if err == nil && g != nil {
			if string(g.Body) != "lost reply" {
				t.Fatalf("got %q", g.Body)
			}
			ack(t, g)
			break
		}
		if lctx.Err() != nil {
			t.Fatalf("the message of the lost take did not come back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Consumers of empty queues on every master are woken by a write to any
// of them, not by polling: the hub tracks keys on each master (a write is
// announced only by the node it is made on). polling_interval=30 leaves
// polling no chance within the test's limits.
func TestClusterShardedWakeUps(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	queues, owners := shardedQueues(ctx, t, raw, "", 6)
	c := openURL(t, cl.URL("polling_interval=30"))
	s := consume(t, c, transport.ConsumeSpec{Queues: queues, Prefetch: 10})
	for !kredis.WakeActive(c) {
		if ctx.Err() != nil {
			t.Fatal("client tracking never came on on every master: consumers would poll")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, addr := range owners {
		if !trackingOn(ctx, t, addr) {
			t.Fatalf("no tracking client on master %s", addr)
		}
	}
	time.Sleep(100 * time.Millisecond) // the consumer is waiting, its queues empty
	pub := openURL(t, cl.URL(""))
	for _, q := range queues {
		start := time.Now()
		send(t, pub, q, "wake "+q)
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
		select {
		case d, ok := <-s.Deliveries():
			if !ok {
				t.Fatalf("subscription ended: %v", s.Err())
			}
			if string(d.Body) != "wake "+q {
				t.Fatalf("got %q, want %q", d.Body, "wake "+q)
			}
			ack(t, d)
		case <-wctx.Done():
			t.Fatalf("a message to %s (on master %s) was not delivered within 3 s: no wake-up", q, owners[q])
		}
		wcancel()
		t.Logf("%s on %s: delivered after %v", q, owners[q], time.Since(start).Round(time.Millisecond))
	}
}

// A pipelined take over several queues whose reply for one queue is lost:
// what it took from that queue goes back at once, from the receipt in the
// queue's slot, and is delivered (not after the visibility timeout, an
// hour here).
func TestClusterShardedLostPipelinedTake(t *testing.T) {
	cl := brokertest.StartRedisCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: cl.Addrs()})
	defer raw.Close()
	queues, _ := shardedQueues(ctx, t, raw, "", 4)
	c := openURL(t, cl.URL("polling_interval=0.05"))
	send(t, c, queues[0], "lost reply")
	fired := kredis.LoseNextPipelinedTakeReply(c)
	s := consume(t, c, transport.ConsumeSpec{Queues: queues, Prefetch: 8})
	d := recv(t, s)
	if string(d.Body) != "lost reply" {
		t.Fatalf("got %q", d.Body)
	}
	if !fired() {
		t.Fatal("no pipelined take lost its reply: the test proves nothing")
	}
	ack(t, d)
	if n, _ := raw.HLen(ctx, "{"+queues[0]+"}:unacked").Result(); n != 0 {
		t.Fatalf("%d records left in the unacked hash", n)
	}
}
