package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Tests 1–9 of reliability.md §6: RabbitMQ through an in-process Toxiproxy,
// rabbitmqctl, and consumer processes killed with SIGKILL.

// sleepUntil sleeps until t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// assertCommon checks the default pass criteria: every publish resolved
// within its deadline, nothing lost, nothing unexpected, duplicates within
// the in-flight window.
func assertCommon(t *testing.T, r Result, publishTimeout time.Duration, maxDup int) {
	t.Helper()
	if r.Pending > 0 {
		t.Errorf("%d publishes never returned", r.Pending)
	}
	if publishTimeout > 0 && r.MaxPublishLatency > publishTimeout+1500*time.Millisecond {
		t.Errorf("a Publish took %v, past its %v context deadline", r.MaxPublishLatency, publishTimeout)
	}
	if len(r.Lost) > 0 {
		t.Errorf("LOST %d confirmed messages: %s", len(r.Lost), short(r.Lost))
	}
	if len(r.Unexpected) > 0 {
		t.Errorf("%d unexpected deliveries: %s", len(r.Unexpected), short(r.Unexpected))
	}
	if maxDup >= 0 && len(r.Duplicated) > maxDup {
		t.Errorf("%d ids delivered more than once, above the in-flight window of %d: %s", len(r.Duplicated), maxDup, short(r.Duplicated))
	}
}

// stillRunning fails the test if the consumer's Run has returned.
func stillRunning(t *testing.T, rc *running, what string) {
	t.Helper()
	if done, err := rc.returned(); done {
		t.Errorf("%s: Consumer.Run returned during recovery: %v", what, err)
	}
}

// 1. Connection reset while publishing with confirms to a durable quorum
// queue, persistent messages; the consumer's connection goes through the
// same proxy and is reset too.
func TestAMQP01ResetPeerDuringConfirmedPublish(t *testing.T) {
	row := figure(t, "1", "reset_peer (upstream, both connections) for 2 s at 5 s and 15 s while publishing with confirms to a durable quorum queue", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	leaks := leakCheck(t)
	px := proxyTo(t, b.addr)
	sink := &logSink{}
	led := NewLedger("t1")
	q := queueOf("quorum", qname)
	const (
		prefetch = 50
		workers  = 4
		timeout  = 10 * time.Second
	)
	prod := dial(t, b.amqpURL(px.Addr()), uniq(t, "producer"), sink)
	cons := dial(t, b.amqpURL(px.Addr()), uniq(t, "consumer"), sink)
	rc := consume(t, cons, q, led, "consumer", 0, kombu.WithPrefetch(prefetch))

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(22*time.Second))
	defer cancel()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: workers, rate: 400,
			timeout: timeout, max: 10000}.run(ctx)
	}()
	for _, at := range []time.Duration{5 * time.Second, 15 * time.Second} {
		sleepUntil(start.Add(at))
		led.Inject()
		if err := px.AddToxic("reset", "reset_peer", Upstream, map[string]any{"timeout": 0}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := px.RemoveToxic("reset"); err != nil {
			t.Fatal(err)
		}
		led.Remove()
	}
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 30*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, direct, q, led, &r, row)
	var recs []string
	for _, d := range r.Recoveries {
		recs = append(recs, fmtDur(d))
	}
	row.Note("reconnect (fault removed → first confirm) %s; recovery per fault %v; max publish %v",
		fmtDur(r.Reconnect), recs, r.MaxPublishLatency.Round(time.Millisecond))

	if n := len(sink.find("connection lost; reconnecting")); n < 2 {
		t.Errorf("the SDK logged %d lost connections; the resets did not take effect", n)
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed by the test's consumer within 30 s", len(missing))
	}
	assertCommon(t, r, timeout, r.Faults*(prefetch+workers))
	if r.Reconnect < 0 || r.Reconnect > 5*time.Second {
		t.Errorf("reconnect took %s after the fault was removed, want ≤ 5 s", fmtDur(r.Reconnect))
	}
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery took %s, want ≤ 20 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	finish(t, rc, px, sink, led, leaks, prod, cons)
}

// 1b. The second half of test 1: confirmations held back for 6 s, longer
// than amqp091-go's 5 s notification timeout. The SDK waits on
// DeferredConfirmations and has no confirm goroutine of its own to pause,
// so the black-box stand-in is a 6 s latency on everything the broker sends
// the producer: every publish must still resolve, none silently dropped.
func TestAMQP01bConfirmsDelayed6s(t *testing.T) {
	row := figure(t, "1b", "confirms held back 6 s (latency toxic, downstream) while publishing with confirms", "amqp")
	row.Note("stand-in for 'confirm goroutine paused 6 s': the SDK has no confirm goroutine (it waits on DeferredConfirmation), so the broker's frames are delayed 6 s instead; heartbeat 5 s")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	leaks := leakCheck(t)
	px := proxyTo(t, b.addr)
	sink := &logSink{}
	led := NewLedger("t1b")
	q := queueOf("quorum", qname)
	const timeout = 20 * time.Second
	prod := dial(t, b.amqpURL(px.Addr()), uniq(t, "producer"), sink, kombu.WithHeartbeat(5*time.Second))
	cons := dial(t, direct, uniq(t, "consumer"), sink)
	rc := consume(t, cons, q, led, "consumer", 0, kombu.WithPrefetch(50))

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(13*time.Second))
	defer cancel()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: 4, rate: 100, timeout: timeout}.run(ctx)
	}()
	sleepUntil(start.Add(3 * time.Second))
	led.Inject()
	if err := px.AddToxic("slow", "latency", Downstream, map[string]any{"latency": 6000}); err != nil {
		t.Fatal(err)
	}
	sleepUntil(start.Add(10 * time.Second))
	if err := px.RemoveToxic("slow"); err != nil {
		t.Fatal(err)
	}
	led.Remove()
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 30*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	row.Note("max publish latency %v", r.MaxPublishLatency.Round(time.Millisecond))

	if r.MaxPublishLatency < 5500*time.Millisecond {
		t.Errorf("the longest publish took %v: the 6 s delay did not take effect", r.MaxPublishLatency)
	}
	if r.Unknown+r.Failed+r.Pending > 0 {
		t.Errorf("%d publishes did not resolve with a confirm (unknown %d, failed %d, pending %d)", r.Unknown+r.Failed+r.Pending, r.Unknown, r.Failed, r.Pending)
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages never consumed", len(missing))
	}
	assertCommon(t, r, timeout, 0)
	if n := len(sink.find("connection lost")); n > 0 {
		t.Errorf("a 6 s delay under a 5 s heartbeat dropped the connection %d times", n)
	}
	finish(t, rc, px, sink, led, leaks, prod, cons)
}

