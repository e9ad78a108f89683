package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
)

// delayURL returns the test broker's URL with a delayed-delivery topology
// of the test's own (Kombu main's prefix), of the given queue type, and
// deletes that topology, relays included, when the test ends. The tests
// never declare the unprefixed celery_delayed_* names on the shared broker,
// whose type a Celery worker or another run may have chosen differently.
func delayURL(t *testing.T, queueType string) (url, prefix string) {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	prefix = "kgotest" + hex.EncodeToString(b[:])
	url = fmt.Sprintf("%s?native_delayed_delivery_queue_type=%s&native_delayed_delivery_prefix=%s",
		strings.TrimSuffix(brokertest.AMQPURL(t), "?"), queueType, prefix)
	t.Cleanup(func() { deleteTopology(t, prefix) })
	return url, prefix
}

// deleteTopology deletes every queue and exchange whose name starts with
// prefix_, as rabbitmqctl lists them.
func deleteTopology(t *testing.T, prefix string) {
	cleanup(t, func(c transport.Conn) error {
		var errs []error
		ctx := context.Background()
		for _, q := range listed(t, "list_queues", prefix) {
			if _, err := c.DeleteQueue(ctx, q, false, false); err != nil {
				errs = append(errs, err)
			}
		}
		for _, x := range listed(t, "list_exchanges", prefix) {
			if err := c.DeleteExchange(ctx, x, false); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

func listed(t *testing.T, what, prefix string) []string {
	var out []string
	for _, line := range strings.Split(string(rabbitmqctl(t, "-q", what, "name")), "\n") {
		if name := strings.TrimSpace(line); strings.HasPrefix(name, prefix+"_") {
			out = append(out, name)
		}
	}
	return out
}

// TestDelayTopology checks the topology against what Kombu 5.5's
// declare_native_delayed_delivery_exchanges_and_queues declares, as
// rabbitmqctl lists it: 28 level queues with their arguments, 28 level
// exchanges and the delivery exchange, all durable topic exchanges, and the
// bindings with Kombu's keys.
func TestDelayTopology(t *testing.T) {
	t.Parallel()
	for _, qt := range []string{"classic", "quorum"} {
		t.Run(qt, func(t *testing.T) {
			t.Parallel()
			url, prefix := delayURL(t, qt)
			c := open(t, url)
			q := queue(t, c, "dest", nil)
			// Three days (259200 s, whose highest bit is 2^17) waits in
			// level 17 first (its first publish declares the topology).
			if err := c.Publish(ctxT(t), &transport.Publishing{RoutingKey: q, Body: []byte("in three days"), Delay: 72 * time.Hour, Confirm: true}); err != nil {
				t.Fatalf("delayed publish: %v", err)
			}
			// Quorum queues report their message counts every few seconds:
			// read until level 17 counts the message.
			var queues map[string]string
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
				queues = map[string]string{}
				for _, line := range strings.Split(string(rabbitmqctl(t, "-q", "list_queues", "name", "type", "durable", "arguments", "messages")), "\n") {
					f := strings.Split(line, "\t")
					if len(f) == 5 && strings.HasPrefix(f[0], prefix+"_celery_delayed_") {
						queues[f[0]] = f[1] + " " + f[2] + " " + f[3] + " " + f[4]
					}
				}
				if strings.HasSuffix(queues[prefix+"_celery_delayed_17"], " 1") || time.Now().After(deadline) {
					break
				}
			}
			if len(queues) != 28 {
				t.Fatalf("%d level queues, want 28: %v", len(queues), queues)
			}
			for level := range 28 {
				name := fmt.Sprintf("%s_celery_delayed_%d", prefix, level)
				got := queues[name]
				dlx := fmt.Sprintf("%s_celery_delayed_%d", prefix, level-1)
				if level == 0 {
					dlx = prefix + "_celery_delayed_delivery"
				}
				for _, want := range []string{
					qt + " true ",
					`{"x-dead-letter-exchange","` + dlx + `"}`,
					fmt.Sprintf(`{"x-message-ttl",%d}`, (1<<level)*1000),
					`{"x-overflow","reject-publish"}`,
					`{"x-queue-type","` + qt + `"}`,
				} {
					if !strings.Contains(got, want) {
						t.Errorf("%s: %s, lacks %s", name, got, want)
					}
				}
				if want := map[bool]string{true: " 1", false: " 0"}[level == 17]; !strings.HasSuffix(got, want) {
					t.Errorf("%s holds %s messages, want%s (the three-day message waits in level 17)", name, got, want)
				}
				if strategy := strings.Contains(got, `{"x-dead-letter-strategy","at-least-once"}`); strategy != (qt == "quorum") {
					t.Errorf("%s: %s: x-dead-letter-strategy present = %t, want %t", name, got, strategy, qt == "quorum")
				}
			}
			var bindings []string
			for _, line := range strings.Split(string(rabbitmqctl(t, "-q", "list_bindings", "source_name", "destination_name", "destination_kind", "routing_key")), "\n") {
				if strings.HasPrefix(line, prefix+"_celery_delayed_") {
					bindings = append(bindings, strings.ReplaceAll(line, prefix+"_", ""))
				}
			}
			var want []string
			for level := 27; level >= 0; level-- {
				stars := strings.Repeat("*.", 27-level)
				want = append(want, fmt.Sprintf("celery_delayed_%d\tcelery_delayed_%d\tqueue\t%s1.#", level, level, stars))
				next := fmt.Sprintf("celery_delayed_%d", level-1)
				if level == 0 {
					next = "celery_delayed_delivery"
				}
				want = append(want, fmt.Sprintf("celery_delayed_%d\t%s\texchange\t%s0.#", level, next, stars))
			}
			sort.Strings(want)
			var levelBindings []string
			for _, b := range bindings {
				if !strings.HasPrefix(b, "celery_delayed_delivery\t") {
					levelBindings = append(levelBindings, b)
				}
			}
			sort.Strings(levelBindings)
			if !slices.Equal(levelBindings, want) {
				t.Errorf("bindings:\n%s\nwant:\n%s", strings.Join(levelBindings, "\n"), strings.Join(want, "\n"))
			}
			// The one binding from the delivery exchange is the relay's.
			if n := len(bindings) - len(levelBindings); n != 1 {
				t.Errorf("%d bindings from the delivery exchange, want 1 (the relay's): %q", n, bindings)
			}
			for _, line := range strings.Split(string(rabbitmqctl(t, "-q", "list_exchanges", "name", "type", "durable", "auto_delete", "internal")), "\n") {
				if strings.HasPrefix(line, prefix+"_") && !strings.HasSuffix(line, "topic\ttrue\tfalse\tfalse") {
					t.Errorf("exchange %s, want a durable topic exchange", line)
				}
			}
		})
	}
}

// TestDelayLateness measures, on classic and quorum topologies, how late
// delayed messages arrive: 40 messages with delays from 1 to 4 s (whole and
// fractional, through the default exchange and a direct one) consumed as
// they come. It fails if one arrives early, or more than a second after the
// whole second it was due (the delay rounded up, as RabbitMQ is asked for
// it). It logs both distributions.
func TestDelayLateness(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes several seconds")
	}
	for _, qt := range []string{"classic", "quorum"} {
		t.Run(qt, func(t *testing.T) {
			t.Parallel()
			url, _ := delayURL(t, qt)
			c := open(t, url)
			q := queue(t, c, "dest", nil)
			x := exchange(t, c, transport.ExchangeDirect)
			if err := c.Bind(ctxT(t), transport.Binding{Source: x, Destination: q, RoutingKey: "remind"}); err != nil {
				t.Fatal(err)
			}
			sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, AutoAck: true})
			if err != nil {
				t.Fatal(err)
			}
			const n = 40
			var mu sync.Mutex
			due := map[string]time.Time{}
			delays := map[string]time.Duration{}
			var early, late, rounded []time.Duration
			for i := range n {
				d := time.Duration(1000+75*i) * time.Millisecond // 1 s to 3.9 s
				p := &transport.Publishing{RoutingKey: q, Body: []byte(fmt.Sprint(i)), Delay: d, Confirm: true}
				if i%2 == 1 {
					p.Exchange, p.RoutingKey = x, "remind"
				}
				start := time.Now()
				if err := c.Publish(ctxT(t), p); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
				mu.Lock()
				due[string(p.Body)] = start.Add(d)
				delays[string(p.Body)] = d
				mu.Unlock()
			}
			deadline := time.After(30 * time.Second)
			for range n {
				select {
				case dl := <-sub.Deliveries():
					now := time.Now()
					mu.Lock()
					at, ok := due[string(dl.Body)]
					mu.Unlock()
					if !ok {
						t.Fatalf("unexpected %q", dl.Body)
					}
					if l := now.Sub(at); l < 0 {
						early = append(early, l)
					} else {
						late = append(late, l)
						// Against the whole second the broker was asked
						// for: the broker's own lateness.
						asked := delays[string(dl.Body)]
						rounded = append(rounded, l-((asked+time.Second-1)/time.Second*time.Second-asked))
					}
				case <-deadline:
					t.Fatalf("only %d of %d delayed messages arrived", len(late)+len(early), n)
				}
			}
			if len(early) > 0 {
				t.Errorf("%d messages arrived early: %v", len(early), early)
			}
			p50, p99, worst := percentiles(late)
			b50, b99, bworst := percentiles(rounded)
			t.Logf("amqp %s: %d messages delayed 1-3.9 s: lateness after the requested time p50 %v p99 %v max %v; "+
				"after the whole second asked of the broker p50 %v p99 %v max %v", qt, len(late), p50, p99, worst, b50, b99, bworst)
			if bworst > time.Second {
				t.Errorf("a message arrived %v after the whole second it was due, want within a second", bworst)
			}
		})
	}
}

func percentiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond) }
	return at(0.50), at(0.99), s[len(s)-1].Round(time.Millisecond)
}
