package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// Defaults, as the main module's integration tests have them.
const (
	defaultAMQPURL  = "amqp://guest:guest@127.0.0.1:5672//"
	defaultRedisURL = "redis://127.0.0.1:6379"
	// redisDB is the database the suite uses: not 15, which the main
	// module's tests use (and may flush).
	redisDB = 13
	// idHeader carries each message's id.
	idHeader = "chaos_id"
)

var (
	figMu      sync.Mutex
	figRows    []Row
	suiteStart time.Time
	toxi       = NewToxiproxy()
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run()) // a re-executed child: only TestHelperProcess runs
	}
	suiteStart = time.Now()
	code := m.Run()
	if os.Getenv("KOMBU_CHAOS_FIGURES") == "1" {
		if err := writeFigures(time.Since(suiteStart)); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: writing FIGURES.md:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// figure registers the test's row in the figures table. Call it first in a
// test, so that its cleanup, which reads the verdict, runs last.
func figure(t *testing.T, num, fault, transport string) *Row {
	r := &Row{Test: num, Name: t.Name(), Fault: fault, Transport: transport}
	start := time.Now()
	t.Cleanup(func() {
		r.Elapsed = time.Since(start)
		switch {
		case t.Skipped():
			r.Status = "skipped"
		case t.Failed():
			r.Status = "FAIL"
		default:
			r.Status = "pass"
		}
		figMu.Lock()
		figRows = append(figRows, *r)
		figMu.Unlock()
	})
	return r
}

func writeFigures(wall time.Duration) error {
	figMu.Lock()
	rows := append([]Row(nil), figRows...)
	figMu.Unlock()
	rabbit := strings.TrimSpace(string(must(exec.Command("rabbitmqctl", "version").Output())))
	redisV := "?"
	if out, err := exec.Command("redis-cli", "-p", "6379", "info", "server").Output(); err == nil {
		if m := regexp.MustCompile(`redis_version:(\S+)`).FindSubmatch(out); m != nil {
			redisV = string(m[1])
		}
	}
	header := fmt.Sprintf(`# Fault-injection figures

Written by `+"`KOMBU_CHAOS_FIGURES=1 go test -count=1 -timeout 15m ./...`"+` in chaos/ (reliability.md §6).
Run: %s, %s, %d CPUs, RabbitMQ %s, Redis %s; suite wall time %s.

Columns: *sent* publishes attempted; *confirmed* publishes that returned nil; *lost* confirmed
and never consumed; *duplicated* ids consumed more than once; *recovered* not confirmed
(failed/unknown) but consumed; *unexpected* consumed but never published; *time to recover*
fault removed → first message published after it confirmed and consumed (or what the note says).

`, time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.NumCPU(), rabbit, redisV, wall.Round(time.Second))
	var b bytes.Buffer
	if err := WriteFigures(&b, rows, header); err != nil {
		return err
	}
	if err := os.WriteFile("FIGURES.md", b.Bytes(), 0o644); err != nil {
		return err
	}
	return spliceREADME("../README.md", FiguresTable(rows))
}

// The README's reliability section carries the table too, between these
// markers; the suite rewrites what is between them.
const (
	readmeBegin = "<!-- chaos figures: written by the fault suite (KOMBU_CHAOS_FIGURES=1 make chaos) -->\n"
	readmeEnd   = "<!-- end of chaos figures -->\n"
)

func spliceREADME(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, readmeBegin), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: the chaos figures markers are missing", path)
	}
	s = s[:i+len(readmeBegin)] + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func must[T any](v T, _ error) T { return v }

// unavailable skips the test, or fails it with KOMBU_REQUIRE_BROKERS=1.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("KOMBU_REQUIRE_BROKERS") == "1" {
		t.Fatalf("%s (KOMBU_REQUIRE_BROKERS=1)", reason)
	}
	t.Skip(reason + " (KOMBU_REQUIRE_BROKERS=1 makes this a failure)")
}

// broker is a broker endpoint: its URL and host:port.
type broker struct {
	u    *url.URL
	addr string
}

func reachable(t testing.TB, name, env, def, port string) broker {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s=%q: %v", env, raw, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), port)
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		unavailable(t, name+" not reachable at "+host+": "+err.Error())
	}
	c.Close()
	return broker{u: u, addr: host}
}

