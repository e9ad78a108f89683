package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/filesystem"
)

// The filesystem interop tests run Go and Python Kombu on one folder of
// the test's own: Debian's Kombu 5.2.4 as it is, and with Kombu 5.3's
// control folder (kombu_peer.py --kombu53-filesystem), which 5.2.4 lacks.

type fsEnv struct {
	t   *testing.T
	dir string
}

func newFSEnv(t *testing.T) *fsEnv {
	t.Helper()
	requirePython(t)
	return &fsEnv{t: t, dir: t.TempDir()}
}

func (e *fsEnv) control() string { return filepath.Join(e.dir, "control") }

// pyOptions are the Kombu transport options for the test's folder: the
// same folder in and out, as kombu-go's filesystem:///path shorthand.
func (e *fsEnv) pyOptions() string {
	b, _ := json.Marshal(map[string]any{"data_folder_in": e.dir, "data_folder_out": e.dir, "control_folder": e.control()})
	return string(b)
}

func (e *fsEnv) dial() *kombu.Connection {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "filesystem://"+e.dir+"?polling_interval=0.05")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// peer runs kombu_peer.py cmd with the test's folder.
func (e *fsEnv) peer(cmd string, in any, args ...string) []byte {
	e.t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		e.t.Fatal(err)
	}
	args = append([]string{peerScript(), cmd, "filesystem://"}, args...)
	args = append(args, "--transport-options", e.pyOptions())
	c := exec.Command(python, args...)
	c.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		e.t.Fatalf("python %s %v: %v\nstdout: %s\nstderr: %s", cmd, args, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

func (e *fsEnv) pyConsume(queue string, count int, args ...string) []pyMessage {
	e.t.Helper()
	out := e.peer("consume", nil, append([]string{queue, strconv.Itoa(count)}, args...)...)
	var msgs []pyMessage
	if err := json.Unmarshal(out, &msgs); err != nil {
		e.t.Fatalf("python consume output %q: %v", out, err)
	}
	return msgs
}

// files lists the message files in the folder.
func (e *fsEnv) files() []string {
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range entries {
		if strings.HasSuffix(d.Name(), ".msg") {
			out = append(out, d.Name())
		}
	}
	return out
}

func TestFilesystemKombuPublishesGoConsumes(t *testing.T) {
	e := newFSEnv(t)
	conn := e.dial()
	body := map[string]any{"order_id": "A-1", "amount": 12.5}
	e.peer("publish", []map[string]any{
		{"body": body, "routing_key": "fs.orders", "serializer": "json"},
		{"body": body, "routing_key": "fs.orders", "serializer": "json", "compression": "zlib"},
		{"body": body, "routing_key": "fs.orders", "serializer": "json",
			"priority": 3, "headers": map[string]any{"trace": "abc", "attempt": 2, "ratio": 0.5}, "expiration": 60,
			"correlation_id": "corr-1", "reply_to": "replies", "message_id": "mid-1", "app_id": "py", "type": "order"},
		// Kombu's topic regex: "audit.*" matches two words after "audit".
		{"body": "text body", "exchange": "fs.topic", "routing_key": "audit.user.login"},
		// Kombu's own readers of queue fs.orders would take this one too.
		{"body": "not for fs.orders", "routing_key": "x.fs.orders"},
	}, "--exchange", "fs.topic:topic", "--declare", "fs.audit:fs.topic:topic:audit.*")

	col := runConsumer(t, conn, []kombu.Queue{{Name: "fs.orders"}, {Name: "fs.audit"}})
	msgs := col.wait(t, 4)
	byQueue := map[string][]*kombu.Message{}
	for _, m := range msgs {
		byQueue[m.DeliveryInfo.Queue] = append(byQueue[m.DeliveryInfo.Queue], m)
	}
	orders := byQueue["fs.orders"]
	if len(orders) != 3 {
		t.Fatalf("fs.orders got %d messages", len(orders))
	}
	// Kombu names files by the millisecond: those it writes within one
	// come in any order. Put them in the order they were published.
	slices.SortFunc(orders, func(a, b *kombu.Message) int {
		rank := func(m *kombu.Message) int {
			switch {
			case m.Headers["compression"] != nil:
				return 1
			case m.Properties.CorrelationID != "":
				return 2
			}
			return 0
		}
		return rank(a) - rank(b)
	})
	for i, m := range orders {
		var got map[string]any
		if err := m.Decode(&got); err != nil || !reflect.DeepEqual(got, body) {
			t.Errorf("order %d decoded %v, %v", i, got, err)
		}
		if m.DeliveryInfo.Exchange != "" || m.DeliveryInfo.RoutingKey != "fs.orders" || m.Redelivered() {
			t.Errorf("order %d delivery info %+v", i, m.DeliveryInfo)
		}
	}
	if orders[1].Headers["compression"] != "application/x-gzip" {
		t.Errorf("compressed message headers %v", orders[1].Headers)
	}
	p := orders[2].Properties
	if p.Priority != 3 || p.Expiration != time.Minute || p.CorrelationID != "corr-1" || p.ReplyTo != "replies" ||
		p.MessageID != "mid-1" || p.AppID != "py" || p.Type != "order" || p.DeliveryMode != 2 || p.ContentType != "application/json" {
		t.Errorf("properties %+v", p)
	}
	if h := orders[2].Headers; h["trace"] != "abc" || h["attempt"] != int64(2) || h["ratio"] != 0.5 {
		t.Errorf("headers %v", h)
	}
	audit := byQueue["fs.audit"]
	if len(audit) != 1 || string(audit[0].Body) != "text body" || audit[0].DeliveryInfo.Exchange != "fs.topic" ||
		audit[0].DeliveryInfo.RoutingKey != "audit.user.login" {
		t.Errorf("fs.audit got %v", audit)
	}
	// Acked: gone, but for the other queue's file.
	transporttestEventually(t, "the acked files to go", func() bool {
		files := e.files()
		return len(files) == 1 && strings.HasSuffix(files[0], ".x.fs.orders.msg")
	})
}

func TestFilesystemGoPublishesKombuConsumes(t *testing.T) {
	e := newFSEnv(t)
	conn := e.dial()
	ctx := context.Background()
	ex := kombu.Exchange{Name: "fs.direct"}
	q := kombu.Queue{Name: "fs.q", Bindings: []kombu.Binding{{Exchange: "fs.direct", RoutingKey: "parcel"}}}
	if err := ex.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithExchange(ex), kombu.WithRoutingKey("parcel"))
	m := map[string]any{"order_id": "A-1", "carrier": "ups"}
	if err := p.Publish(ctx, m, kombu.WithHeaders(map[string]any{"trace": "abc", "attempt": 2}), kombu.WithCorrelationID("c-1"),
		kombu.WithReplyTo("replies"), kombu.WithMessageID("m-1"), kombu.WithAppID("go"), kombu.WithType("parcel")); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, m, kombu.WithCompression("zlib")); err != nil {
		t.Fatal(err)
	}
	// Through the default exchange, by queue name.
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey("fs.q")).Publish(ctx, []byte{0, 1, 2, 255}); err != nil {
		t.Fatal(err)
	}
	got := e.pyConsume("fs.q", 3, "--accept", "json,application/data")
	first, compressed, raw := got[0], got[1], got[2]
	for _, msg := range []pyMessage{first, compressed} {
		var body map[string]any
		if err := json.Unmarshal(msg.Body, &body); err != nil || !reflect.DeepEqual(body, m) {
			t.Errorf("Kombu decoded %s, want %v", msg.Body, m)
		}
		if msg.ContentType != "application/json" || msg.ContentEncoding != "utf-8" || msg.Properties["delivery_mode"] != float64(2) {
			t.Errorf("content %q %q, properties %v", msg.ContentType, msg.ContentEncoding, msg.Properties)
		}
		if msg.DeliveryInfo["exchange"] != "fs.direct" || msg.DeliveryInfo["routing_key"] != "parcel" || msg.DeliveryInfo["redelivered"] != nil {
			t.Errorf("delivery info %v", msg.DeliveryInfo)
		}
	}
	if first.Properties["correlation_id"] != "c-1" || first.Properties["reply_to"] != "replies" ||
		first.Properties["message_id"] != "m-1" || first.Properties["app_id"] != "go" || first.Properties["type"] != "parcel" {
		t.Errorf("properties %v", first.Properties)
	}
	if first.Headers["trace"] != "abc" || first.Headers["attempt"] != float64(2) {
		t.Errorf("headers %v", first.Headers)
	}
	if compressed.Headers["compression"] != "application/x-gzip" {
		t.Errorf("compressed headers %v", compressed.Headers)
	}
	if !bytes.Equal(raw.Raw, []byte{0, 1, 2, 255}) || raw.ContentType != "application/data" || raw.DeliveryInfo["routing_key"] != "fs.q" {
		t.Errorf("raw body %v as %q, %v", raw.Raw, raw.ContentType, raw.DeliveryInfo)
	}
	if files := e.files(); len(files) != 0 {
		t.Errorf("Kombu acked everything, yet the folder holds %q", files)
	}
}

