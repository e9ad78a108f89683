package chaos

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// ackClock records when each delivery's ack returned, and what.
type ackClock struct {
	mu   sync.Mutex
	at   map[*Delivery]time.Time
	led  *Ledger
	slow int             // how many of the next deliveries take slowDelay
	held map[string]bool // the ids of those
}

// handler records each delivery, works delay (slowDelay for the slow
// ones), acks the message itself and records when.
func (a *ackClock) handler(name string, delay, slowDelay time.Duration) kombu.Handler {
	return kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		d := a.led.Delivered(name, idOf(msg), msg.Redelivered())
		work := delay
		a.mu.Lock()
		if a.slow > 0 {
			a.slow--
			a.held[d.ID] = true
			work = slowDelay
		}
		a.mu.Unlock()
		select {
		case <-time.After(work):
		case <-ctx.Done():
		}
		err := msg.Ack()
		a.led.Acked(d, err)
		a.mu.Lock()
		a.at[d] = time.Now()
		a.mu.Unlock()
		return nil
	})
}

// slowNext makes the next n deliveries slow.
func (a *ackClock) slowNext(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.slow = n
}

// heldIDs returns the ids of the slow deliveries.
func (a *ackClock) heldIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Collect(maps.Keys(a.held))
}

// ackedBetween returns the ids whose ack returned nil between from and to.
func (a *ackClock) ackedBetween(from, to time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for d, at := range a.at {
		if d.AckErr == nil && !at.Before(from) && !at.After(to) {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// 13b. The Redis server restarted under publish+consume load (issue 11,
// point 10): a publish caught by the outage waits for the new connection,
// bounded by its context, and publishes again, as on RabbitMQ (test 4);
// acknowledgements made while Redis is down are applied once it is back,
// and the messages the old connection still held come back at once, not
// after the visibility timeout.
func TestRedis13bServerRestart(t *testing.T) {
	row := figure(t, "13b", "Redis restart: private redis-server (AOF, fsync always) stopped (SIGTERM) for 3 s and started again during publish+consume; visibility_timeout 3600 s", "redis")
	srv := brokertest.StartRedis(t)
	u, _ := url.Parse(srv.URL(redisDB))
	b := broker{u: u, addr: srv.Addr()}
	rawURL := b.redisURL(b.addr, "visibility_timeout=3600")
	qname := uniq(t, "q")
	q := queueOf("classic", qname)
	leaks := leakCheck(t)
	sink := &logSink{}
	led := NewLedger("t13b")
	clock := &ackClock{at: map[*Delivery]time.Time{}, led: led, held: map[string]bool{}}
	const (
		prefetch    = 20
		concurrency = 6
		workers     = 4
		timeout     = 20 * time.Second
		down        = 3 * time.Second
	)
	prod := dial(t, rawURL, uniq(t, "producer"), sink)
	cons := dial(t, rawURL, uniq(t, "consumer"), sink)
	c, err := kombu.NewConsumer(cons, []kombu.Subscription{{Queue: q, Handler: clock.handler("consumer", 20*time.Millisecond, 3*down)}},
		kombu.WithPrefetch(prefetch), kombu.WithConcurrency(concurrency))
	if err != nil {
		t.Fatal(err)
	}
	rc := run(t, c)

	start := time.Now()
	pctx, cancel := context.WithDeadline(context.Background(), start.Add(3*time.Second+down+6*time.Second))
	defer cancel()
	pubDone := make(chan struct{})
	var pubErrs sync.Map // distinct error texts
	go func() {
		defer close(pubDone)
		publisher{led: led, p: kombu.NewProducer(prod, kombu.WithRoutingKey(qname)), workers: workers, rate: 200, timeout: timeout,
			onResult: func(_ string, o Outcome, err error) {
				if o != Confirmed {
					pubErrs.Store(err.Error(), true)
				}
			}}.run(pctx)
	}()
	// Two handlers that start just before the stop outlast the outage:
	// their messages are still held by the lost connection when the new
	// one is up. The other handlers go on with the messages prefetched,
	// and ack them while Redis is down.
	sleepUntil(start.Add(3*time.Second - 100*time.Millisecond))
	clock.slowNext(2)
	sleepUntil(start.Add(3 * time.Second))
	led.Inject()
	stopped := time.Now()
	srv.Stop()
	sleepUntil(stopped.Add(down))
	srv.Start()
	restarted := time.Now()
	led.Remove()
	<-pubDone
	missing := led.WaitDelivered(ctxFor(t, 40*time.Second), 2*time.Second)
	r := led.Check()
	row.Result = &r
	t.Log(r.Summary())
	duringOutage := clock.ackedBetween(stopped, restarted)
	t.Logf("Redis down %v; %d acks made while it was down", restarted.Sub(stopped).Round(100*time.Millisecond), len(duringOutage))
	row.Note("Redis down %v; %d acks made while it was down; max publish wait %v; duplicates %d (%d not marked redelivered)",
		restarted.Sub(stopped).Round(100*time.Millisecond), len(duringOutage), r.MaxPublishLatency.Round(100*time.Millisecond),
		len(r.Duplicated), len(r.RepeatNotRedelivered))

	if r.Failed+r.Unknown > 0 {
		var texts []string
		pubErrs.Range(func(k, _ any) bool { texts = append(texts, k.(string)); return true })
		t.Errorf("%d publishes failed and %d gave up at their %v deadline; want none: a publish caught by the outage waits for the new connection. Errors: %s",
			r.Failed, r.Unknown, timeout, short(texts))
	}
	if len(missing) > 0 {
		t.Errorf("%d confirmed messages not consumed within 40 s", len(missing))
	}
	// Duplicates: the messages the lost connection still held, put back at
	// once (marked redelivered), and publishes whose write Redis applied
	// but whose reply the stop cut off, made again (at least once, as on
	// RabbitMQ): at most one per publishing goroutine.
	assertCommon(t, r, timeout, prefetch+concurrency+workers)
	if len(r.RepeatNotRedelivered) > workers {
		t.Errorf("%d messages enqueued twice (a duplicate not marked redelivered), more than the %d publishes in flight: %s",
			len(r.RepeatNotRedelivered), workers, short(r.RepeatNotRedelivered))
	}
	if len(duringOutage) == 0 {
		t.Errorf("no ack was made while Redis was down: the test did not exercise acks during the outage")
	}
	for _, id := range duringOutage {
		if ds := led.DeliveriesOf(id); len(ds) > 1 {
			t.Errorf("message %s, acked while Redis was down, was delivered again: the ack was not applied: %+v", id, ds)
		}
	}
	// The messages whose handlers outlasted the outage came back at once,
	// not after the visibility timeout (3600 s).
	held := clock.heldIDs()
	if len(held) != 2 {
		t.Errorf("no handler was running across the outage: the test did not exercise messages held by the lost connection")
	}
	for _, id := range held {
		ds := led.DeliveriesOf(id)
		if len(ds) < 2 || !ds[len(ds)-1].Redelivered || ds[len(ds)-1].At.Sub(restarted) > 20*time.Second {
			t.Errorf("message %s, held by the lost connection, was not redelivered (marked so) within 20 s of the restart: %+v", id, ds)
		}
	}
	t.Logf("%d messages held across the outage, redelivered after the restart", len(held))
	row.Note("%d messages whose handlers outlasted the outage redelivered after the restart (visibility timeout 3600 s)", len(held))
	if r.Recovery < 0 || r.Recovery > 20*time.Second {
		t.Errorf("recovery took %s after the restart, want ≤ 20 s", fmtDur(r.Recovery))
	}
	stillRunning(t, rc, "consumer")
	if err := rc.stop(t); err != nil {
		t.Errorf("Run: %v", err)
	}
	prod.Close()
	cons.Close()
	// Every message was acked, those acked during the outage included, and
	// nothing is left waiting for the visibility timeout.
	if h := strings.TrimSpace(redisCLI(t, b, "HLEN", "unacked")); h != "0" {
		t.Errorf("%s entries left in the unacked hash: acknowledgements lost, or messages stranded until the visibility timeout", h)
	}
	if n := strings.TrimSpace(redisCLI(t, b, "LLEN", qname)); n != "0" {
		t.Errorf("%s messages left in the queue", n)
	}
	leaks()
	if t.Failed() {
		sink.dump(t, 40)
		t.Logf("timeline:\n%s", led.Timeline(time.Second))
		t.Logf("redis-server log:\n%s", srv.Log())
	}
}