// rabbit returns the RabbitMQ endpoint, and checks rabbitmqctl works.
func rabbit(t testing.TB) broker {
	t.Helper()
	b := reachable(t, "RabbitMQ", "KOMBU_TEST_AMQP_URL", defaultAMQPURL, "5672")
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		unavailable(t, "rabbitmqctl not on PATH")
	}
	return b
}

// redisBroker returns the Redis endpoint, and checks redis-cli works.
func redisBroker(t testing.TB) broker {
	t.Helper()
	b := reachable(t, "Redis", "KOMBU_TEST_REDIS_URL", defaultRedisURL, "6379")
	if _, err := exec.LookPath("redis-cli"); err != nil {
		unavailable(t, "redis-cli not on PATH")
	}
	return b
}

// amqpURL is the broker's URL with its host replaced by addr (a proxy).
func (b broker) amqpURL(addr string) string {
	u := *b.u
	u.Host = addr
	return u.String()
}

// redisURL is a redis:// URL on addr, database redisDB, with query options.
func (b broker) redisURL(addr string, query string) string {
	u := *b.u
	u.Host = addr
	u.Path = fmt.Sprintf("/%d", redisDB)
	u.RawQuery = query
	return u.String()
}

// proxyTo starts a Toxiproxy proxy to addr, closed when the test ends.
func proxyTo(t testing.TB, addr string) *Proxy {
	t.Helper()
	p, err := toxi.Proxy(uniq(t, "proxy"), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

var nameRE = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// uniq returns a name unique to this run of the test.
func uniq(t testing.TB, kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := nameRE.ReplaceAllString(strings.TrimPrefix(t.Name(), "Test"), "_")
	return fmt.Sprintf("chaos.%s.%s.%s", n, kind, hex.EncodeToString(b[:]))
}

// ctxFor returns a context ending after d or with the test.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logSink keeps every log record of the connections that use it.
type logSink struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	At    time.Time
	Level slog.Level
	Msg   string
	Text  string // the whole record, rendered
}

func (s *logSink) logger() *slog.Logger { return slog.New(&sinkHandler{s: s}) }

// find returns the records whose rendering contains substr.
func (s *logSink) find(substr string) []logRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logRec
	for _, r := range s.recs {
		if strings.Contains(r.Text, substr) {
			out = append(out, r)
		}
	}
	return out
}

func (s *logSink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.recs {
		b.WriteString(r.Text)
	}
	return b.String()
}

// dump logs the last n records, for a failing test.
func (s *logSink) dump(t testing.TB, n int) {
	t.Helper()
	s.mu.Lock()
	recs := s.recs
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Text)
	}
	s.mu.Unlock()
	t.Logf("last %d SDK log records:\n%s", len(recs), b.String())
}

type sinkHandler struct {
	s      *logSink
	attrs  []slog.Attr
	groups []string
}

func (h *sinkHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *sinkHandler) Handle(_ context.Context, r slog.Record) error {
	var buf bytes.Buffer
	var th slog.Handler = slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	if len(h.attrs) > 0 {
		th = th.WithAttrs(h.attrs)
	}
	for _, g := range h.groups {
		th = th.WithGroup(g)
	}
	if err := th.Handle(context.Background(), r); err != nil {
		return err
	}
	h.s.mu.Lock()
	h.s.recs = append(h.s.recs, logRec{At: r.Time, Level: r.Level, Msg: r.Message, Text: buf.String()})
	h.s.mu.Unlock()
	return nil
}

func (h *sinkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sinkHandler{s: h.s, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), groups: h.groups}
}

func (h *sinkHandler) WithGroup(name string) slog.Handler {
	return &sinkHandler{s: h.s, attrs: h.attrs, groups: append(append([]string(nil), h.groups...), name)}
}

// fastRetry reconnects quickly: 100 ms, then 200 ms more per round up to
// about 1 s.
var fastRetry = kombu.RetryPolicy{IntervalStart: 100 * time.Millisecond, IntervalStep: 200 * time.Millisecond, IntervalMax: time.Second}