// Requeues cross over: a message Go took and returned reaches Kombu
// marked redelivered, and one Kombu requeued (its _restore writes a new
// file with a top-level "redelivered") reaches Go marked too.
func TestFilesystemRedeliveryBothWays(t *testing.T) {
	e := newFSEnv(t)
	conn := e.dial()
	ctx := context.Background()
	q := kombu.Queue{Name: "fs.again"}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey("fs.again")).Publish(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	msg, err := q.Get(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Requeue(); err != nil {
		t.Fatal(err)
	}
	got := e.pyConsume("fs.again", 1, "--requeue")
	if got[0].DeliveryInfo["redelivered"] != true || string(got[0].Body) != `{"n": 1}` {
		t.Fatalf("Kombu got %s, delivery info %v; want it redelivered", got[0].Body, got[0].DeliveryInfo)
	}
	msg, err = q.Get(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := msg.Decode(&body); err != nil || body["n"] != float64(1) || !msg.Redelivered() {
		t.Fatalf("after Kombu's requeue Go got %v (%v), redelivered %t", body, err, msg.Redelivered())
	}
	msg.Ack()
}

// With Kombu 5.3's control folder, Python and Go share bindings: the
// tables both write are the same bytes, each routes through the other's,
// and fanout reaches the queues of both.
func TestFilesystemBindingsAndFanoutBothWays(t *testing.T) {
	e := newFSEnv(t)
	conn := e.dial()
	ctx := context.Background()
	const k53 = "--kombu53-filesystem"

	// The same bindings, made by Go in fs.tgo and by Kombu in fs.tpy.
	tgo := kombu.Exchange{Name: "fs.tgo", Type: kombu.ExchangeTopic}
	tpy := kombu.Exchange{Name: "fs.tpy", Type: kombu.ExchangeTopic}
	for _, key := range []string{"a.#", "*.b.é"} {
		q := kombu.Queue{Name: "fs.topic.q", Bindings: []kombu.Binding{{Exchange: "fs.tgo", RoutingKey: key}}}
		if err := tgo.Declare(ctx, conn); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Declare(ctx, conn); err != nil {
			t.Fatal(err)
		}
		e.peer("declare", map[string]any{"queues": []map[string]any{{"name": "fs.topic.q", "bindings": []map[string]any{
			{"exchange": "fs.tpy", "type": "topic", "routing_key": key}}}}}, k53)
	}
	goTable, err := os.ReadFile(filepath.Join(e.control(), "fs.tgo.exchange"))
	if err != nil {
		t.Fatal(err)
	}
	pyTable, err := os.ReadFile(filepath.Join(e.control(), "fs.tpy.exchange"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(goTable, pyTable) {
		t.Errorf("binding tables differ:\n Go     %s\n Kombu  %s", goTable, pyTable)
	}
	// Go routes through Kombu's table, Kombu through Go's.
	if err := tpy.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(conn, kombu.WithExchange(tpy)).Publish(ctx, "from go", kombu.WithRoutingKey("x.b.é")); err != nil {
		t.Fatal(err)
	}
	e.peer("publish", []map[string]any{{"body": "from kombu", "exchange": "fs.tgo", "routing_key": "a.b.c"}}, "--exchange", "fs.tgo:topic", k53)
	var bodies []string
	for _, m := range e.pyConsume("fs.topic.q", 2, "--accept", "json,text/plain", k53) {
		bodies = append(bodies, string(m.Body))
	}
	slices.Sort(bodies)
	if want := []string{`"from go"`, `"from kombu"`}; !slices.Equal(bodies, want) {
		t.Errorf("through each other's tables: %q, want %q", bodies, want)
	}

	// Fanout: Kombu publishes to Go's queues, Go to Go's and Kombu's.
	fan := kombu.Exchange{Name: "fs.fan", Type: kombu.ExchangeFanout}
	col := runConsumer(t, conn, []kombu.Queue{
		{Name: "fs.f1", Bindings: []kombu.Binding{{Exchange: "fs.fan"}}},
		{Name: "fs.f2", Bindings: []kombu.Binding{{Exchange: "fs.fan"}}},
	}, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{fan}}))
	transporttestEventually(t, "Go's fanout bindings", func() bool {
		table, _ := os.ReadFile(filepath.Join(e.control(), "fs.fan.exchange"))
		return bytes.Contains(table, []byte(`"fs.f1"`)) && bytes.Contains(table, []byte(`"fs.f2"`))
	})
	e.peer("publish", []map[string]any{{"body": map[string]any{"n": 1}, "exchange": "fs.fan", "routing_key": ""}}, "--exchange", "fs.fan:fanout", k53)
	queues := map[string]bool{}
	for _, m := range col.wait(t, 2) {
		queues[m.DeliveryInfo.Queue] = true
		if m.DeliveryInfo.Exchange != "fs.fan" {
			t.Errorf("fanout copy from %q", m.DeliveryInfo.Exchange)
		}
	}
	if !queues["fs.f1"] || !queues["fs.f2"] {
		t.Errorf("Kombu's fanout reached %v", queues)
	}
	e.peer("declare", map[string]any{"queues": []map[string]any{{"name": "fs.fpy", "bindings": []map[string]any{
		{"exchange": "fs.fan", "type": "fanout"}}}}}, k53)
	if err := kombu.NewProducer(conn, kombu.WithExchange(fan)).Publish(ctx, map[string]any{"from": "go"}); err != nil {
		t.Fatal(err)
	}
	got := e.pyConsume("fs.fpy", 1, k53)
	if string(got[0].Body) != `{"from": "go"}` || got[0].DeliveryInfo["exchange"] != "fs.fan" {
		t.Errorf("Kombu got %s from %v", got[0].Body, got[0].DeliveryInfo)
	}
	col.wait(t, 2) // Go's own queues got their copies too
}

// transporttestEventually polls cond for up to ten seconds.
func transporttestEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
