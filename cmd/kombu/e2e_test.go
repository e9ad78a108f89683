package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombuproto "github.com/kombu-go/kombu/proto"
	kombu "github.com/kombu-go/kombu/runtime"
)

// These tests build the command once and run the binary, as a user does,
// against the real brokers of this machine (skipped, or failed with
// KOMBU_REQUIRE_BROKERS=1, when one is unreachable) and against SQLite and
// the filesystem, which need no server.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kombu-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kombu")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the kombu command:", err)
		os.Exit(1)
	}
	code := m.Run()
	if ferret != nil {
		ferret.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the command.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// kombuCmd runs the command with KOMBU_URL set to url and stdin as given.
func kombuCmd(t *testing.T, url, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "KOMBU_URL="+url)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kombu %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs the command and fails the test unless it exits 0.
func ok(t *testing.T, url string, args ...string) result {
	t.Helper()
	r := kombuCmd(t, url, "", args...)
	if r.code != 0 {
		t.Fatalf("kombu %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// wantCode runs the command and checks its exit code.
func wantCode(t *testing.T, code int, url, stdin string, args ...string) result {
	t.Helper()
	r := kombuCmd(t, url, stdin, args...)
	if r.code != code {
		t.Fatalf("kombu %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	return r
}

// jsonLines parses --output json output.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// depth asks the command for a queue's ready messages; -1 when the
// command says it does not exist (a virtual transport's empty queue).
func depth(t *testing.T, url, queue string) int {
	t.Helper()
	r := kombuCmd(t, url, "", "queues", "--output", "json", queue)
	lines := jsonLines(t, r.stdout)
	if len(lines) != 1 {
		t.Fatalf("queues %s: %s", queue, r)
	}
	if lines[0]["exists"] != true {
		if r.code != exitNotFound {
			t.Fatalf("queues %s: a missing queue exits %d: %s", queue, r.code, r)
		}
		return -1
	}
	return int(lines[0]["messages"].(float64))
}

type target struct {
	name string
	url  func(t testing.TB) string
	// defaultExchangeOnly: the transport keeps no bindings in the broker
	// (SQS, as Kombu's) or has no topic exchanges (Pub/Sub), so another
	// process reaches a queue through the default exchange only.
	defaultExchangeOnly bool
	// requeueUncounted: a message given back is not in the queue's depth
	// until the broker hands it out again (NATS counts a nak'd message as
	// out with its consumer until then), so depth is not checked right
	// after peek or consume --requeue; the steps after them take the
	// messages again, which checks that they were given back.
	requeueUncounted bool
}

var targets = []target{
	{"amqp", brokertest.AMQPURL, false, false},
	{"redis", brokertest.RedisURL, false, false},
	{"sqlite", func(t testing.TB) string { return "sqlite:///" + filepath.Join(t.TempDir(), "kombu.db") }, false, false},
	{"filesystem", func(t testing.TB) string { return "filesystem://" + t.TempDir() }, false, false},
	{"postgresql", prefixedSQL(brokertest.PostgresURL), false, false},
	{"mysql", prefixedSQL(brokertest.MySQLURL), false, false},
}

func uniqueName(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "kombu-cli-" + hex.EncodeToString(b)
}

// topology declares, with the runtime, an exchange ex (topic) with a work
// queue bound "work.*" and a dead-letter queue bound "dead.*".
func topology(t *testing.T, url string) (ex, work, dlq string) {
	t.Helper()
	return declareTopology(t, url, false)
}

// declareTopology is topology; with queuesOnly, the queues are declared
// without the exchange.
func declareTopology(t *testing.T, url string, queuesOnly bool) (ex, work, dlq string) {
	t.Helper()
	id := uniqueName(t)
	ex, work, dlq = id+".ex", id+".work", id+".dlq"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	top := kombu.Topology{
		Exchanges: []kombu.Exchange{{Name: ex, Type: kombu.ExchangeTopic}},
		Queues: []kombu.Queue{
			{Name: work, Bindings: []kombu.Binding{{Exchange: ex, RoutingKey: "work.*"}}},
			{Name: dlq, Bindings: []kombu.Binding{{Exchange: ex, RoutingKey: "dead.*"}}},
		},
	}
	if queuesOnly {
		top.Exchanges = nil
		for i := range top.Queues {
			top.Queues[i].Bindings = nil
		}
	}
	if err := top.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := kombu.Dial(ctx, url)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, q := range top.Queues {
			q.Delete(ctx, conn)
		}
		for _, ex := range top.Exchanges {
			ex.Delete(ctx, conn)
		}
	})
	return ex, work, dlq
}

// TestVerbs runs every verb that reads or writes messages against each
// transport: publish in its forms, queues, peek, consume --requeue, move
// (dry run, into a missing exchange, for real), consume, purge, and the bad
// input the issue lists.
func TestVerbs(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			url := tg.url(t)
			ex, work, dlq := declareTopology(t, url, tg.defaultExchangeOnly)
			pub := []string{"publish", "--exchange", ex, "--exchange-type", "topic", "-k", "dead.1"}
			pubWork := []string{"publish", "--exchange", ex, "--exchange-type", "topic", "-k", "work.1"}
			// move's destination and the routing key the moved messages get.
			moveTo, moveKey := []string{"--exchange-type", "topic", dlq, ex}, "work.replayed"
			if tg.defaultExchangeOnly {
				pub = []string{"publish", "-k", dlq}
				pubWork = []string{"publish", "-k", work}
				moveTo, moveKey = []string{dlq}, work
			}

			// publish: an argument (JSON), a file (msgpack), stdin (text),
			// and a protobuf body encoded from JSON with --proto.
			ok(t, url, append(pub, `{"n": 1}`)...)
			packed, _ := msgpack.Marshal(map[string]any{"n": 2})
			file := filepath.Join(t.TempDir(), "body.msgpack")
			if err := os.WriteFile(file, packed, 0o644); err != nil {
				t.Fatal(err)
			}
			ok(t, url, append(pub, "--file", file, "--content-type", "application/x-msgpack")...)
			if r := kombuCmd(t, url, "third, as text", append(pub, "--file", "-", "--header", "attempt=3")...); r.code != 0 {
				t.Fatal(r)
			}
			ok(t, url, append(pub, "--proto", "testdata/shop.proto", "--message", "kombuclitest.v1.Order", `{"id": "o-4", "cents": 450}`)...)
			if got := depth(t, url, dlq); got != 4 {
				t.Fatalf("after 4 publishes the queue holds %d", got)
			}

			// peek: looks, leaves the messages; bodies decoded.
			r := ok(t, url, "peek", "--output", "json", "--proto", "testdata/shop.proto", "--count", "10", dlq)
			lines := jsonLines(t, r.stdout)
			if len(lines) != 5 { // 4 messages and the summary
				t.Fatalf("peek: %s", r)
			}
			// Redis looks with LRANGE; the others take and return.
			if taken := lines[4]["taken"]; taken != (tg.name != "redis") {
				t.Errorf("peek on %s: taken = %v", tg.name, taken)
			}
			bodies := map[string]bool{}
			for _, m := range lines[:4] {
				b, _ := json.Marshal(m["body"])
				bodies[string(b)] = true
			}
			for _, want := range []string{`{"n":1}`, `{"n":2}`, `"third, as text"`, `{"cents":"450","id":"o-4"}`} {
				if !bodies[want] {
					t.Errorf("peek shows no body %s: %v", want, bodies)
				}
			}
			if got := depth(t, url, dlq); got != 4 && !tg.requeueUncounted {
				t.Fatalf("after peek the queue holds %d, want 4", got)
			}
			// Text output, with --raw.
			r = ok(t, url, "peek", "--raw", dlq)
			if !strings.Contains(r.stdout, `{"n": 1}`) {
				t.Errorf("peek --raw: %s", r)
			}

			// consume --requeue: takes, prints, returns.
			r = ok(t, url, "consume", "--requeue", "--output", "json", dlq)
			if lines := jsonLines(t, r.stdout); len(lines) != 5 || lines[4]["requeued"] != float64(4) {
				t.Fatalf("consume --requeue: %s", r)
			}
			if got := depth(t, url, dlq); got != 4 && !tg.requeueUncounted {
				t.Fatalf("after consume --requeue the queue holds %d, want 4", got)
			}

			// move: a dry run takes nothing; a missing exchange takes nothing.
			r = ok(t, url, append([]string{"move", "--dry-run", "--output", "json"}, moveTo...)...)
			if l := jsonLines(t, r.stdout); l[0]["would_move"] != float64(4) {
				t.Fatalf("move --dry-run: %s", r)
			}
			r = wantCode(t, exitNotFound, url, "", "move", dlq, ex+".missing")
			if !strings.Contains(r.stderr, "nothing was taken") {
				t.Errorf("move into a missing exchange: %s", r)
			}
			if got := depth(t, url, dlq); got != 4 {
				t.Fatalf("after the refused moves the queue holds %d, want 4", got)
			}
			r = ok(t, url, append([]string{"move", "--output", "json", "--routing-key", moveKey}, moveTo...)...)
			if l := jsonLines(t, r.stdout); l[0]["moved"] != float64(4) {
				t.Fatalf("move: %s", r)
			}
			if got := depth(t, url, work); got != 4 {
				t.Fatalf("after the move the work queue holds %d, want 4", got)
			}
			if got := depth(t, url, dlq); got != 0 && got != -1 {
				t.Fatalf("after the move the dead-letter queue holds %d, want 0", got)
			}

			// consume: takes and acknowledges.
			r = ok(t, url, "consume", "--count", "1", "--output", "json", work)
			if l := jsonLines(t, r.stdout); len(l) != 2 || l[0]["routing_key"] != moveKey {
				t.Fatalf("consume --count 1: %s", r)
			}
			if got := depth(t, url, work); got != 3 {
				t.Fatalf("after consuming one the work queue holds %d, want 3", got)
			}

			// purge: asks, and "n" keeps the messages; --yes purges.
			wantCode(t, exitAborted, url, "n\n", "purge", work)
			if got := depth(t, url, work); got != 3 {
				t.Fatalf("after a refused purge the queue holds %d, want 3", got)
			}
			r = kombuCmd(t, url, "y\n", "purge", work)
			if r.code != 0 || !strings.Contains(r.stdout, "purged 3") {
				t.Fatalf("purge, confirmed: %s", r)
			}
			ok(t, url, append(pubWork, "x")...)
			r = ok(t, url, "purge", "--yes", "--output", "json", work)
			if l := jsonLines(t, r.stdout); l[0]["purged"] != float64(1) {
				t.Fatalf("purge --yes: %s", r)
			}

			// Bad input.
			missing := ex + ".no-such-queue"
			wantCode(t, exitNotFound, url, "", "consume", missing)
			wantCode(t, exitNotFound, url, "", "peek", missing)
			wantCode(t, exitNotFound, url, "", "purge", "--yes", missing)
			wantCode(t, exitNotFound, url, "", "queues", missing)
			wantCode(t, exitNotFound, url, "", "move", missing, ex)
			r = wantCode(t, exitUsage, url, "", append(pub, "--file", "/no/such/body.json")...)
			if !strings.Contains(r.stderr, "body file") {
				t.Errorf("missing body file: %s", r)
			}
			wantCode(t, exitUsage, url, "", "peek", "--proto", "testdata/broken.proto", work)
		})
	}
}

// TestTail follows a queue: the command waits for messages published
// after it started.
func TestTail(t *testing.T) {
	for _, tg := range targets[:2] {
		t.Run(tg.name, func(t *testing.T) {
			url := tg.url(t)
			ex, work, _ := topology(t, url)
			cmd := exec.Command(binary, "tail", "--count", "2", "--output", "json", work)
			cmd.Env = append(os.Environ(), "KOMBU_URL="+url)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			for i := range 2 {
				ok(t, url, "publish", "--exchange", ex, "--exchange-type", "topic", "-k", "work.t", fmt.Sprintf(`{"i": %d}`, i))
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("tail: %v\n%s\n%s", err, out.String(), errb.String())
				}
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				t.Fatalf("tail did not end after 2 messages:\n%s\n%s", out.String(), errb.String())
			}
			if l := jsonLines(t, out.String()); len(l) != 3 || l[2]["consumed"] != float64(2) {
				t.Fatalf("tail: %s", out.String())
			}
		})
	}
}