// dial connects with the suite's defaults: heartbeat 2 s, connect timeout
// 3 s, fast reconnection, a connection name, logs kept in sink.
func dial(t testing.TB, rawURL, name string, sink *logSink, extra ...kombu.DialOption) *kombu.Connection {
	t.Helper()
	opts := []kombu.DialOption{
		kombu.WithHeartbeat(2 * time.Second),
		kombu.WithConnectTimeout(3 * time.Second),
		kombu.WithReconnectPolicy(fastRetry),
		kombu.WithConnectionName(name),
	}
	if sink != nil {
		opts = append(opts, kombu.WithLogger(sink.logger()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := kombu.Dial(ctx, rawURL, append(opts, extra...)...)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// admin is a plain connection straight to the broker, for declarations,
// inspection and clean-up.
func admin(t testing.TB, rawURL string) *kombu.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := kombu.Dial(ctx, rawURL, kombu.WithReconnectPolicy(kombu.RetryPolicy{MaxRetries: 5, IntervalStart: 200 * time.Millisecond}))
	if err != nil {
		t.Fatalf("admin dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// cleanupQueue deletes q when the test ends, on a fresh connection (the
// test's own may be broken by then).
func cleanupQueue(t testing.TB, rawURL string, names ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := kombu.Dial(ctx, rawURL, kombu.WithReconnectPolicy(kombu.RetryPolicy{MaxRetries: 10, IntervalStart: 500 * time.Millisecond}))
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer c.Close()
		for _, n := range names {
			if _, err := (kombu.Queue{Name: n}).Delete(ctx, c); err != nil {
				t.Logf("cleanup: delete queue %s: %v", n, err)
			}
		}
	})
}

// depth returns the number of ready messages in q.
func depth(ctx context.Context, t testing.TB, c *kombu.Connection, q string) int {
	t.Helper()
	info, err := (kombu.Queue{Name: q}).Inspect(ctx, c)
	if err != nil {
		t.Fatalf("inspect %s: %v", q, err)
	}
	return info.Messages
}

// body is a 1 KiB body carrying id.
func body(id string) []byte {
	b := make([]byte, 1024)
	copy(b, id)
	for i := len(id); i < len(b); i++ {
		b[i] = 'x'
	}
	return b
}

// idOf returns the id header of msg.
func idOf(msg *kombu.Message) string {
	switch v := msg.Headers[idHeader].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return "<no id>"
}

// recorder is a handler that records each delivery in led, waits delay,
// then acks the message itself and records the ack's result.
func recorder(led *Ledger, name string, delay time.Duration) kombu.Handler {
	return kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		d := led.Delivered(name, idOf(msg), msg.Redelivered())
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
		led.Acked(d, msg.Ack())
		return nil
	})
}

// running is a consumer whose Run runs in a goroutine.
type running struct {
	c    *kombu.Consumer
	errc chan error
	err  error
	done atomic.Bool
}

// run starts c.Run; the consumer is closed when the test ends.
func run(t testing.TB, c *kombu.Consumer) *running {
	r := &running{c: c, errc: make(chan error, 1)}
	go func() { r.errc <- c.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// returned reports whether Run has returned, and with what.
func (r *running) returned() (bool, error) {
	if r.done.Load() {
		return true, r.err
	}
	select {
	case err := <-r.errc:
		r.err = err
		r.done.Store(true)
		return true, err
	default:
		return false, nil
	}
}

// stop closes the consumer and returns what Run returned.
func (r *running) stop(t testing.TB) error {
	if done, err := r.returned(); done {
		return err
	}
	closed := make(chan struct{})
	go func() { r.c.Close(); close(closed) }()
	select {
	case err := <-r.errc:
		r.err = err
		r.done.Store(true)
	case <-time.After(40 * time.Second):
		t.Errorf("Consumer.Close: Run did not return within 40 s")
		return errors.New("Run did not return")
	}
	<-closed
	return r.err
}

// consume starts a recording consumer of q on conn.
func consume(t testing.TB, conn *kombu.Connection, q kombu.Queue, led *Ledger, name string, delay time.Duration, opts ...kombu.ConsumerOption) *running {
	t.Helper()
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: recorder(led, name, delay)}}, opts...)
	if err != nil {
		t.Fatalf("NewConsumer %s: %v", name, err)
	}
	return run(t, c)
}

// publisher publishes 1 KiB messages with an id header through p, from
// several goroutines, until stop says so, at most rate messages a second in
// all (0: as fast as confirms allow).
type publisher struct {
	led      *Ledger
	p        *kombu.Producer
	workers  int
	rate     int
	timeout  time.Duration
	max      int
	opts     []kombu.PublishOption
	onResult func(id string, o Outcome, err error)
}

// run publishes until ctx ends or max messages were sent; it returns when
// every worker has.
func (pb publisher) run(ctx context.Context) {
	var tokens <-chan time.Time
	if pb.rate > 0 {
		tk := time.NewTicker(time.Second / time.Duration(pb.rate))
		defer tk.Stop()
		tokens = tk.C
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range pb.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if pb.max > 0 && sent.Add(1) > int64(pb.max) {
					return
				}
				if tokens != nil {
					select {
					case <-tokens:
					case <-ctx.Done():
						return
					}
				}
				id, o, err := pb.led.Publish(context.Background(), pb.timeout, func(ctx context.Context, id string) error {
					opts := append([]kombu.PublishOption{kombu.WithHeaders(map[string]any{idHeader: id})}, pb.opts...)
					return pb.p.Publish(ctx, body(id), opts...)
				})
				if pb.onResult != nil {
					pb.onResult(id, o, err)
				}
			}
		}()
	}
	wg.Wait()
}

