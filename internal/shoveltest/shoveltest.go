// Package shoveltest checks, against real transports, what kombu.Shovel
// promises whatever the brokers at its two ends: that a message arrives
// as it left its producer, and that every message published to the source
// arrives at the destination at least once when either end dies
// mid-stream. Its functions take the URLs of the two ends, so that a
// transport's tests (the SQL transport's, relaying an outbox) run the same
// checks as this package's own matrix of memory, RabbitMQ, Redis and the
// filesystem.
package shoveltest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Name returns a name no other test uses, for queues and exchanges on
// shared brokers.
func Name(what string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "kombu-go.shovel." + what + "." + hex.EncodeToString(b)
}

// Dial connects to url with a quick reconnection policy, closed when the
// test ends.
func Dial(t testing.TB, url string, opts ...kombu.DialOption) *kombu.Connection {
	t.Helper()
	opts = append([]kombu.DialOption{kombu.WithReconnectPolicy(kombu.RetryPolicy{
		IntervalStart: 50 * time.Millisecond, IntervalStep: 50 * time.Millisecond, IntervalMax: 200 * time.Millisecond,
	}), kombu.WithHeartbeat(2 * time.Second)}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// deleteLater deletes queues and exchanges when the test ends, through a
// connection of its own (the test's may be closed by then).
func deleteLater(t testing.TB, url string, queues []kombu.Queue, exchanges []kombu.Exchange) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := kombu.Dial(ctx, url)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, q := range queues {
			_, _ = q.Delete(ctx, conn)
		}
		for _, ex := range exchanges {
			if ex.Name != "" {
				_ = ex.Delete(ctx, conn)
			}
		}
	})
}