// 2. A consumer process killed (SIGKILL) in the middle of a handler, then
// restarted.
func TestAMQP02ConsumerKilledMidHandler(t *testing.T) {
	row := figure(t, "2", "consumer process SIGKILLed mid-handler (prefetch 50, manual ack), then restarted", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	leaks := leakCheck(t)
	led := NewLedger("t2")
	ctx := ctxFor(t, 100*time.Second)
	if _, err := queueOf("classic", qname).Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	const n, prefetch = 3000, 50
	publishN(t, led, kombu.NewProducer(adm, kombu.WithRoutingKey(qname)), n)

	c1 := startChild(t, led, "child1", direct, "classic", qname, prefetch, 2*time.Millisecond, 600)
	select {
	case <-c1.hung: // its 600th handler never returns
	case <-time.After(30 * time.Second):
		t.Fatalf("child1 handled only %d messages in 30 s", c1.delivered.Load())
	}
	c1.kill()
	killed := time.Now()
	// After the kill, every line child1 wrote has been read: these are the
	// deliveries its handler had and never acked.
	inflight := c1.inFlight()
	t.Logf("child1 killed after %d deliveries, %d acks; in its handler: %v", c1.delivered.Load(), c1.acked.Load(), inflight)

	c2 := startChild(t, led, "child2", direct, "classic", qname, prefetch, 2*time.Millisecond, 0)
	missing := led.WaitDelivered(ctxFor(t, 60*time.Second), time.Second)
	if err := c2.term(); err != nil {
		t.Errorf("child2: %v: %s", err, c2.stderr.String())
	}
	r := led.Check()
	row.Result = &r
	if first := c2.firstAt.Load(); first != nil {
		row.Recovery = fmtDur(first.Sub(killed)) + " (kill → restarted consumer's first delivery)"
	}
	t.Log(r.Summary())
	row.Note("child1 killed after %d deliveries with %d in its handler; duplicates %d", c1.delivered.Load(), len(inflight), len(r.Duplicated))

	if len(inflight) == 0 {
		t.Errorf("child1 was not killed in the middle of a handler")
	}
	for _, id := range inflight {
		ds := led.DeliveriesOf(id)
		if len(ds) < 2 || !ds[len(ds)-1].Redelivered || ds[len(ds)-1].Consumer != "child2" {
			t.Errorf("message %s, in child1's handler at the kill, was not redelivered to child2 with redelivered=true: %+v", id, ds)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages never consumed", len(missing))
	}
	assertCommon(t, r, 0, prefetch)
	if len(r.RepeatNotRedelivered) > 0 {
		t.Errorf("%d duplicates without redelivered=true: %s", len(r.RepeatNotRedelivered), short(r.RepeatNotRedelivered))
	}
	if d := depth(ctx, t, adm, qname); d != 0 {
		t.Errorf("backlog not drained after the restart: %d messages left", d)
	}
	adm.Close()
	leaks()
}

// 3. A half-open link: every byte dropped in both directions for 30 s,
// nothing closed.
func TestAMQP03Blackhole(t *testing.T) {
	row := figure(t, "3", "half-open link: Toxiproxy timeout=0 both directions for 30 s (heartbeat 2 s)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	leaks := leakCheck(t)
	px := proxyTo(t, b.addr)
	sink := &logSink{}
	led := NewLedger("t3")
	const (
		heartbeat = 2 * time.Second
		prefetch  = 50
		workers   = 2
		timeout   = 5 * time.Second
	)
	q := queueOf("quorum", qname)
	prod := dial(t, b.amqpURL(px.Addr()), uniq(t, "producer"), sink)
	cons := dial(t, b.amqpURL(px.Addr()), uniq(t, "consumer"), sink)
	rc := consume(t, cons, q, led, "consumer", 0, kombu.WithPrefetch(prefetch))

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(3*time.Second+30*time.Second+8*time.Second))
	defer cancel()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: workers, rate: 100, timeout: timeout}.run(ctx)
	}()
	sleepUntil(start.Add(3 * time.Second))
	prodLost, consLost := prod.Lost(), cons.Lost()
	led.Inject()
	injected := time.Now()
	for _, s := range []Stream{Upstream, Downstream} {
		if err := px.AddToxic("blackhole-"+string(s), "timeout", s, map[string]any{"timeout": 0}); err != nil {
			t.Fatal(err)
		}
	}
	limit := 3*heartbeat + 5*time.Second
	detect := func(name string, lost <-chan struct{}) time.Duration {
		select {
		case <-lost:
			return time.Since(injected)
		case <-time.After(30 * time.Second):
			return -1
		}
	}
	dp := detect("producer", prodLost)
	dc := detect("consumer", consLost)
	t.Logf("dead link detected: producer %s, consumer %s", fmtDur(dp), fmtDur(dc))
	row.Note("dead link detected after %s (producer), %s (consumer); limit %v", fmtDur(dp), fmtDur(dc), limit)
	if dp < 0 || dp > limit || dc < 0 || dc > limit {
		t.Errorf("dead link detected after %s (producer) and %s (consumer), want ≤ 3 × heartbeat + 5 s = %v", fmtDur(dp), fmtDur(dc), limit)
	}
	sleepUntil(injected.Add(30 * time.Second))
	for _, s := range []Stream{Upstream, Downstream} {
		if err := px.RemoveToxic("blackhole-" + string(s)); err != nil {
			t.Fatal(err)
		}
	}
	led.Remove()
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 30*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, direct, q, led, &r, row)
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed by the test's consumer within 30 s", len(missing))
	}
	assertCommon(t, r, timeout, prefetch+workers)
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery took %s after the link came back, want ≤ 20 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	finish(t, rc, px, sink, led, leaks, prod, cons)
}

