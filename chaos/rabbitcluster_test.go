package chaos

// Tests 17–17c: the three-node RabbitMQ cluster of scripts/rabbitmq-cluster.sh
// (kc1..kc3@localhost on 5681–5683; brokertest.AMQPClusterURLs). The
// clients dial the ";"-separated list of the nodes, publish with confirms to
// a durable quorum queue (replicated on all three) and consume through a
// kombu.Worker, which makes a consumer again when the broker cancels it.
// The faults: the node holding the queue's leader stopped, a node cut off
// from the clients by Toxiproxy, and the whole cluster stopped and started.
// The host's own RabbitMQ (rabbit@localhost) is never touched.

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// clusterScript is the script that starts and stops the cluster's nodes.
const clusterScript = "../scripts/rabbitmq-cluster.sh"

// rabbitCluster returns the cluster, and checks that rabbitmqctl reaches it.
func rabbitCluster(t *testing.T) *brokertest.AMQPCluster {
	t.Helper()
	cl := brokertest.AMQPClusterURLs(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		unavailable(t, "rabbitmqctl not on PATH")
	}
	return cl
}

// clusterRun runs the cluster script (stop-node N, start-node N, up).
func clusterRun(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(clusterScript, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", clusterScript, strings.Join(args, " "), err, out)
	}
}

// ensureClusterUp starts whatever node a failed test left stopped, so the
// tests after it find the whole cluster.
func ensureClusterUp(t *testing.T) {
	t.Cleanup(func() {
		if out, err := exec.Command(clusterScript, "up").CombinedOutput(); err != nil {
			t.Errorf("bringing the cluster back up: %v\n%s", err, out)
		}
	})
}

// nodeIndex returns the index (0..2) of the node named node.
func nodeIndex(cl *brokertest.AMQPCluster, node string) int {
	return slices.Index(cl.Nodes, node)
}

// leaderOf asks the cluster which node holds quorum queue q's leader.
func leaderOf(t *testing.T, cl *brokertest.AMQPCluster, via int, q string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-n", cl.Nodes[via], "-q", "list_queues", "name", "leader").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if name, leader, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && name == q {
			return strings.TrimSpace(leader)
		}
	}
	t.Fatalf("queue %s not listed by %s", q, cl.Nodes[via])
	return ""
}

// logNotes logs the row's notes when the test ends (they go to FIGURES.md
// only on a figures run).
func logNotes(t *testing.T, row *Row) {
	t.Cleanup(func() {
		t.Logf("time to recover: %s", row.Recovery)
		for _, n := range row.Notes {
			t.Log(n)
		}
	})
}

// rotated returns the cluster's URL list starting at node i.
func rotated(cl *brokertest.AMQPCluster, i int) string {
	urls := append(slices.Clone(cl.URLs[i:]), cl.URLs[:i]...)
	return strings.Join(urls, ";")
}

// hostOf returns a URL's host:port.
func hostOf(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

// clusterWorker runs a kombu.Worker consuming q into led; it stops when the
// test ends. It counts how often the broker ended a consumer (restarts).
type clusterWorker struct {
	restarts atomic.Int64
	lastErr  atomic.Value
}

func startClusterWorker(t *testing.T, conn *kombu.Connection, q kombu.Queue, led *Ledger, name string, prefetch int) *clusterWorker {
	cw := &clusterWorker{}
	w := kombu.NewWorker(conn,
		kombu.WithRestartBackoff(kombu.RetryPolicy{IntervalStart: 200 * time.Millisecond, IntervalStep: 200 * time.Millisecond, IntervalMax: 500 * time.Millisecond}),
		kombu.WithWorkerHooks(kombu.WorkerHooks{ConsumerFailed: func(err error) {
			cw.restarts.Add(1)
			cw.lastErr.Store(err.Error())
		}}))
	w.Consume(func(c *kombu.Connection) (*kombu.Consumer, error) {
		return kombu.NewConsumer(c, []kombu.Subscription{{Queue: q, Handler: recorder(led, name, 0)}},
			kombu.WithPrefetch(prefetch), kombu.WithShutdownTimeout(2*time.Second))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker %s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("worker %s did not stop within 30 s", name)
		}
	})
	return cw
}