// AsIs moves messages of every kind from a queue at src to an exchange at
// dst and checks that each arrives as its producer sent it: body bytes
// (compressed ones still compressed), headers of every type both ends
// carry, content type and encoding, ids, reply-to, timestamp, type, app id,
// delivery mode and the source's routing key; and that nothing is left at
// the source.
func AsIs(t *testing.T, src, dst string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, dc := Dial(t, src), Dial(t, dst)
	in := kombu.Queue{Name: Name("in")}
	ex := kombu.Exchange{Name: Name("x"), Type: kombu.ExchangeTopic}
	out := kombu.Queue{Name: Name("out"), Bindings: []kombu.Binding{{Exchange: ex.Name, RoutingKey: "#"}}}
	deleteLater(t, src, []kombu.Queue{in}, nil)
	deleteLater(t, dst, []kombu.Queue{out}, []kombu.Exchange{ex})

	stamp := time.Unix(1700000000, 0).UTC()
	headers := map[string]any{"trace": "00-abc-01", "n": int64(-3), "ok": true, "pi": 3.25,
		"list": []any{"a", int64(1)}, "nested": map[string]any{"k": "v"}}
	kinds := []struct {
		body any
		opts []kombu.PublishOption
	}{
		{map[string]any{"id": 1, "name": "ada"}, nil},
		{map[string]any{"id": 2, "blob": strings.Repeat("x", 4000)}, []kombu.PublishOption{kombu.WithCompression("zlib")}},
		{[]byte{0, 1, 2, 255}, nil},
		{"plain text", []kombu.PublishOption{kombu.WithHeaders(headers)}},
		{map[string]any{"id": 3}, []kombu.PublishOption{kombu.WithSerializer("msgpack"), kombu.WithCompression("zstd")}},
		{[]byte(`<order id="4"/>`), []kombu.PublishOption{kombu.WithContentType("application/xml", "utf-8")}},
		{map[string]any{"id": 5}, []kombu.PublishOption{
			kombu.WithMessageID("m-5"), kombu.WithCorrelationID("c-5"), kombu.WithReplyTo("replies"),
			kombu.WithTimestamp(stamp), kombu.WithType("shop.OrderPlaced"), kombu.WithAppID("shop"),
			kombu.WithDeliveryMode(kombu.Transient), kombu.WithHeaders(headers)}},
	}
	p := kombu.NewProducer(sc, kombu.WithRoutingKey(in.Name), kombu.WithDeclare(in))
	for _, k := range kinds {
		if err := p.Publish(ctx, k.body, k.opts...); err != nil {
			t.Fatalf("publish to the source: %v", err)
		}
	}
	// What the source holds is the reference: the shovel must not change it.
	var want []*kombu.Message
	for range kinds {
		m, err := in.Get(ctx, sc, kombu.WithAccept("json", "msgpack", "text", "application/xml"))
		if err != nil {
			t.Fatalf("get from the source: %v", err)
		}
		want = append(want, m)
	}
	for _, m := range want {
		if err := m.Requeue(); err != nil {
			t.Fatal(err)
		}
	}

	s, err := kombu.NewShovel(sc, in, dc, ex, kombu.WithShovelDeclare(kombu.ShovelDestination, out), kombu.WithShovelDrain())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := map[string]*kombu.Message{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(kinds) && time.Now().Before(deadline) {
		m, err := out.Get(ctx, dc, kombu.WithAutoAck(), kombu.WithAccept("json", "msgpack", "text", "application/xml"))
		if errors.Is(err, kombu.ErrEmpty) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("get from the destination: %v", err)
		}
		got[string(m.Body)] = m
	}
	for _, w := range want {
		g, ok := got[string(w.Body)]
		if !ok {
			t.Errorf("%.40q did not arrive (got %d of %d)", w.Body, len(got), len(kinds))
			continue
		}
		if a, b := normal(g.Headers), normal(w.Headers); a != b {
			t.Errorf("%.40q: headers\n got %s\nwant %s", w.Body, a, b)
		}
		gp, wp := g.Properties, w.Properties
		gp.Timestamp, wp.Timestamp = gp.Timestamp.UTC(), wp.Timestamp.UTC()
		if wp.MessageID == "" && strings.HasPrefix(gp.MessageID, "kombu-go-") && strings.HasPrefix(dst, "amqp") {
			gp.MessageID = "" // the id the AMQP transport gives a mandatory message without one (see Shovel)
		}
		if gp != wp {
			t.Errorf("%.40q: properties\n got %+v\nwant %+v", w.Body, gp, wp)
		}
		if g.DeliveryInfo.RoutingKey != in.Name || g.DeliveryInfo.Exchange != ex.Name {
			t.Errorf("%.40q: arrived through %q with key %q, want %q with the source's key %q",
				w.Body, g.DeliveryInfo.Exchange, g.DeliveryInfo.RoutingKey, ex.Name, in.Name)
		}
	}
	if n := ready(t, sc, in); n != 0 {
		t.Errorf("the source holds %d messages after the move", n)
	}
	if st := s.Stats(); st.Moved != uint64(len(kinds)) {
		t.Errorf("stats %+v, want %d moved", st, len(kinds))
	}
}

// normal renders headers for comparison across transports, whose
// encodings give integers different Go types.
func normal(h map[string]any) string {
	if len(h) == 0 {
		return "{}" // none and an empty table are one
	}
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Sprint(h)
	}
	return string(b)
}

func ready(t testing.TB, conn *kombu.Connection, q kombu.Queue) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := q.Inspect(ctx, conn)
	if err != nil {
		t.Fatalf("inspect %s: %v", q.Name, err)
	}
	return info.Messages
}

// Ledger records the messages published to a shovel's source and the
// copies that arrive at its destination, and says which never arrived.
type Ledger struct {
	prefix string
	n      int

	mu     sync.Mutex
	copies map[int]int
	total  int
	seen   atomic.Int64 // distinct
}

// NewLedger returns a ledger of n messages.
func NewLedger(n int) *Ledger {
	return &Ledger{prefix: Name("m"), n: n, copies: map[int]int{}}
}

// Fill publishes the ledger's n messages to queue on conn, in batches,
// each confirmed: every one of them is at the source before a fault.
func (l *Ledger) Fill(t testing.TB, conn *kombu.Connection, queue kombu.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue.Name), kombu.WithDeclare(queue))
	var batch kombu.Batch
	for i := range l.n {
		id := l.prefix + "-" + strconv.Itoa(i)
		if err := p.Publish(ctx, id, kombu.InBatch(&batch), kombu.WithMessageID(id)); err != nil {
			t.Fatal(err)
		}
		if batch.Len() == 500 || i == l.n-1 {
			if err := batch.Send(ctx); err != nil {
				t.Fatalf("fill the source: %v", err)
			}
		}
	}
}

