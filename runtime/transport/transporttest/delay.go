package transporttest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Delayed delivery (transport.FeatureDelay): a message published with a
// Delay is seen by no consumer, nor counted in its queue, before the delay
// has passed, and arrives whole after it, through its exchange as a publish
// would. Each check reports how late the message came (the README and the
// drivers' own tests measure the distribution; here lateness only fails
// past maxLateness, so that a slow machine does not fail the contract).
//
// The delays are short (one to two seconds): every transport works in the
// same units for any delay, and RabbitMQ's topology in whole seconds.

// maxLateness bounds how late a delayed message may arrive in these checks.
const maxLateness = 2 * time.Second

var delayChecks = []check{
	{name: "HeldBack", need: transport.FeatureDelay, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		const delay = 1500 * time.Millisecond
		p := &transport.Publishing{
			RoutingKey: q, Body: []byte("later"), Delay: delay,
			Headers:    map[string]any{"reminder": "tea"},
			Properties: transport.Properties{ContentType: "text/plain", ContentEncoding: "utf-8", MessageID: "delayed-1"},
		}
		start := time.Now()
		e.publish(c, p)
		e.empty(c, q)
		if n := e.ready(c, q); n != 0 {
			e.t.Errorf("the queue counts %d ready messages before the delay passed, want 0", n)
		}
		d := e.waitGet(c, q, start, delay)
		if string(d.Body) != "later" || d.Properties.MessageID != "delayed-1" || d.Properties.ContentType != "text/plain" {
			e.t.Errorf("delivered %q with properties %+v", d.Body, d.Properties)
		}
		e.sameHeaders("the delayed message's headers", d.Headers, map[string]any{"reminder": "tea"})
		if d.RoutingKey != q || d.Exchange != "" {
			e.t.Errorf("delivered from exchange %q with key %q, want the default exchange with %q", d.Exchange, d.RoutingKey, q)
		}
	}},
	{name: "ThroughExchange", need: transport.FeatureDelay, run: func(e *env) {
		c := e.conn()
		typ, key, bindKey := transport.ExchangeDirect, "delay.one", "delay.one"
		if e.has(transport.FeatureTopic) {
			typ, bindKey = transport.ExchangeTopic, "delay.*"
		}
		x := e.exchange(c, typ)
		q := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: q, RoutingKey: bindKey})
		start := time.Now()
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: key, Body: []byte("later"), Delay: time.Second})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: key, Body: []byte("now")})
		e.wantBodies("right after publishing", e.drain(c, q), "now")
		d := e.waitGet(c, q, start, time.Second)
		if string(d.Body) != "later" || d.Exchange != x || d.RoutingKey != key {
			e.t.Errorf("delivered %q from exchange %q with key %q, want %q from %q with %q", d.Body, d.Exchange, d.RoutingKey, "later", x, key)
		}
	}},
	{name: "Consume", need: transport.FeatureDelay, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, AutoAck: true})
		start := time.Now()
		// Published longest first: they arrive by due time.
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("two"), Delay: 2 * time.Second})
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("one"), Delay: time.Second})
		e.quiet(sub)
		for _, want := range []struct {
			body  string
			delay time.Duration
		}{{"one", time.Second}, {"two", 2 * time.Second}} {
			d := e.recv(sub)
			e.onTime(string(d.Body), start, want.delay)
			if string(d.Body) != want.body {
				e.t.Errorf("received %q, want %q (the shorter delay first)", d.Body, want.body)
			}
		}
		e.cancel(sub)
	}},
	{name: "Batch", need: transport.FeatureDelay, run: func(e *env) {
		c := e.conn()
		bp, ok := c.(transport.BatchPublisher)
		if !ok {
			e.t.Skip("the driver has no PublishBatch")
		}
		q := e.queue(c, nil)
		confirm := e.has(transport.FeatureConfirms)
		start := time.Now()
		err := bp.PublishBatch(e.ctx(), []*transport.Publishing{
			{RoutingKey: q, Body: []byte("later"), Delay: time.Second, Confirm: confirm},
			{RoutingKey: q, Body: []byte("now"), Confirm: confirm},
		})
		if err != nil {
			e.t.Fatalf("PublishBatch: %v", err)
		}
		e.wantBodies("right after publishing", e.drain(c, q), "now")
		if d := e.waitGet(c, q, start, time.Second); string(d.Body) != "later" {
			e.t.Errorf("delivered %q, want %q", d.Body, "later")
		}
	}},
}

