package chaos

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Tests 10–13 of reliability.md §6: Redis (transports/redis), database
// redisDB, every key under a prefix unique to the test (global_keyprefix),
// so that the unacked hash and index are the test's own.

// redisSetup returns the Redis endpoint and the key prefix of the test, and
// deletes the test's keys when it ends.
func redisSetup(t *testing.T) (broker, string) {
	t.Helper()
	b := redisBroker(t)
	prefix := uniq(t, "") + ":"
	t.Cleanup(func() {
		redisCLI(t, b, "EVAL", `for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0`, "0",
			strings.ReplaceAll(prefix, "*", `\*`)+"*")
	})
	return b, prefix
}

func redisQuery(prefix string, vt time.Duration) string {
	return "visibility_timeout=" + strings.TrimSuffix(vt.String(), "s") + "&global_keyprefix=" + prefix
}

// 10. A Redis worker killed (SIGKILL) between taking a message and acking
// it: the message comes back after the visibility timeout.
func TestRedis10WorkerKilledBetweenPopAndAck(t *testing.T) {
	row := figure(t, "10", "Redis worker SIGKILLed mid-handler (visibility_timeout 5 s, prefetch 10), then restarted", "redis")
	b, prefix := redisSetup(t)
	const vt, prefetch, n = 5 * time.Second, 10, 1000
	url := b.redisURL(b.addr, redisQuery(prefix, vt))
	qname := uniq(t, "q")
	adm := admin(t, url)
	leaks := leakCheck(t)
	led := NewLedger("t10")
	ctx := ctxFor(t, 100*time.Second)
	if _, err := queueOf("classic", qname).Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	publishN(t, led, kombu.NewProducer(adm, kombu.WithRoutingKey(qname)), n)

	c1 := startChild(t, led, "child1", url, "classic", qname, prefetch, 5*time.Millisecond, 200)
	select {
	case <-c1.hung: // its 200th handler never returns
	case <-time.After(30 * time.Second):
		t.Fatalf("child1 handled only %d messages in 30 s", c1.delivered.Load())
	}
	c1.kill()
	killed := time.Now()
	// After the kill, every line child1 wrote has been read: these are the
	// deliveries its handler had and never acked.
	inflight := c1.inFlight()
	unacked := strings.TrimSpace(redisCLI(t, b, "HLEN", prefix+"unacked"))
	ready := strings.TrimSpace(redisCLI(t, b, "LLEN", prefix+qname))
	t.Logf("child1 killed after %d deliveries, %d acks; in its handler: %v; right after: %s ready, %s unacked",
		c1.delivered.Load(), c1.acked.Load(), inflight, ready, unacked)
	// No message in limbo: every message is still in the queue, recorded
	// as unacked, or was acked by child1 (an ack not yet flushed leaves it
	// counted twice, hence ≥). Kombu's BRPOP-then-record would lose the
	// messages popped and not yet recorded.
	var nReady, nUnacked int
	fmt.Sscan(ready, &nReady)
	fmt.Sscan(unacked, &nUnacked)
	if acked := int(c1.acked.Load()); nReady+nUnacked+acked < n {
		t.Errorf("after the kill: %d ready + %d unacked + %d acked = %d < %d published: messages taken and not recorded",
			nReady, nUnacked, acked, nReady+nUnacked+acked, n)
	}

	c2 := startChild(t, led, "child2", url, "classic", qname, prefetch, 5*time.Millisecond, 0)
	missing := led.WaitDelivered(ctxFor(t, 60*time.Second), 2*time.Second)
	if err := c2.term(); err != nil {
		t.Errorf("child2: %v: %s", err, c2.stderr.String())
	}
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	// When did child1's messages come back?
	var back time.Duration = -1
	for _, id := range inflight {
		for _, d := range led.DeliveriesOf(id) {
			if d.Consumer == "child2" {
				if dd := d.At.Sub(killed); back < 0 || dd > back {
					back = dd
				}
			}
		}
	}
	restoreInterval := vt / 2
	limit := vt + restoreInterval + 3*time.Second
	row.Recovery = fmtDur(back) + " (kill → last in-flight message redelivered)"
	row.Note("%d in child1's handler at the kill; back after %s (limit visibility timeout + restore interval + 3 s = %v); unacked entries at the kill %s",
		len(inflight), fmtDur(back), limit, unacked)
	if len(inflight) == 0 {
		t.Errorf("child1 was not killed in the middle of a handler")
	}
	for _, id := range inflight {
		ds := led.DeliveriesOf(id)
		if len(ds) < 2 || !ds[len(ds)-1].Redelivered {
			t.Errorf("message %s, in child1's handler at the kill, was not redelivered with redelivered=true: %+v", id, ds)
		}
	}
	if back < 0 || back > limit {
		t.Errorf("in-flight messages back after %s, want ≤ %v", fmtDur(back), limit)
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages never consumed", len(missing))
	}
	assertCommon(t, r, 0, 2*prefetch)
	if len(r.RepeatNotRedelivered) > 0 {
		t.Errorf("%d duplicates without redelivered=true: %s", len(r.RepeatNotRedelivered), short(r.RepeatNotRedelivered))
	}
	if d := depth(ctx, t, adm, qname); d != 0 {
		t.Errorf("%d messages left in the queue", d)
	}
	if h := strings.TrimSpace(redisCLI(t, b, "HLEN", prefix+"unacked")); h != "0" {
		t.Errorf("%s entries left in the unacked hash", h)
	}
	adm.Close()
	leaks()
}