// Observe records one copy arriving.
func (l *Ledger) Observe(body string) {
	i, err := strconv.Atoi(strings.TrimPrefix(body, l.prefix+"-"))
	if err != nil || !strings.HasPrefix(body, l.prefix+"-") {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	l.copies[i]++
	if l.copies[i] == 1 {
		l.seen.Add(1)
	}
}

// Distinct returns how many of the messages arrived so far.
func (l *Ledger) Distinct() int { return int(l.seen.Load()) }

// Consume records what arrives in queue at the destination, until the
// test ends.
func (l *Ledger) Consume(t testing.TB, conn *kombu.Connection, queue kombu.Queue) {
	t.Helper()
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: queue, Handler: kombu.HandlerFunc(
		func(ctx context.Context, msg *kombu.Message) error {
			l.Observe(string(msg.Body))
			return nil
		})}}, kombu.WithPrefetch(500), kombu.WithShutdownTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// WaitAll waits until every message arrived, or timeout.
func (l *Ledger) WaitAll(timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); l.Distinct() < l.n; {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Result is what a ledger saw.
type Result struct {
	Sent    int   // messages published to the source
	Arrived int   // distinct messages that arrived at the destination
	Copies  int   // copies that arrived, duplicates included
	Missing []int // never arrived
	// Elapsed is how long the shovel took to move every message, faults
	// included; Recovery, for each fault, how long after the end of the
	// fault (the server restarted, the network restored) the shovel moved
	// a message again.
	Elapsed  time.Duration
	Recovery []time.Duration
}

// Duplicates is how many copies beyond the first arrived.
func (r Result) Duplicates() int { return r.Copies - r.Arrived }

func (r Result) String() string {
	rec := make([]string, len(r.Recovery))
	for i, d := range r.Recovery {
		rec[i] = d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%d sent, %d arrived (%d copies, %d duplicates), %d missing; moved in %v, moving again %s after the fault ended",
		r.Sent, r.Arrived, r.Copies, r.Duplicates(), len(r.Missing), r.Elapsed.Round(time.Millisecond), strings.Join(rec, ", "))
}

// Check returns what the ledger saw, and fails the test if a message
// never arrived.
func (l *Ledger) Check(t testing.TB) Result {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Result{Sent: l.n, Arrived: len(l.copies), Copies: l.total}
	for i := range l.n {
		if l.copies[i] == 0 {
			r.Missing = append(r.Missing, i)
		}
	}
	sort.Ints(r.Missing)
	if len(r.Missing) > 0 {
		shown := r.Missing
		if len(shown) > 20 {
			shown = shown[:20]
		}
		t.Errorf("LOST: %d of %d messages never arrived at the destination (first: %v)", len(r.Missing), l.n, shown)
	}
	return r
}

// Fault is a failure injected at one end of a shovel while it moves
// messages: a broker killed and restarted, a network cut and restored.
type Fault struct {
	Name  string
	Down  func()        // kill the server, or cut the connections
	Up    func()        // restart it, or restore them
	Pause time.Duration // between Down and Up
}

// Outage fills a queue at src with n messages, shovels them to a queue at
// dst, injects each fault in turn as the shovel has moved a further share
// of them (the first at a quarter with one fault, at a third and two
// thirds with two), and once the shovel has moved every one, reads the
// destination queue and checks that every message is there at least
// once. It returns the figures, which the caller logs. opts configure the
// shovel.
func Outage(t *testing.T, src, dst string, n int, faults []Fault, opts ...kombu.ShovelOption) (Result, kombu.ShovelStats) {
	sc, dc := Dial(t, src), Dial(t, dst)
	in, out := kombu.Queue{Name: Name("in")}, kombu.Queue{Name: Name("out")}
	deleteLater(t, src, []kombu.Queue{in}, nil)
	deleteLater(t, dst, []kombu.Queue{out}, nil)
	l := NewLedger(n)
	l.Fill(t, sc, in)

	opts = append([]kombu.ShovelOption{kombu.WithShovelRoutingKey(out.Name),
		kombu.WithShovelDeclare(kombu.ShovelDestination, out)}, opts...)
	s, err := kombu.NewShovel(sc, in, dc, kombu.Exchange{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- s.Run(ctx) }()

	var recovery []time.Duration
	for k, f := range faults {
		at := uint64(n * (k + 1) / (len(faults) + 2))
		for s.Stats().Moved < at {
			select {
			case err := <-runErr:
				t.Fatalf("Run returned before the fault %s: %v", f.Name, err)
			case <-time.After(100 * time.Microsecond):
			}
		}
		f.Down()
		moved := s.Stats().Moved
		t.Logf("%s with %d of %d moved", f.Name, moved, n)
		if moved == uint64(n) {
			t.Errorf("%s came after the shovel had moved every message: make n larger", f.Name)
		}
		time.Sleep(f.Pause)
		f.Up()
		up, before := time.Now(), s.Stats().Moved
		for s.Stats().Moved == before && time.Since(up) < 60*time.Second {
			time.Sleep(100 * time.Microsecond)
		}
		recovery = append(recovery, time.Since(up))
	}
	// The shovel acks a message at the source only once its copy was
	// confirmed: once it acked n and the source queue is empty, every
	// message was moved (the count includes acks a lost connection ate,
	// whose messages come back, so both are needed).
	deadline := time.Now().Add(60 * time.Second)
	for (s.Stats().Moved < uint64(n) || ready(t, sc, in) != 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Stats(); st.Moved < uint64(n) {
		t.Errorf("after 60s the shovel moved %d of %d: %+v", st.Moved, n, st)
	}
	elapsed := time.Since(start)
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Error("Run did not return after cancel")
	}
	if left := ready(t, sc, in); left != 0 {
		t.Logf("%d copies were back at the source when the shovel stopped (acknowledgements a lost connection ate)", left)
	}
	// Read back everything the destination holds: every copy counts.
	l.Consume(t, Dial(t, dst), out)
	l.WaitAll(30 * time.Second)
	for deadline := time.Now().Add(30 * time.Second); ready(t, dc, out) != 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the last copies handed to the consumer
	r := l.Check(t)
	r.Elapsed, r.Recovery = elapsed, recovery
	return r, s.Stats()
}

// Bench moves b.N 256-byte messages from a queue at srcURL to one at
// dstURL with a Shovel of batch size size, once they are all published,
// and reports its rate (msgs/s) and how full its batches were.
func Bench(b *testing.B, srcURL, dstURL string, size int) {
	src, dst := Dial(b, srcURL), Dial(b, dstURL)
	in, out := kombu.Queue{Name: Name("in")}, kombu.Queue{Name: Name("out")}
	b.Cleanup(func() {
		_, _ = in.Delete(context.Background(), src)
		_, _ = out.Delete(context.Background(), dst)
	})
	ctx := context.Background()
	if _, err := out.Declare(ctx, dst); err != nil {
		b.Fatal(err)
	}
	p := kombu.NewProducer(src, kombu.WithRoutingKey(in.Name), kombu.WithDeclare(in))
	body := make([]byte, 256)
	var batch kombu.Batch
	for i := range b.N {
		if err := p.Publish(ctx, body, kombu.InBatch(&batch)); err != nil {
			b.Fatal(err)
		}
		if batch.Len() == 500 || i == b.N-1 {
			if err := batch.Send(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	s, err := kombu.NewShovel(src, in, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey(out.Name),
		kombu.WithShovelBatchSize(size), kombu.WithShovelLimit(b.N))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if err := s.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	st := s.Stats()
	if st.Moved != uint64(b.N) {
		b.Fatalf("moved %d of %d", st.Moved, b.N)
	}
	b.ReportMetric(float64(st.Moved)/float64(st.Batches), "msgs/batch")
}