// clusterVerdict applies the pass criteria of the cluster tests: every
// publish resolved, nothing confirmed lost, nothing unexpected, duplicates
// within the in-flight window; a duplicate that is a second copy rather than
// a redelivery (RepeatNotRedelivered) can only come from a publish made
// again after a lost confirm, so those are bounded by the publishers' window.
func clusterVerdict(t *testing.T, r Result, row *Row, timeout time.Duration, consumerWindow, publisherWindow int) {
	t.Helper()
	assertCommon(t, r, timeout, consumerWindow+publisherWindow)
	if n := len(r.RepeatNotRedelivered); n > publisherWindow {
		t.Errorf("%d ids delivered again without the redelivered flag, above the publishers' in-flight window of %d: %s",
			n, publisherWindow, short(r.RepeatNotRedelivered))
	}
	row.Note("%d duplicated ids: %d marked redelivered, %d second copies from publishes made again after a lost confirm",
		len(r.Duplicated), len(r.Duplicated)-len(r.RepeatNotRedelivered), len(r.RepeatNotRedelivered))
}

// publisherWindow is how many publishes may have been made twice: each
// connection the producer lost could take with it one unconfirmed publish
// per publishing goroutine, which the SDK then makes again on the next one.
func publisherWindow(prodSink *logSink, workers int) int {
	return workers * max(1, len(prodSink.find("connection lost; reconnecting")))
}

// 17. The node holding the quorum queue's leader is stopped while
// publishing with confirms and consuming. The producer and one consumer are
// connected to that node: they lose their connection, fail over to the next
// URL and publish again what was not confirmed; a second consumer on another
// node keeps going (or is cancelled by the broker and made again by the
// worker). A new leader is elected among the two nodes left.
func TestAMQPCluster17LeaderNodeStopped(t *testing.T) {
	row := figure(t, "17", "RabbitMQ cluster (3 nodes): the node holding the quorum queue's leader stopped (rabbitmqctl shutdown) mid-stream, started again 10 s later; clients on a \";\" URL list", "amqp")
	logNotes(t, row)
	cl := rabbitCluster(t)
	ensureClusterUp(t)
	qname := uniq(t, "q")
	q := queueOf("quorum", qname)
	adm := admin(t, cl.URLs[0])
	if _, err := q.Declare(ctxFor(t, 30*time.Second), adm); err != nil {
		t.Fatal(err)
	}
	cleanupQueue(t, cl.List(), qname)
	leader := leaderOf(t, cl, 0, qname)
	li := nodeIndex(cl, leader)
	if li < 0 {
		t.Fatalf("leader %q is none of %v", leader, cl.Nodes)
	}
	other := (li + 1) % len(cl.Nodes)
	adm.Close()

	sink := &logSink{}
	led := NewLedger("t17")
	const (
		prefetch = 50
		workers  = 4
		timeout  = 20 * time.Second
	)
	prodSink := &logSink{}
	prod := dial(t, rotated(cl, li), uniq(t, "producer"), prodSink)
	consLeader := dial(t, rotated(cl, li), uniq(t, "consumer-leader"), sink)
	consOther := dial(t, rotated(cl, other), uniq(t, "consumer-other"), sink)
	w1 := startClusterWorker(t, consLeader, q, led, "on-leader", prefetch)
	w2 := startClusterWorker(t, consOther, q, led, "on-other", prefetch)

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(22*time.Second))
	defer cancel()
	pubDone := publishOn(ctx, led, prod, qname, workers, 300, timeout)
	sleepUntil(start.Add(4 * time.Second))
	led.Inject()
	stopped := time.Now()
	clusterRun(t, "stop-node", strconv.Itoa(li+1))
	// The fault is the node going away: recovery counts from the moment
	// it was gone, as failing over does not wait for it to come back.
	led.Remove()
	stopTook := time.Since(stopped)
	sleepUntil(start.Add(14 * time.Second))
	restarted := time.Now()
	clusterRun(t, "start-node", strconv.Itoa(li+1))
	restartTook := time.Since(restarted)
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 40*time.Second), 2*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, cl.List(), q, led, &r, row)
	newLeader := leaderOf(t, cl, other, qname)
	// rabbitmqctl shutdown closes the node's client connections first and
	// takes seconds more to stop: the clients fail over while it runs, so
	// recovery counts from the moment it was asked.
	fromStop := firstConsumedAfter(led, stopped)
	row.Recovery = fmt.Sprintf("%s (shutdown asked → first new message confirmed and consumed)", fmtDur(fromStop))
	row.Note("time to recover = shutdown asked → first message published after that confirmed and consumed; from the node gone: %s; longest publish %v; shutdown took %v, start-node %v; leader %s → %s; producer now on %s, consumer restarts by the worker: %d on the stopped node's connection, %d on the other",
		fmtDur(r.Recovery), r.MaxPublishLatency.Round(time.Millisecond), stopTook.Round(100*time.Millisecond), restartTook.Round(100*time.Millisecond), leader, newLeader, prod.URL(), w1.restarts.Load(), w2.restarts.Load())
	t.Logf("restarts: %d (%v), %d (%v)", w1.restarts.Load(), w1.lastErr.Load(), w2.restarts.Load(), w2.lastErr.Load())

	if n := len(sink.find("connection lost; reconnecting")) + len(prodSink.find("connection lost; reconnecting")); n < 2 {
		t.Errorf("the SDK logged %d lost connections; stopping the leader's node should have cut the producer's and a consumer's", n)
	}
	if newLeader == leader && r.Recovery > 0 && r.Recovery < 10*time.Second {
		t.Logf("the leader went back to %s after it restarted", leader)
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed within 40 s", len(missing))
	}
	clusterVerdict(t, r, row, timeout, 2*prefetch, publisherWindow(prodSink, workers))
	if fromStop < 0 || fromStop > 15*time.Second {
		t.Errorf("recovery took %s after the shutdown was asked, want ≤ 15 s", fmtDur(fromStop))
	}
}