// 11. Handlers that run longer than the visibility timeout, while an idle
// consumer with room to spare watches the same queue.
func TestRedis11HandlerLongerThanVisibilityTimeout(t *testing.T) {
	row := figure(t, "11", "handler 12 s > visibility_timeout 5 s, with an idle second consumer on another connection", "redis")
	row.Note("the SDK renews leases while a message is unsettled; it has no switch to turn that off, so the lease-less half of the test (Celery's loop) is not run")
	b, prefix := redisSetup(t)
	const vt = 5 * time.Second
	url := b.redisURL(b.addr, redisQuery(prefix, vt))
	qname := uniq(t, "q")
	q := queueOf("classic", qname)
	adm := admin(t, url)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t11")
	ctx := ctxFor(t, 60*time.Second)
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	publishN(t, led, kombu.NewProducer(adm, kombu.WithRoutingKey(qname)), 3)
	busy := dial(t, url, prefix+"busy", sink)
	rcA := consume(t, busy, q, led, "busy", 12*time.Second, kombu.WithPrefetch(3), kombu.WithConcurrency(3))
	if !eventually(10*time.Second, func() bool { _, _, c := led.Counts(); return c == 3 }) {
		t.Fatal("the busy consumer did not take the 3 messages")
	}
	idle := dial(t, url, prefix+"idle", sink)
	rcB := consume(t, idle, q, led, "idle", 0, kombu.WithPrefetch(6), kombu.WithConcurrency(6))
	time.Sleep(12*time.Second + vt + 3*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	if len(r.Duplicated) > 0 {
		for _, id := range r.Duplicated {
			t.Errorf("message %s handed out again while its handler was running: %+v", id, led.DeliveriesOf(id))
		}
	}
	for _, id := range []string{"t11-000001", "t11-000002", "t11-000003"} {
		ds := led.DeliveriesOf(id)
		if len(ds) == 0 || !ds[0].Acked {
			t.Errorf("message %s not acked by its long handler: %+v", id, ds)
		}
	}
	assertCommon(t, r, 0, 0)
	for _, rc := range []*running{rcA, rcB} {
		stillRunning(t, rc, "consumer")
		if err := rc.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	if h := strings.TrimSpace(redisCLI(t, b, "HLEN", prefix+"unacked")); h != "0" {
		t.Errorf("%s entries left in the unacked hash", h)
	}
	busy.Close()
	idle.Close()
	adm.Close()
	leaks()
	if t.Failed() {
		sink.dump(t, 30)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
	}
}

// 12. Redis connections killed (CLIENT KILL) every 2 s while publishing and
// consuming, with go-redis's default retries.
func TestRedis12ClientKillDuringPublish(t *testing.T) {
	row := figure(t, "12", "CLIENT KILL of every producer and consumer connection every 2 s for 12 s while publishing (go-redis MaxRetries 3)", "redis")
	row.Note("the SDK has no idempotent-enqueue mode, so the 'duplicates = 0' half of the test is not run; duplicates are measured")
	b, prefix := redisSetup(t)
	url := b.redisURL(b.addr, redisQuery(prefix, 10*time.Second))
	qname := uniq(t, "q")
	q := queueOf("classic", qname)
	adm := admin(t, url)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t12")
	ctx := ctxFor(t, 100*time.Second)
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	const (
		prefetch = 20
		workers  = 2
		timeout  = 5 * time.Second
	)
	prod := dial(t, url, prefix+"producer", sink)
	cons := dial(t, url, prefix+"consumer", sink)
	rc := consume(t, cons, q, led, "consumer", 0, kombu.WithPrefetch(prefetch))
	start := time.Now()
	pctx, cancel := context.WithDeadline(context.Background(), start.Add(17*time.Second))
	defer cancel()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: workers, rate: 300, timeout: timeout}.run(pctx)
	}()
	kills := 0
	for at := 2 * time.Second; at <= 12*time.Second; at += 2 * time.Second {
		sleepUntil(start.Add(at))
		ids := redisClientIDs(t, b, prefix)
		led.Inject()
		for _, id := range ids {
			redisCLI(t, b, "CLIENT", "KILL", "ID", id)
		}
		led.Remove()
		kills++
		if len(ids) == 0 {
			t.Errorf("no Redis client named %s*: the SDK did not name its connections", prefix)
		}
	}
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 30*time.Second), 2*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, url, q, led, &r, row)
	row.Note("%d kills; duplicates %d (%d not marked redelivered, i.e. enqueued twice); failed-but-delivered %d",
		kills, len(r.Duplicated), len(r.RepeatNotRedelivered), len(r.FailedButDelivered))
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed by the test's consumer within 30 s", len(missing))
	}
	assertCommon(t, r, timeout, kills*(workers+prefetch))
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery after a kill took %s, want ≤ 20 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	prod.Close()
	cons.Close()
	adm.Close()
	leaks()
	if t.Failed() {
		sink.dump(t, 30)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
	}
}