// publishN publishes n messages, confirmed, in batches, recording each.
func publishN(t testing.TB, led *Ledger, p *kombu.Producer, n int, opts ...kombu.PublishOption) {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	const chunk = 250
	for done := 0; done < n; done += chunk {
		var batch kombu.Batch
		var ids []string
		for i := done; i < min(n, done+chunk); i++ {
			id := led.Begin()
			ids = append(ids, id)
			o := append([]kombu.PublishOption{kombu.WithHeaders(map[string]any{idHeader: id}), kombu.InBatch(&batch)}, opts...)
			if err := p.Publish(ctx, body(id), o...); err != nil {
				t.Fatalf("queue %s in batch: %v", id, err)
			}
		}
		err := batch.Send(ctx)
		for _, id := range ids {
			led.End(id, err)
		}
		if err != nil {
			t.Fatalf("publish batch: %v", err)
		}
	}
}

// rabbitmqctl runs rabbitmqctl and returns its output; it fails the test
// when the command fails.
func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := rabbitmqctlErr(args...)
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func rabbitmqctlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	return string(out), err
}

// redisCLI runs redis-cli against the test Redis.
func redisCLI(t testing.TB, b broker, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(b.addr)
	all := append([]string{"-h", host, "-p", port, "-n", fmt.Sprint(redisDB)}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// redisClientIDs returns the ids of Redis clients whose name starts with
// prefix.
func redisClientIDs(t testing.TB, b broker, prefix string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(redisCLI(t, b, "CLIENT", "LIST"), "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			}
		}
		if id != "" && name != "" && strings.HasPrefix(name, prefix) {
			ids = append(ids, id)
		}
	}
	return ids
}

// leakCheck snapshots the running goroutines; the returned function fails
// the test if goroutines started since are still running (after the
// connections are closed). Toxiproxy's own goroutines are ignored.
func leakCheck(t *testing.T) func() {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).Start.func1"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*Proxy).server"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*Proxy).freeBlocker"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/stream.(*ChanReader).Read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*LatencyToxic).Pipe"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*TimeoutToxic).Pipe"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ResetToxic).Pipe"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"),
		// Test helpers of this package.
		goleak.IgnoreAnyFunction("github.com/kombu-go/kombu/chaos.(*child).read"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).Start.func2"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).watchCtx"),
	}
	return func() {
		t.Helper()
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("goroutines still running after every connection was closed:\n%v", err)
		}
	}
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// salvage drains q with a fresh consumer on a fresh connection when the
// test's own consumer left confirmed messages unconsumed, so that the
// figures tell messages the broker lost from messages stranded in the queue
// by a consumer that stopped. r.Lost is replaced by what is still missing.
func salvage(t *testing.T, url string, q kombu.Queue, led *Ledger, r *Result, row *Row) {
	t.Helper()
	if len(r.Lost) == 0 {
		return
	}
	before := len(r.Lost)
	conn := admin(t, url)
	rc := consume(t, conn, q, led, "salvage", 0, kombu.WithPrefetch(200))
	led.WaitDelivered(ctxFor(t, 20*time.Second), 500*time.Millisecond)
	if err := rc.stop(t); err != nil {
		t.Logf("salvage consumer: %v", err)
	}
	conn.Close()
	r.Lost = led.Check().Lost
	row.Note("%d confirmed messages were stranded in the queue, not consumed by the test's consumer (a fresh consumer got %d of them); truly lost: %d",
		before, before-len(r.Lost), len(r.Lost))
	t.Logf("salvage: %d of %d missing messages were still in the queue", before-len(r.Lost), before)
}

// short lists at most 10 ids.
func short(ids []string) string {
	if len(ids) > 10 {
		return fmt.Sprintf("%v … (%d in all)", ids[:10], len(ids))
	}
	return fmt.Sprint(ids)
}