// 4. The broker application stops and starts again while messages flow.
func TestAMQP04BrokerRestart(t *testing.T) {
	row := figure(t, "4", "broker restart: rabbitmqctl stop_app, 3 s, start_app, during publish+consume (durable exchange, queue, persistent messages)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	ex := kombu.Exchange{Name: uniq(t, "ex")}
	cleanupQueue(t, direct, qname)
	t.Cleanup(func() {
		// Never leave the broker stopped, whatever happened.
		if out, err := rabbitmqctlErr("start_app"); err != nil {
			t.Logf("cleanup: start_app: %v %s", err, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if c, err := kombu.Dial(ctx, direct, kombu.WithReconnectPolicy(kombu.RetryPolicy{MaxRetries: 20, IntervalStart: 500 * time.Millisecond})); err == nil {
			_ = ex.Delete(ctx, c)
			c.Close()
		}
	})
	leaks := leakCheck(t)
	px := proxyTo(t, b.addr)
	sink := &logSink{}
	led := NewLedger("t4")
	const (
		prefetch = 50
		workers  = 2
		timeout  = 10 * time.Second
	)
	q := kombu.Queue{Name: qname, Bindings: []kombu.Binding{{Exchange: ex.Name, RoutingKey: "k"}}}
	prod := dial(t, b.amqpURL(px.Addr()), uniq(t, "producer"), sink)
	cons := dial(t, b.amqpURL(px.Addr()), uniq(t, "consumer"), sink)
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: recorder(led, "consumer", 0)}},
		kombu.WithPrefetch(prefetch), kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{ex}}))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)

	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-stop; cancel() }()
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithExchange(ex), kombu.WithRoutingKey("k")), workers: workers,
			rate: 200, timeout: timeout}.run(ctx)
	}()
	time.Sleep(3 * time.Second)
	led.Inject()
	t0 := time.Now()
	rabbitmqctl(t, "stop_app")
	t.Logf("stop_app took %v", time.Since(t0))
	time.Sleep(3 * time.Second)
	t1 := time.Now()
	rabbitmqctl(t, "start_app")
	led.Remove()
	t.Logf("start_app took %v", time.Since(t1))
	row.Note("broker down %v (stop_app → start_app returned)", time.Since(t0).Round(100*time.Millisecond))
	time.Sleep(6 * time.Second)
	close(stop)
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 40*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, direct, q, led, &r, row)
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed by the test's consumer within 40 s", len(missing))
	}
	assertCommon(t, r, timeout, prefetch+workers)
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery took %s after start_app, want ≤ 20 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	// The exchange, queue and binding are there again: a mandatory publish
	// through them is routed.
	ctx := ctxFor(t, 20*time.Second)
	probe := led.Begin()
	err = kombu.NewProducer(prod, kombu.WithExchange(ex), kombu.WithRoutingKey("k"), kombu.WithMandatory()).
		Publish(ctx, body(probe), kombu.WithHeaders(map[string]any{idHeader: probe}))
	led.End(probe, err)
	if err != nil {
		t.Errorf("mandatory publish through the recovered topology: %v", err)
	}
	finish(t, rc, px, sink, led, leaks, prod, cons)
}