// TestMoveInterrupted stops a long move with SIGINT: the command reports
// what it moved and exits 130, and every message is at one end or the
// other (at least once: a message may be at both, never at neither).
func TestMoveInterrupted(t *testing.T) {
	for _, tg := range targets[:2] {
		t.Run(tg.name, func(t *testing.T) {
			url := tg.url(t)
			ex, work, dlq := topology(t, url)
			const n = 3000
			fill(t, url, ex, "dead.x", n)
			cmd := exec.Command(binary, "move", "--batch", "1", "--output", "json", "--exchange-type", "topic", "--routing-key", "work.back", dlq, ex)
			cmd.Env = append(os.Environ(), "KOMBU_URL="+url)
			var out bytes.Buffer
			cmd.Stdout = &out
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The first progress line says messages are moving.
			sc := bufio.NewScanner(stderr)
			if !sc.Scan() {
				t.Fatalf("no progress line; stdout %s", out.String())
			}
			cmd.Process.Signal(syscall.SIGINT)
			go io.Copy(io.Discard, stderr)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
				t.Fatalf("move after SIGINT: %v, want exit %d; stdout %s", err, exitInterrupted, out.String())
			}
			l := jsonLines(t, out.String())
			if len(l) != 1 || l[0]["interrupted"] != true {
				t.Fatalf("move after SIGINT reported %s", out.String())
			}
			moved := int(l[0]["moved"].(float64))
			dup := int(l[0]["possibly_duplicated"].(float64))
			w, d := max(depth(t, url, work), 0), max(depth(t, url, dlq), 0)
			t.Logf("moved %d of %d before SIGINT; work %d, dead %d", moved, n, w, d)
			if moved == 0 || moved >= n {
				t.Fatalf("moved %d of %d: the interruption did not fall mid-move", moved, n)
			}
			if w+d < n {
				t.Fatalf("lost messages: work %d + dead %d < %d", w, d, n)
			}
			if w+d > n+dup+1 {
				// At most the batch in flight (1) beyond those counted.
				t.Fatalf("duplicated beyond at-least-once: work %d + dead %d, %d published", w, d, n)
			}
			if w < moved {
				t.Fatalf("reported %d moved, the work queue holds %d", moved, w)
			}
		})
	}
}