// waitGet polls queue until the delayed message published at start arrives,
// checks that it did not arrive before delay had passed nor much after, and
// returns it.
func (e *env) waitGet(c transport.Conn, queue string, start time.Time, delay time.Duration) *transport.Delivery {
	e.t.Helper()
	deadline := start.Add(delay + e.s.o.timeout)
	for {
		d, err := c.Get(e.ctx(), queue, true)
		if err == nil {
			e.onTime(string(d.Body), start, delay)
			return d
		}
		if !errors.Is(err, transport.ErrEmpty) {
			e.t.Fatalf("get from %q: %v", queue, err)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the message delayed by %v did not arrive within %v", delay, delay+e.s.o.timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lateness is how late now is for a message due delay after start, by
// the clock that says it is the later: the monotonic clock, or the wall
// clock, on which a store that shares due times between processes keeps
// them (file names, SQL rows, sorted-set scores). The two drift apart
// while the system slews its time: here the wall clock once ran 0.5%
// fast, and messages due by it arrived "early" by the monotonic clock.
// A message is early only if it is early by both.
func lateness(start time.Time, delay time.Duration, now time.Time) time.Duration {
	mono := now.Sub(start) - delay
	wall := now.Round(0).Sub(start.Round(0)) - delay
	return max(mono, wall)
}

// onTime checks that a message published at start with the delay arrives
// now, no earlier than due and at most maxLateness after.
func (e *env) onTime(body string, start time.Time, delay time.Duration) {
	e.t.Helper()
	late := lateness(start, delay, time.Now())
	switch {
	case late < 0:
		e.t.Errorf("%q arrived %v before its delay of %v had passed", body, -late, delay)
	case late > maxLateness:
		e.t.Errorf("%q arrived %v after its delay of %v had passed, want at most %v", body, late, delay, maxLateness)
	default:
		e.t.Logf("%q delayed by %v arrived %v late", body, delay, late.Round(time.Millisecond))
	}
}

// DelayLateness measures how late delayed messages arrive: it publishes n
// messages to queue through the default exchange, delayed from 1 s up in
// steps of 75 ms (whole and fractional seconds), consumes them as they
// come, and returns by how much each arrived after its delay had passed.
// It fails the test if one arrives early or not within 30 s. The caller
// declares queue (empty) and reports the figures (Lateness).
func DelayLateness(t testing.TB, c transport.Conn, queue string, n int) []time.Duration {
	t.Helper()
	ctx, cancel := callContext()
	defer cancel()
	sub, err := c.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, AutoAck: true})
	if err != nil {
		t.Fatalf("consume %q: %v", queue, err)
	}
	defer sub.Cancel(context.Background())
	confirm := c.Features().Has(transport.FeatureConfirms)
	var mu sync.Mutex
	due := make(map[string]time.Time, n)
	for i := range n {
		d := time.Duration(1000+75*i) * time.Millisecond
		body := strconv.Itoa(i)
		start := time.Now()
		if err := c.Publish(ctx, &transport.Publishing{RoutingKey: queue, Body: []byte(body), Delay: d, Confirm: confirm}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		mu.Lock()
		due[body] = start.Add(d)
		mu.Unlock()
	}
	out := make([]time.Duration, 0, n)
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case dl, ok := <-sub.Deliveries():
			if !ok {
				t.Fatalf("the subscription ended: %v", sub.Err())
			}
			now := time.Now()
			mu.Lock()
			at, found := due[string(dl.Body)]
			delete(due, string(dl.Body))
			mu.Unlock()
			if !found {
				t.Fatalf("unexpected or duplicate message %q", dl.Body)
			}
			late := lateness(at, 0, now)
			if late < 0 {
				t.Errorf("message %s arrived %v early", dl.Body, -late)
			}
			out = append(out, late)
		case <-timeout:
			t.Fatalf("only %d of %d delayed messages arrived within 30 s", len(out), n)
		}
	}
	return out
}

// Lateness summarizes DelayLateness's figures: the median, the 99th
// percentile and the largest, to the millisecond.
func Lateness(ds []time.Duration) (p50, p99, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond) }
	return at(0.50), at(0.99), s[len(s)-1].Round(time.Millisecond)
}