// cpuTime returns the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// 13. The Redis server stalls for 10 s (CLIENT PAUSE ALL).
func TestRedis13ServerStall(t *testing.T) {
	row := figure(t, "13", "Redis stall: CLIENT PAUSE 10000 ALL while publishing and consuming", "redis")
	b, prefix := redisSetup(t)
	url := b.redisURL(b.addr, redisQuery(prefix, 30*time.Second))
	qname := uniq(t, "q")
	q := queueOf("classic", qname)
	adm := admin(t, url)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t13")
	ctx := ctxFor(t, 100*time.Second)
	if _, err := q.Declare(ctx, adm); err != nil {
		t.Fatal(err)
	}
	const (
		workers = 2
		timeout = 3 * time.Second
	)
	prod := dial(t, url, prefix+"producer", sink)
	cons := dial(t, url, prefix+"consumer", sink)
	rc := consume(t, cons, q, led, "consumer", 0, kombu.WithPrefetch(20))
	start := time.Now()
	pctx, cancel := context.WithDeadline(context.Background(), start.Add(3*time.Second+10*time.Second+6*time.Second))
	defer cancel()
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: workers, rate: 100, timeout: timeout}.run(pctx)
	}()
	sleepUntil(start.Add(3 * time.Second))
	logsBefore := len(sink.find("level=WARN")) + len(sink.find("level=ERROR"))
	cpu0 := cpuTime()
	led.Inject()
	paused := time.Now()
	redisCLI(t, b, "CLIENT", "PAUSE", "10000", "ALL")
	sleepUntil(paused.Add(10 * time.Second))
	led.Remove()
	cpu := cpuTime() - cpu0
	logs := len(sink.find("level=WARN")) + len(sink.find("level=ERROR")) - logsBefore
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 30*time.Second), time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	salvage(t, url, q, led, &r, row)
	t.Logf("during the 10 s pause: %v CPU, %d warnings/errors logged", cpu.Round(time.Millisecond), logs)
	row.Note("CPU during the pause %v, warnings/errors logged %d; failed-but-delivered %d",
		cpu.Round(time.Millisecond), logs, len(r.FailedButDelivered))
	if cpu > 2*time.Second {
		t.Errorf("the process used %v of CPU during the 10 s pause: spinning", cpu)
	}
	if logs > 50 {
		t.Errorf("%d warnings/errors logged during the 10 s pause", logs)
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed by the test's consumer within 30 s", len(missing))
	}
	assertCommon(t, r, timeout, workers+20)
	if r.Recovery < 0 || r.Recovery > 2*time.Second {
		t.Errorf("throughput back %s after the pause ended, want ≤ 2 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	prod.Close()
	cons.Close()
	adm.Close()
	leaks()
	if t.Failed() {
		sink.dump(t, 30)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
	}
}