// fill publishes n small messages with the runtime.
func fill(t *testing.T, url, ex, key string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := kombu.NewProducer(conn, kombu.WithExchange(kombu.Exchange{Name: ex, Type: kombu.ExchangeTopic}))
	var batch kombu.Batch
	for i := range n {
		if err := p.Publish(ctx, map[string]int{"i": i}, kombu.WithRoutingKey(key), kombu.InBatch(&batch)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDeclare declares a .proto file's topology, from the file and from
// its descriptor set, and refuses a file that does not compile.
func TestDeclare(t *testing.T) {
	for _, tg := range targets[:3] {
		t.Run(tg.name, func(t *testing.T) {
			url := tg.url(t)
			t.Cleanup(func() { deleteEntities(url, "kombu-cli-e2e.orders", "kombu-cli-e2e.shop") })
			r := ok(t, url, "declare", "--output", "json", "--proto", "testdata/shop.proto")
			l := jsonLines(t, r.stdout)
			if len(l) != 1 || l[0]["service"] != "kombuclitest.v1.Shop" {
				t.Fatalf("declare: %s", r)
			}
			// The queue is bound: a message published to the exchange
			// reaches it.
			ok(t, url, "publish", "--exchange", "kombu-cli-e2e.shop", "--exchange-type", "topic", "-k", "order.placed", `{"id": "d-1"}`)
			r = ok(t, url, "consume", "--output", "json", "kombu-cli-e2e.orders")
			if l := jsonLines(t, r.stdout); len(l) < 2 {
				t.Fatalf("nothing reached the declared queue: %s", r)
			}
			r = wantCode(t, exitUsage, url, "", "declare", "--proto", "testdata/broken.proto")
			if !strings.Contains(r.stderr, "broken.proto:6:3") {
				t.Errorf("a broken .proto: %s", r)
			}
			wantCode(t, exitUsage, url, "", "declare", "--proto", "testdata/no-such.proto")
		})
	}
}

// deleteEntities deletes a queue and an exchange that a test declared.
func deleteEntities(url, queue, exchange string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close()
	kombu.Queue{Name: queue}.Delete(ctx, conn)
	kombu.Exchange{Name: exchange}.Delete(ctx, conn)
}

// TestProto writes options.proto and compiles a file importing it from
// that folder.
func TestProto(t *testing.T) {
	dir := t.TempDir()
	r := ok(t, "", "proto", dir)
	path := filepath.Join(dir, "kombu", "v1", "options.proto")
	b, err := os.ReadFile(path)
	if err != nil || string(b) != kombuproto.Options {
		t.Fatalf("proto wrote %s: %v", r, err)
	}
	if r := ok(t, "", "proto", dir); !strings.Contains(r.stdout, "up to date") {
		t.Errorf("proto again: %s", r)
	}
	os.WriteFile(path, []byte("// changed\n"), 0o644)
	wantCode(t, exitUsage, "", "", "proto", dir)
	ok(t, "", "proto", "--force", dir)
	// A user's tree: the file imports kombu/v1/options.proto from dir.
	shop, _ := os.ReadFile("testdata/shop.proto")
	os.WriteFile(filepath.Join(dir, "shop.proto"), shop, 0o644)
	r = ok(t, "redis://127.0.0.1:6379/15", "declare", "--dry-run", "-I", dir, "--proto", filepath.Join(dir, "shop.proto"))
	if !strings.Contains(r.stdout, "queue kombu-cli-e2e.orders") {
		t.Errorf("declare --dry-run from the written tree: %s", r)
	}
}

// TestUsage checks --help of every verb, exit codes for bad flags and
// URLs, memory:// refused, and that passwords never reach the output.
func TestUsage(t *testing.T) {
	for _, v := range verbs() {
		r := ok(t, "", v.name, "--help")
		if !strings.Contains(r.stdout, "Example:") || !strings.Contains(r.stdout, "Exit codes:") {
			t.Errorf("kombu %s --help has no example or exit codes:\n%s", v.name, r.stdout)
		}
	}
	ok(t, "", "help", "exit-codes")
	wantCode(t, exitUsage, "", "")
	wantCode(t, exitUsage, "", "", "frobnicate")
	wantCode(t, exitUsage, "", "", "peek", "--no-such-flag", "q")
	wantCode(t, exitUsage, "", "", "peek", "q") // no URL
	r := wantCode(t, exitUsage, "amqp//guest:hunter2@localhost", "", "peek", "q")
	if strings.Contains(r.stderr+r.stdout, "hunter2") {
		t.Errorf("a malformed URL's password is printed: %s", r)
	}
	wantCode(t, exitUsage, "memory://", "", "peek", "q")
	wantCode(t, exitUsage, "nosuch://localhost", "", "peek", "q")

	// A wrong password on RabbitMQ: refused, and not printed.
	amqp := brokertest.AMQPURL(t)
	bad := strings.Replace(amqp, "guest:guest@", "guest:s3cret-pw@", 1)
	if bad == amqp {
		t.Skip("the AMQP URL has no guest:guest to replace")
	}
	r = wantCode(t, exitFailure, bad, "", "queues", "q")
	if strings.Contains(r.stderr+r.stdout, "s3cret-pw") {
		t.Errorf("the password is printed: %s", r)
	}
	if !strings.Contains(r.stderr, "**") {
		t.Errorf("no masked URL in the error: %s", r)
	}
}