// 17b. The node the clients are connected to is cut off from them by
// Toxiproxy (every byte dropped, both directions: a network partition
// between the clients and that node) for 15 s. Heartbeats (2 s) notice;
// the clients fail over to the next node in their list. The nodes still see
// each other: the quorum queue's leader stays where it is.
func TestAMQPCluster17bNodePartitioned(t *testing.T) {
	row := figure(t, "17b", "RabbitMQ cluster: the clients' node cut off by Toxiproxy (timeout=0, both directions) for 15 s; heartbeat 2 s; clients on a \";\" URL list with that node first", "amqp")
	logNotes(t, row)
	row.Note("the partition is between the clients and one node (Toxiproxy in the test process); the nodes keep talking to each other")
	cl := rabbitCluster(t)
	ensureClusterUp(t)
	qname := uniq(t, "q")
	q := queueOf("quorum", qname)
	adm := admin(t, cl.URLs[1])
	if _, err := q.Declare(ctxFor(t, 30*time.Second), adm); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	cleanupQueue(t, cl.List(), qname)
	px := proxyTo(t, hostOf(cl.URLs[0]))
	u, _ := url.Parse(cl.URLs[0])
	u.Host = px.Addr()
	list := u.String() + ";" + cl.URLs[1] + ";" + cl.URLs[2]

	sink := &logSink{}
	led := NewLedger("t17b")
	const (
		prefetch = 50
		workers  = 4
		timeout  = 20 * time.Second
	)
	prodSink := &logSink{}
	prod := dial(t, list, uniq(t, "producer"), prodSink)
	cons := dial(t, list, uniq(t, "consumer"), sink)
	w := startClusterWorker(t, cons, q, led, "consumer", prefetch)

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(24*time.Second))
	defer cancel()
	pubDone := publishOn(ctx, led, prod, qname, workers, 300, timeout)
	sleepUntil(start.Add(4 * time.Second))
	led.Inject()
	if err := px.AddToxic("down", "timeout", Downstream, map[string]any{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	if err := px.AddToxic("up", "timeout", Upstream, map[string]any{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	var failover time.Duration = -1
	if eventually(15*time.Second, func() bool {
		return !strings.Contains(prod.URL(), px.Addr()) && !strings.Contains(cons.URL(), px.Addr())
	}) {
		failover = time.Since(led.Windows()[0].Injected)
	}
	sleepUntil(start.Add(19 * time.Second))
	_ = px.RemoveToxic("down")
	_ = px.RemoveToxic("up")
	led.Remove()
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 40*time.Second), 2*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, cl.List(), q, led, &r, row)
	// Recovery here is counted from the cut, not from its end: the clients
	// do not wait for the node to come back.
	firstAfter := firstConsumedAfter(led, led.Windows()[0].Injected)
	row.Note("time to recover = cut → both clients on another node %s (heartbeat 2 s); cut → first message published after the cut confirmed and consumed %s; consumer restarts by the worker: %d",
		fmtDur(failover), fmtDur(firstAfter), w.restarts.Load())

	if failover < 0 {
		t.Errorf("the clients did not leave the cut-off node within 15 s (producer on %s, consumer on %s)", prod.URL(), cons.URL())
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed within 40 s", len(missing))
	}
	clusterVerdict(t, r, row, timeout, prefetch, publisherWindow(prodSink, workers))
	if firstAfter < 0 || firstAfter > 15*time.Second {
		t.Errorf("no message published after the cut was consumed within 15 s of it (%s)", fmtDur(firstAfter))
	}
	row.Recovery = fmt.Sprintf("%s (cut → both clients on another node)", fmtDur(failover))
}

// firstConsumedAfter is the time from at to the first delivery of a message
// whose publish began after at and was confirmed; -1 if there is none.
// publishOn runs the tests' publisher on conn (workers goroutines, rate
// messages a second in all, to routingKey through the default exchange)
// until ctx ends; the channel closes when it has stopped.
func publishOn(ctx context.Context, led *Ledger, conn *kombu.Connection, routingKey string, workers, rate int, timeout time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		publisher{led: led, p: kombu.NewProducer(conn, kombu.WithRoutingKey(routingKey)), workers: workers, rate: rate, timeout: timeout}.run(ctx)
	}()
	return done
}