// 5. A memory alarm blocks the publisher; the application closes the
// connection while it is blocked.
func TestAMQP05MemoryAlarmBlocksPublisher(t *testing.T) {
	row := figure(t, "5", "memory alarm: set_vm_memory_high_watermark 0.0001 for 30 s; publish and Close() while blocked", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		if out, err := rabbitmqctlErr("set_vm_memory_high_watermark", "0.4"); err != nil {
			t.Errorf("restoring the memory watermark: %v %s", err, out)
		}
	}
	t.Cleanup(restore)
	adm := admin(t, direct)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t5")
	ctx := ctxFor(t, 110*time.Second)
	if _, err := queueOf("classic", qname).Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	prod := dial(t, direct, uniq(t, "producer"), sink)
	p := kombu.NewProducer(prod, kombu.WithRoutingKey(qname))
	pub := func(timeout time.Duration) (Outcome, time.Duration, error) {
		start := time.Now()
		_, o, err := led.Publish(context.Background(), timeout, func(ctx context.Context, id string) error {
			return p.Publish(ctx, body(id), kombu.WithHeaders(map[string]any{idHeader: id}))
		})
		return o, time.Since(start), err
	}
	for range 20 {
		if o, _, err := pub(5 * time.Second); o != Confirmed {
			t.Fatalf("publish before the alarm: %v", err)
		}
	}

	rabbitmqctl(t, "set_vm_memory_high_watermark", "0.0001")
	alarmed := time.Now()
	led.Inject()
	// A publish while blocked honours its deadline.
	o, took, err := pub(3 * time.Second)
	t.Logf("publish while blocked: %v after %v: %v", o, took.Round(time.Millisecond), err)
	if o == Confirmed {
		t.Errorf("a publish was confirmed during the memory alarm")
	}
	if took > 4500*time.Millisecond {
		t.Errorf("publish while blocked took %v, past its 3 s deadline", took)
	}
	if len(sink.find("blocked")) == 0 {
		t.Errorf("the blocked state was not surfaced: nothing in the SDK's logs (connection.blocked / NotifyBlocked) %v after the alarm",
			time.Since(alarmed).Round(time.Millisecond))
	}
	// A publish in flight when the application closes the connection
	// returns promptly, and Close does not hang.
	inflight := make(chan time.Time, 1)
	go func() {
		_, _, _ = pub(25 * time.Second)
		inflight <- time.Now()
	}()
	time.Sleep(time.Second)
	closeStart := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- prod.Close() }()
	var closeTook time.Duration
	select {
	case err := <-closed:
		closeTook = time.Since(closeStart)
		t.Logf("Close while blocked returned after %v: %v", closeTook.Round(time.Millisecond), err)
	case <-time.After(25 * time.Second):
		closeTook = time.Since(closeStart)
		t.Errorf("Close while blocked hung for more than 25 s")
	}
	row.Note("Close() while blocked took %v", closeTook.Round(time.Millisecond))
	if closeTook > 5*time.Second {
		t.Errorf("Close while blocked took %v, want ≤ 5 s (amqp091-go #21/#122)", closeTook.Round(time.Millisecond))
	}
	select {
	case at := <-inflight:
		if d := at.Sub(closeStart); d > 6*time.Second {
			t.Errorf("the publish in flight returned %v after Close", d.Round(time.Millisecond))
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the publish in flight at Close never returned")
	}
	sleepUntil(alarmed.Add(30 * time.Second))
	restore()
	led.Remove()

	// After the alarm, a new connection publishes again, and every
	// confirmed message is there.
	prod2 := dial(t, direct, uniq(t, "producer2"), sink)
	p = kombu.NewProducer(prod2, kombu.WithRoutingKey(qname))
	for range 20 {
		pub(10 * time.Second)
	}
	cons := dial(t, direct, uniq(t, "consumer"), sink)
	rc := consume(t, cons, queueOf("classic", qname), led, "consumer", 0, kombu.WithPrefetch(50))
	missing := led.WaitDelivered(ctxFor(t, 20*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages never consumed", len(missing))
	}
	assertCommon(t, r, 25*time.Second, 0)
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("publish+consume back %s after the alarm was cleared, want ≤ 20 s", fmtDur(r.Recovery))
	}
	cons.Close()
	prod2.Close()
	adm.Close()
	leaks()
	if t.Failed() {
		sink.dump(t, 30)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
	}
}