func firstConsumedAfter(led *Ledger, at time.Time) time.Duration {
	led.mu.Lock()
	defer led.mu.Unlock()
	best := time.Duration(-1)
	for id, p := range led.pubs {
		if p.start.Before(at) || p.outcome != Confirmed {
			continue
		}
		for _, d := range led.deliveries[id] {
			if dt := d.At.Sub(at); best < 0 || dt < best {
				best = dt
			}
		}
	}
	return best
}

// 17c. The whole cluster stopped (all three nodes, one after another) and
// started again while the clients publish and consume. Publishes made while
// no node is up wait for one (their context bounds them) or fail; every
// confirmed message survives in the durable quorum queue.
func TestAMQPCluster17cWholeClusterRestart(t *testing.T) {
	row := figure(t, "17c", "RabbitMQ cluster: all three nodes stopped at once (rabbitmqctl shutdown) and started again during publish+consume (durable quorum queue, persistent messages)", "amqp")
	logNotes(t, row)
	cl := rabbitCluster(t)
	ensureClusterUp(t)
	qname := uniq(t, "q")
	q := queueOf("quorum", qname)
	adm := admin(t, cl.URLs[0])
	if _, err := q.Declare(ctxFor(t, 30*time.Second), adm); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	cleanupQueue(t, cl.List(), qname)

	sink := &logSink{}
	led := NewLedger("t17c")
	const (
		prefetch = 50
		workers  = 4
		timeout  = 60 * time.Second
	)
	// The reconnect policy retries for as long as the cluster is down
	// (fastRetry has no limit on retries).
	prodSink := &logSink{}
	prod := dial(t, cl.List(), uniq(t, "producer"), prodSink)
	cons := dial(t, rotated(cl, 1), uniq(t, "consumer"), sink)
	w := startClusterWorker(t, cons, q, led, "consumer", prefetch)

	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubDone := publishOn(ctx, led, prod, qname, workers, 200, timeout)
	sleepUntil(start.Add(4 * time.Second))
	led.Inject()
	down := time.Now()
	// All three at once, as a power cut or a full redeploy does.
	var stops sync.WaitGroup
	for n := range len(cl.Nodes) {
		stops.Go(func() { clusterRun(t, "stop-node", strconv.Itoa(n+1)) })
	}
	stops.Wait()
	allDown := time.Now()
	stopTook := allDown.Sub(down)
	up := time.Now()
	clusterRun(t, "up")
	upTook := time.Since(up)
	led.Remove()
	time.Sleep(3 * time.Second)
	cancel()
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 60*time.Second), 2*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, cl.List(), q, led, &r, row)
	// The clients are back on the first node that starts, before the
	// script has seen all three up, so recovery counts from the moment the
	// last node was down: the outage the clients saw, boot time included.
	outage := firstConsumedAfter(led, allDown)
	row.Recovery = fmt.Sprintf("%s (all nodes down → first new message confirmed and consumed)", fmtDur(outage))
	row.Note("time to recover = all three nodes down → first message published after that confirmed and consumed (node boot included); from the script seeing every node up: %s; stopping the three took %v, starting them %v; consumer restarts by the worker: %d",
		fmtDur(r.Recovery), stopTook.Round(100*time.Millisecond), upTook.Round(100*time.Millisecond), w.restarts.Load())
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed within 60 s", len(missing))
	}
	if outage < 0 {
		t.Errorf("no message published after the cluster went down was consumed")
	}
	clusterVerdict(t, r, row, timeout, prefetch, publisherWindow(prodSink, workers))
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery took %s after the cluster was back, want ≤ 20 s", fmtDur(r.Recovery))
	}
}