// 6. Mandatory publishes to an exchange with no matching binding, confirms
// on, interleaved with routable ones from several goroutines and in a batch.
func TestAMQP06Unroutable(t *testing.T) {
	row := figure(t, "6", "mandatory publishes, half unroutable, 8 goroutines + a mixed batch (confirms on)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	ex := kombu.Exchange{Name: uniq(t, "ex")}
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	t.Cleanup(func() { _ = ex.Delete(context.Background(), adm) })
	ctx := ctxFor(t, 60*time.Second)
	if err := ex.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	q := kombu.Queue{Name: qname, Bindings: []kombu.Binding{{Exchange: ex.Name, RoutingKey: "routable"}}}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t6")
	prod := dial(t, direct, uniq(t, "producer"), sink)
	p := kombu.NewProducer(prod, kombu.WithExchange(ex), kombu.WithMandatory())

	var mu sync.Mutex
	var wrong []string
	unroutable := map[string]bool{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				route := (w+i)%2 == 0
				key := "nowhere"
				if route {
					key = "routable"
				}
				_, _, err := led.Publish(ctx, 10*time.Second, func(ctx context.Context, id string) error {
					opts := []kombu.PublishOption{kombu.WithRoutingKey(key), kombu.WithHeaders(map[string]any{idHeader: id})}
					if i%3 != 0 { // the rest get an SDK-generated message id
						opts = append(opts, kombu.WithMessageID(id))
					}
					if !route {
						mu.Lock()
						unroutable[id] = true
						mu.Unlock()
					}
					return p.Publish(ctx, body(id), opts...)
				})
				switch {
				case route && err != nil:
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("routable publish failed: %v", err))
					mu.Unlock()
				case !route && !errors.Is(err, kombu.ErrUnroutable):
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("unroutable publish returned %v, want ErrUnroutable", err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()

	// A batch of 100 with every third message unroutable: the error names
	// exactly those.
	var batch kombu.Batch
	var ids []string
	wantBad := map[int]bool{}
	for i := range 100 {
		id := led.Begin()
		ids = append(ids, id)
		key := "routable"
		if i%3 == 1 {
			key, wantBad[i] = "nowhere", true
			unroutable[id] = true
		}
		if err := p.Publish(ctx, body(id), kombu.InBatch(&batch), kombu.WithRoutingKey(key), kombu.WithMessageID(id),
			kombu.WithHeaders(map[string]any{idHeader: id})); err != nil {
			t.Fatal(err)
		}
	}
	berr := batch.Send(ctx)
	// The batch error says which messages failed (its text names the
	// first ten only).
	gotBad := map[int]bool{}
	var be *kombu.BatchError
	if errors.As(berr, &be) {
		for i, err := range be.Errs {
			if err != nil {
				gotBad[i] = true
			}
		}
	}
	for i, id := range ids {
		if gotBad[i] {
			led.End(id, fmt.Errorf("batch: %w", kombu.ErrUnroutable))
		} else {
			led.End(id, nil)
		}
	}
	if !errors.Is(berr, kombu.ErrUnroutable) || fmt.Sprint(gotBad) != fmt.Sprint(wantBad) {
		wrong = append(wrong, fmt.Sprintf("batch: error names messages %v, want %v (err %v)", keys(gotBad), keys(wantBad), berr))
	}

	rc := consume(t, prod, q, led, "consumer", 0, kombu.WithPrefetch(50))
	missing := led.WaitDelivered(ctxFor(t, 20*time.Second), 500*time.Millisecond)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	row.Note("%d unroutable publishes, each answered ErrUnroutable: %t", len(unroutable), len(wrong) == 0)
	for _, w := range wrong[:min(len(wrong), 10)] {
		t.Error(w)
	}
	if len(wrong) > 10 {
		t.Errorf("… %d wrong answers in all", len(wrong))
	}
	if r.Failed != len(unroutable) || r.Confirmed != r.Sent-len(unroutable) {
		t.Errorf("%d publishes failed and %d were confirmed; want %d unroutable and %d confirmed", r.Failed, r.Confirmed, len(unroutable), r.Sent-len(unroutable))
	}
	if len(missing) > 0 {
		t.Errorf("%d routable confirmed messages never consumed", len(missing))
	}
	for _, id := range r.Recovered {
		if unroutable[id] {
			t.Errorf("unroutable message %s was consumed", id)
		}
	}
	assertCommon(t, r, 10*time.Second, 0)
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	prod.Close()
	adm.Close()
	leaks()
}

func keys(m map[int]bool) []int {
	var out []int
	for i := range 1000 {
		if m[i] {
			out = append(out, i)
		}
	}
	return out
}

// 6b. Returns are matched to publishes by message id. An application that
// reuses a message id (an idempotency key, a republished message) for a
// routable and an unroutable publish at the same time must still get the
// right answer for each: none silently dropped.
func TestAMQP06bUnroutableSameMessageID(t *testing.T) {
	row := figure(t, "6b", "mandatory publishes sharing a message id, one routable and one unroutable, concurrently (200 pairs)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	ex := kombu.Exchange{Name: uniq(t, "ex")}
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	t.Cleanup(func() { _ = ex.Delete(context.Background(), adm) })
	ctx := ctxFor(t, 60*time.Second)
	if err := ex.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	q := kombu.Queue{Name: qname, Bindings: []kombu.Binding{{Exchange: ex.Name, RoutingKey: "routable"}}}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	led := NewLedger("t6b")
	prod := dial(t, direct, uniq(t, "producer"), sink)
	p := kombu.NewProducer(prod, kombu.WithExchange(ex), kombu.WithMandatory())
	var droppedSilently, wronglyRefused atomic.Int64
	for pair := range 200 {
		msgID := fmt.Sprintf("order-%d", pair)
		var wg sync.WaitGroup
		for _, route := range []bool{true, false} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := "nowhere"
				if route {
					key = "routable"
				}
				_, _, err := led.Publish(ctx, 10*time.Second, func(ctx context.Context, id string) error {
					return p.Publish(ctx, body(id), kombu.WithRoutingKey(key), kombu.WithMessageID(msgID),
						kombu.WithHeaders(map[string]any{idHeader: id}))
				})
				switch {
				case route && err != nil:
					wronglyRefused.Add(1)
				case !route && err == nil:
					droppedSilently.Add(1)
				}
			}()
		}
		wg.Wait()
	}
	rc := consume(t, prod, q, led, "consumer", 0, kombu.WithPrefetch(50))
	led.WaitDelivered(ctxFor(t, 20*time.Second), 500*time.Millisecond)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	row.Note("unroutable publishes reported confirmed (silently dropped): %d; routable publishes reported unroutable: %d",
		droppedSilently.Load(), wronglyRefused.Load())
	if droppedSilently.Load() > 0 || wronglyRefused.Load() > 0 {
		t.Errorf("returns matched to the wrong publish by their shared message id: %d unroutable publishes returned nil (silently dropped), %d routable ones failed with ErrUnroutable",
			droppedSilently.Load(), wronglyRefused.Load())
	}
	assertCommon(t, r, 10*time.Second, 0)
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// 7. Deliveries held unacked across an automatic reconnect, then acked: the
// stale acks must not reach the new channel.
func TestAMQP07StaleAcksAfterReconnect(t *testing.T) {
	row := figure(t, "7", "100 deliveries held unacked (prefetch 100), reset_peer once, then acked after the reconnect", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	leaks := leakCheck(t)
	px := proxyTo(t, b.addr)
	sink := &logSink{}
	led := NewLedger("t7")
	ctx := ctxFor(t, 100*time.Second)
	q := queueOf("classic", qname)
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	const n = 100
	publishN(t, led, kombu.NewProducer(adm, kombu.WithRoutingKey(qname)), n)

	cons := dial(t, b.amqpURL(px.Addr()), uniq(t, "consumer"), sink)
	release := make(chan struct{})
	var staleErrs, otherErrs atomic.Int64
	var firstErr atomic.Value
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		d := led.Delivered("consumer", idOf(msg), msg.Redelivered())
		if !msg.Redelivered() {
			<-release // hold the first delivery until after the reconnect
		}
		err := msg.Ack()
		led.Acked(d, err)
		switch {
		case errors.Is(err, kombu.ErrStaleDelivery):
			staleErrs.Add(1)
		case err != nil:
			otherErrs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		return nil
	})
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithPrefetch(n), kombu.WithConcurrency(n))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before rc's cleanup waits for the handlers
	if !eventually(20*time.Second, func() bool { _, _, consumed := led.Counts(); return consumed == n }) {
		_, _, consumed := led.Counts()
		t.Fatalf("only %d of %d delivered before the fault", consumed, n)
	}
	revived, lost := cons.Revived(), cons.Lost()
	injected := time.Now()
	if err := px.AddToxic("reset", "reset_peer", Upstream, map[string]any{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	// The consumer is idle (every handler holds its message), so the reset
	// comes with its next heartbeat.
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not reset within 10 s")
	}
	if err := px.RemoveToxic("reset"); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	select {
	case <-revived:
	case <-time.After(20 * time.Second):
		t.Fatal("the connection did not come back within 20 s")
	}
	row.Recovery = fmtDur(time.Since(removed)) + " (toxic removed → connection revived)"
	row.Note("reset detected %v after the toxic was added (the idle consumer's next heartbeat)", removed.Sub(injected).Round(10*time.Millisecond))
	time.Sleep(time.Second)                   // let the consumer resubscribe
	releaseOnce.Do(func() { close(release) }) // now ack the 100 old deliveries
	if !eventually(30*time.Second, func() bool { return led.Check().Deliveries >= 2*n }) {
		t.Errorf("the %d messages were not all redelivered after the reconnect", n)
	}
	time.Sleep(time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	row.Note("stale acks refused with ErrStaleDelivery: %d of %d; other ack errors: %d", staleErrs.Load(), n, otherErrs.Load())
	if staleErrs.Load() != n {
		t.Errorf("%d of the %d acks made after the reconnect were refused with ErrStaleDelivery; other errors %d (first: %v)",
			staleErrs.Load(), n, otherErrs.Load(), firstErr.Load())
	}
	if recs := sink.find("PRECONDITION_FAILED"); len(recs) > 0 {
		t.Errorf("a channel was closed with PRECONDITION_FAILED (a stale ack reached the broker): %s", recs[0].Text)
	}
	if recs := sink.find("unknown delivery tag"); len(recs) > 0 {
		t.Errorf("a stale delivery tag reached the broker: %s", recs[0].Text)
	}
	for _, id := range led.Missing(true) {
		t.Errorf("message %s never delivered", id)
	}
	// Every message was delivered again on the new session and acked there
	// by its own handler: no new-session message was acked unprocessed.
	var notReacked []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("t7-%06d", i)
		ok := false
		for _, d := range led.DeliveriesOf(id) {
			if d.Redelivered && d.Acked {
				ok = true
			}
		}
		if !ok {
			notReacked = append(notReacked, id)
		}
	}
	if len(notReacked) > 0 {
		t.Errorf("%d messages were not redelivered and acked on the new session: %s", len(notReacked), short(notReacked))
	}
	assertCommon(t, r, 0, n)
	if d := depth(ctx, t, adm, qname); d != 0 {
		t.Errorf("%d messages left in the queue", d)
	}
	stillRunning(t, rc, "consumer")
	finish(t, rc, px, sink, led, leaks, cons, adm)
}

// poisonSetup declares a dead-letter exchange and queue for test 8.
func poisonSetup(t *testing.T, ctx context.Context, adm *kombu.Connection, direct string) (dlx kombu.Exchange, dlq string) {
	dlx = kombu.Exchange{Name: uniq(t, "dlx"), Type: kombu.ExchangeFanout}
	dlq = uniq(t, "dlq")
	cleanupQueue(t, direct, dlq)
	t.Cleanup(func() { _ = dlx.Delete(context.Background(), adm) })
	if err := dlx.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	if _, err := (kombu.Queue{Name: dlq, Bindings: []kombu.Binding{{Exchange: dlx.Name}}}).Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	return dlx, dlq
}

// getDead waits for one message in the dead-letter queue.
func getDead(ctx context.Context, t *testing.T, adm *kombu.Connection, dlq string) *kombu.Message {
	t.Helper()
	for ctx.Err() == nil {
		m, err := (kombu.Queue{Name: dlq}).Get(ctx, adm, kombu.WithAutoAck())
		if err == nil {
			return m
		}
		if !errors.Is(err, kombu.ErrEmpty) {
			t.Fatalf("get from the dead-letter queue: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// 8. A poison message on a quorum queue with x-delivery-limit=3 and a
// dead-letter exchange: the handler always fails and requeues it.
func TestAMQP08PoisonMessageQuorumDeliveryLimit(t *testing.T) {
	row := figure(t, "8", "poison message, handler always requeues; quorum queue x-delivery-limit=3 + DLX", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	ctx := ctxFor(t, 60*time.Second)
	dlx, dlq := poisonSetup(t, ctx, adm, direct)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t8")
	q := kombu.Queue{Name: qname, Type: kombu.QueueQuorum, DeliveryLimit: 3, DeadLetterExchange: dlx.Name}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(adm, kombu.WithRoutingKey(qname))
	poison := led.Begin()
	led.End(poison, p.Publish(ctx, body(poison), kombu.WithHeaders(map[string]any{idHeader: poison, "poison": true})))
	publishN(t, led, p, 50)

	cons := dial(t, direct, uniq(t, "consumer"), sink)
	var counts []any
	var mu sync.Mutex
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		id := idOf(msg)
		d := led.Delivered("consumer", id, msg.Redelivered())
		if id == poison {
			mu.Lock()
			counts = append(counts, msg.Headers["x-delivery-count"])
			mu.Unlock()
			return kombu.Requeue(errors.New("poison"))
		}
		led.Acked(d, msg.Ack())
		return nil
	})
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithPrefetch(10))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)
	dead := getDead(ctxFor(t, 20*time.Second), t, adm, dlq)
	led.WaitDelivered(ctxFor(t, 20*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	deliveries := len(led.DeliveriesOf(poison))
	mu.Lock()
	t.Logf("poison delivered %d times, x-delivery-count %v", deliveries, counts)
	row.Note("poison delivered %d times (x-delivery-count %v), then dead-lettered: %t", deliveries, counts, dead != nil)
	mu.Unlock()
	if dead == nil {
		t.Fatalf("the poison message was not dead-lettered within 20 s (delivered %d times)", deliveries)
	}
	if idOf(dead) != poison {
		t.Errorf("dead-lettered %s, want the poison message %s", idOf(dead), poison)
	}
	if deliveries > 4 {
		t.Errorf("poison message delivered %d times, want ≤ 4", deliveries)
	}
	if _, ok := dead.Headers["x-death"]; !ok {
		t.Errorf("dead-lettered message has no x-death header: %v", dead.Headers)
	}
	mu.Lock()
	if len(counts) < 2 || counts[len(counts)-1] == nil {
		t.Errorf("x-delivery-count not visible on redeliveries: %v", counts)
	}
	mu.Unlock()
	// The other 50 kept flowing and were acked once each.
	if len(r.Lost) > 0 || len(r.Unexpected) > 0 {
		t.Errorf("lost %v, unexpected %v", short(r.Lost), short(r.Unexpected))
	}
	for _, id := range r.Duplicated {
		if id != poison {
			t.Errorf("good message %s delivered more than once", id)
		}
	}
	time.Sleep(time.Second)
	if n := len(led.DeliveriesOf(poison)); n != deliveries {
		t.Errorf("poison message delivered again after it was dead-lettered (%d → %d)", deliveries, n)
	}
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	cons.Close()
	adm.Close()
	leaks()
}

// 8b. The same on a classic queue, relying on the SDK's own retry counter
// (kombu.WithMessageRetry): the handler returns an error every time.
func TestAMQP08bPoisonMessageClassicSDKRetries(t *testing.T) {
	row := figure(t, "8b", "poison message, handler always fails; classic queue + DLX, kombu.WithMessageRetry(MaxRetries 3)", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname, qname+".retry")
	adm := admin(t, direct)
	ctx := ctxFor(t, 60*time.Second)
	dlx, dlq := poisonSetup(t, ctx, adm, direct)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t8b")
	q := kombu.Queue{Name: qname, DeadLetterExchange: dlx.Name}
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(adm, kombu.WithRoutingKey(qname))
	poison := led.Begin()
	led.End(poison, p.Publish(ctx, body(poison), kombu.WithHeaders(map[string]any{idHeader: poison})))
	publishN(t, led, p, 50)

	const maxRetries = 3
	cons := dial(t, direct, uniq(t, "consumer"), sink)
	var retries []any
	var mu sync.Mutex
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		id := idOf(msg)
		d := led.Delivered("consumer", id, msg.Redelivered())
		if id == poison {
			mu.Lock()
			retries = append(retries, msg.Headers[kombu.RetriesHeader])
			mu.Unlock()
			return errors.New("poison")
		}
		led.Acked(d, msg.Ack())
		return nil
	})
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithPrefetch(10),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: maxRetries, IntervalStart: 100 * time.Millisecond, IntervalStep: 100 * time.Millisecond, IntervalMax: 300 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)
	dead := getDead(ctxFor(t, 20*time.Second), t, adm, dlq)
	led.WaitDelivered(ctxFor(t, 20*time.Second), 2*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	deliveries := len(led.DeliveriesOf(poison))
	mu.Lock()
	t.Logf("poison delivered %d times, %s %v", deliveries, kombu.RetriesHeader, retries)
	row.Note("poison delivered %d times (%s %v), then dead-lettered: %t", deliveries, kombu.RetriesHeader, retries, dead != nil)
	if fmt.Sprint(retries) != "[<nil> 1 2 3]" {
		t.Errorf("%s on the poison message's deliveries: %v, want [<nil> 1 2 3]", kombu.RetriesHeader, retries)
	}
	mu.Unlock()
	if dead == nil {
		t.Fatalf("the poison message was not dead-lettered within 20 s (delivered %d times)", deliveries)
	}
	if idOf(dead) != poison {
		t.Errorf("dead-lettered %s, want the poison message %s", idOf(dead), poison)
	}
	if deliveries != maxRetries+1 {
		t.Errorf("poison message delivered %d times, want %d (1 + MaxRetries)", deliveries, maxRetries+1)
	}
	if len(r.Lost) > 0 || len(r.Unexpected) > 0 {
		t.Errorf("lost %v, unexpected %v", short(r.Lost), short(r.Unexpected))
	}
	for _, id := range r.Duplicated {
		if id != poison {
			t.Errorf("good message %s delivered more than once", id)
		}
	}
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := depth(ctx, t, adm, qname+".retry"); d != 0 {
		t.Errorf("%d messages left in the retry queue", d)
	}
	cons.Close()
	adm.Close()
	leaks()
}

// setRabbitEnv sets a rabbit application variable at runtime and restores
// its old value when the test ends.
func setRabbitEnv(t *testing.T, key, value, restore string) {
	t.Helper()
	t.Cleanup(func() {
		if out, err := rabbitmqctlErr("eval", fmt.Sprintf("application:set_env(rabbit, %s, %s).", key, restore)); err != nil {
			t.Errorf("restoring rabbit %s to %s: %v %s", key, restore, err, out)
		}
	})
	rabbitmqctl(t, "eval", fmt.Sprintf("application:set_env(rabbit, %s, %s).", key, value))
}

// 9. The consumer (delivery acknowledgement) timeout: the broker closes the
// consumer's channel with PRECONDITION_FAILED while the handler runs. A bare
// Consumer.Run returns that error, as documented; the SDK's supervisor,
// Worker (Kombu's ConsumerMixin), must surface it, make the consumer again,
// and the message must come back once, redelivered.
func TestAMQP09ConsumerAckTimeout(t *testing.T) {
	row := figure(t, "9", "consumer ack timeout: consumer_timeout=15 s (set at runtime), handler outlives it; consumer run by kombu.Worker", "amqp")
	b := rabbit(t)
	direct := b.amqpURL(b.addr)
	qname := uniq(t, "q")
	cleanupQueue(t, direct, qname)
	adm := admin(t, direct)
	ctx := ctxFor(t, 110*time.Second)
	q := queueOf("classic", qname)
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	// consumer_timeout is read when a channel opens; the check runs on the
	// channel's tick (channel_tick_interval, 60 s by default: the "about
	// once a minute" slack of the docs). Both are set for channels opened
	// from now on, and restored when the test ends.
	const consumerTimeout = 15 * time.Second
	setRabbitEnv(t, "consumer_timeout", "15000", "1800000")
	setRabbitEnv(t, "channel_tick_interval", "1000", "60000")
	row.Note("channel_tick_interval set to 1 s at runtime (default 60 s) so the broker checks every second; both settings restored afterwards")
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t9")
	publishN(t, led, kombu.NewProducer(adm, kombu.WithRoutingKey(qname)), 1)
	const id = "t9-000001"

	cons := dial(t, direct, uniq(t, "consumer"), sink)
	var mu sync.Mutex
	var firstAt time.Time
	var firstAck error
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		d := led.Delivered("consumer", idOf(msg), msg.Redelivered())
		if msg.Redelivered() {
			led.Acked(d, msg.Ack())
			return nil
		}
		mu.Lock()
		firstAt = d.At
		mu.Unlock()
		// Outlive the consumer timeout: until the consumer shuts down
		// (its handler context ends after the shutdown timeout), at most
		// timeout + 60 s of check slack.
		select {
		case <-ctx.Done():
		case <-time.After(consumerTimeout + 60*time.Second):
		}
		err := msg.Ack()
		led.Acked(d, err)
		mu.Lock()
		firstAck = err
		mu.Unlock()
		return nil
	})
	var ready atomic.Int64
	failed := make(chan error, 10)
	w := kombu.NewWorker(cons,
		kombu.WithRestartBackoff(kombu.RetryPolicy{IntervalStart: 200 * time.Millisecond, IntervalStep: 200 * time.Millisecond, IntervalMax: 400 * time.Millisecond}),
		kombu.WithWorkerHooks(kombu.WorkerHooks{
			ConsumeReady: func(*kombu.Consumer) { ready.Add(1) },
			ConsumerFailed: func(err error) {
				select {
				case failed <- err:
				default:
				}
			},
		}))
	// A short shutdown timeout: when the broker ends the consumer, Run
	// waits that long for the handler still holding the message.
	w.Consume(func(c *kombu.Connection) (*kombu.Consumer, error) {
		return kombu.NewConsumer(c, []kombu.Subscription{{Queue: q, Handler: h}}, kombu.WithPrefetch(1),
			kombu.WithShutdownTimeout(time.Second))
	})
	wctx, stopWorker := context.WithCancel(context.Background())
	defer stopWorker()
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()

	var detected time.Duration = -1
	var surfaced error
	select {
	case surfaced = <-failed:
		mu.Lock()
		if !firstAt.IsZero() {
			detected = time.Since(firstAt)
		}
		mu.Unlock()
	case err := <-workerDone:
		t.Fatalf("Worker.Run returned: %v", err)
	case <-time.After(consumerTimeout + 70*time.Second):
	}
	t.Logf("consumer failure surfaced after %s: %v", fmtDur(detected), surfaced)
	row.Note("the 406 surfaced (Worker ConsumerFailed) %s after the delivery: %v", fmtDur(detected), firstLine(surfaced))
	if surfaced == nil {
		t.Fatalf("no consumer failure surfaced within the consumer timeout + 70 s")
	}
	if detected > consumerTimeout+60*time.Second {
		t.Errorf("surfaced after %v, want ≤ timeout + 60 s", detected)
	}
	if !strings.Contains(surfaced.Error(), "PRECONDITION_FAILED") {
		t.Errorf("the channel close was surfaced without its PRECONDITION_FAILED reason: %v", surfaced)
	}
	// The worker makes the consumer again, and the message comes back once.
	if !eventually(20*time.Second, func() bool { return len(led.DeliveriesOf(id)) >= 2 }) {
		t.Errorf("the message was not redelivered to the recreated consumer within 20 s (consumers made: %d)", ready.Load())
	}
	time.Sleep(time.Second)
	ds := led.DeliveriesOf(id)
	t.Logf("deliveries: %+v", ds)
	if len(ds) != 2 || !ds[1].Redelivered || !ds[1].Acked {
		t.Errorf("want exactly 2 deliveries, the second redelivered and acked: %+v", ds)
	}
	if n := ready.Load(); n != 2 {
		t.Errorf("the worker made the consumer %d times, want 2", n)
	}
	mu.Lock()
	if firstAck == nil {
		t.Errorf("acking the timed-out delivery succeeded; its channel is gone")
	}
	mu.Unlock()
	stopWorker()
	select {
	case err := <-workerDone:
		if err != nil {
			t.Errorf("Worker.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Worker.Run did not return within 30 s of its context ending")
	}
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	cons.Close()
	adm.Close()
	leaks()
	if t.Failed() {
		sink.dump(t, 20)
	}
}

// finish ends a fault test: it stops the consumer, closes the connections
// and the proxy, checks that no goroutine is left behind, and, when the
// test failed, prints the last log lines and the ledger's timeline.
func finish(t *testing.T, rc *running, px *Proxy, sink *logSink, led *Ledger, leaks func(), conns ...*kombu.Connection) {
	t.Helper()
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
	px.Close()
	leaks()
	if t.Failed() {
		sink.dump(t, 40)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
		for _, r := range sink.find("kombu: connection closed") {
			t.Logf("FINAL: %s", r.Text)
		}
	}
}
