package interop_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/pytypes"
)

// The codec interop tests: every serializer Kombu and kombu-go share (json
// with each __type__ envelope, msgpack, yaml, raw and text) and every
// compression Python's standard library or Debian's packages give Kombu
// (zlib, bz2, lzma; brotli and zstd from python3-brotli and
// python3-zstandard), in both directions, on RabbitMQ.
//
// Debian's Kombu is 5.2.4, which predates the __type__ envelopes (Kombu
// 5.3). kombu_peer.py --kombu53-json installs Kombu 5.3's json codec (the
// few lines of kombu/utils/json.py) in its place, so the envelopes are
// checked against Kombu's own encoder and decoder logic, not against ours.

// codecQueue is this test process's own queue on the shared broker, so that
// runs in other worktrees or CI jobs never read each other's messages.
var codecQueue = fmt.Sprintf("kombu-go.interop.codecs.%d", os.Getpid())

// codecConn connects, declares the test queue and empties it.
func codecConn(t *testing.T, modules ...string) (string, *kombu.Connection) {
	t.Helper()
	url := brokertest.AMQPURL(t)
	requirePython(t)
	for _, m := range modules {
		if out, err := exec.Command(python, "-c", "import "+m).CombinedOutput(); err != nil {
			brokertest.Unavailable(t, "Python module "+m+" not available ("+strings.TrimSpace(string(out))+
				"); apt-get install python3-"+map[string]string{"yaml": "yaml", "msgpack": "msgpack", "brotli": "brotli", "zstandard": "zstandard"}[m])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	q := kombu.Queue{Name: codecQueue, Transient: true}
	if _, err := q.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := q.Delete(ctx, conn); err != nil {
			t.Errorf("delete %s: %v", codecQueue, err)
		}
	})
	if _, err := q.Purge(ctx, conn); err != nil {
		t.Fatal(err)
	}
	return url, conn
}

// pyRun runs kombu_peer.py with args and stdin, and returns its stdout.
func pyRun(t *testing.T, stdin any, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(python, append([]string{peerScript()}, args...)...)
	if stdin != nil {
		in, err := json.Marshal(stdin)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(in)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kombu_peer.py %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// typedMessage is a message as kombu_peer.py consume --typed prints it.
type typedMessage struct {
	pyMessage
	PyTypes   json.RawMessage `json:"pytypes"`
	Reencoded []byte          `json:"reencoded"`
}

func pyConsumeTyped(t *testing.T, url string, count int, accept string) []typedMessage {
	t.Helper()
	out := pyRun(t, nil, "consume", url, codecQueue, itoa(count), "--accept", accept, "--kombu53-json", "--typed")
	var msgs []typedMessage
	if err := json.Unmarshal(out, &msgs); err != nil {
		t.Fatalf("consume output %s: %v", out, err)
	}
	return msgs
}

// goGet takes the next message from the test queue.
func goGet(t *testing.T, conn *kombu.Connection) *kombu.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msg, err := kombu.Queue{Name: codecQueue}.Get(ctx, conn, kombu.WithAutoAck(),
			kombu.WithAccept("json", "msgpack", "yaml", "text", "raw"))
		if err == nil {
			return msg
		}
		if !errors.Is(err, kombu.ErrEmpty) {
			t.Fatalf("get: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no message from Python within 10s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func mustUUID(t *testing.T, s string) pytypes.UUID {
	t.Helper()
	u, err := pytypes.ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCodecsKombuPublishesGoDecodes(t *testing.T) {
	url, conn := codecConn(t, "yaml", "msgpack")
	py := func(typ, v string) map[string]any { return map[string]any{"__py__": typ, "v": v} }
	b64 := base64.StdEncoding.EncodeToString
	pyRun(t, []map[string]any{
		{"routing_key": codecQueue, "serializer": "json", "body": map[string]any{
			"aware":   py("datetime", "2024-03-01T10:00:00.250000+00:00"),
			"offset":  py("datetime", "2024-03-01T10:00:00-05:30"),
			"naive":   py("datetime", "2024-03-01T10:00:00"),
			"date":    py("date", "2024-02-29"),
			"time":    py("time", "23:59:58.000001"),
			"decimal": py("Decimal", "12.50"),
			"uuid":    py("UUID", "12345678-1234-5678-1234-567812345678"),
			"text":    py("bytes", b64([]byte("héllo"))),
			"binary":  py("bytes", b64([]byte{0xff, 0, 0x80})),
			"plain":   []any{1, 2.5, "x", true, nil},
		}},
		{"routing_key": codecQueue, "serializer": "msgpack", "body": map[string]any{
			"s": "x", "b": py("bytes", b64([]byte{0, 0xff})), "i": 1, "big": 1 << 40, "neg": -200,
			"f": 1.5, "t": true, "n": nil, "l": []any{1, "a"}, "m": map[string]any{"k": "v"},
		}},
		{"routing_key": codecQueue, "serializer": "yaml", "body": map[string]any{
			"s": "x", "i": 7, "f": 2.5, "l": []any{"a", "b"}, "n": nil, "t": true,
		}},
		{"routing_key": codecQueue, "body": py("bytes", b64([]byte{0xde, 0xad, 0xbe, 0xef}))}, // bytes, no serializer
		{"routing_key": codecQueue, "body": "héllo wörld"},                                    // str, no serializer
	}, "publish", url, "--kombu53-json", "--typed")

	// json, with Kombu 5.3's envelopes.
	msg := goGet(t, conn)
	if msg.Properties.ContentType != "application/json" || msg.Properties.ContentEncoding != "utf-8" {
		t.Fatalf("json: %q %q", msg.Properties.ContentType, msg.Properties.ContentEncoding)
	}
	// Byte for byte what Kombu 5.3 writes (json.dumps: ", " and ": ").
	for _, envelope := range []string{
		`"aware": {"__type__": "datetime", "__value__": "2024-03-01T10:00:00.250000+00:00"}`,
		`"naive": {"__type__": "datetime", "__value__": "2024-03-01T10:00:00"}`,
		`"date": {"__type__": "date", "__value__": "2024-02-29"}`,
		`"time": {"__type__": "time", "__value__": "23:59:58.000001"}`,
		`"decimal": {"__type__": "decimal", "__value__": "12.50"}`,
		`"uuid": {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}}`,
		`"text": {"__type__": "bytes", "__value__": "h\u00e9llo"}`,
		`"binary": {"__type__": "base64", "__value__": "/wCA"}`,
	} {
		if !bytes.Contains(msg.Body, []byte(envelope)) {
			t.Errorf("Kombu's body lacks %s:\n%s", envelope, msg.Body)
		}
	}
	var got map[string]any
	if err := msg.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"aware":   time.Date(2024, 3, 1, 10, 0, 0, 250_000_000, time.UTC),
		"offset":  time.Date(2024, 3, 1, 15, 30, 0, 0, time.UTC),
		"naive":   pytypes.Naive(time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)),
		"date":    pytypes.Date{Year: 2024, Month: 2, Day: 29},
		"time":    pytypes.TimeOfDay{Hour: 23, Minute: 59, Second: 58, Nanosecond: 1000},
		"decimal": pytypes.Decimal("12.50"),
		"uuid":    mustUUID(t, "12345678-1234-5678-1234-567812345678"),
		"text":    []byte("héllo"),
		"binary":  []byte{0xff, 0, 0x80},
		"plain":   []any{float64(1), 2.5, "x", true, nil},
	}
	for k, w := range want {
		g := got[k]
		if gt, ok := g.(time.Time); ok {
			if wt := w.(time.Time); !gt.Equal(wt) || pytypes.IsNaive(gt) != pytypes.IsNaive(wt) {
				t.Errorf("json %s: got %v, want %v", k, gt, wt)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("json %s: got %#v, want %#v", k, g, w)
		}
	}
	// Typed fields read the same envelopes.
	var typed struct {
		Aware   time.Time         `json:"aware"`
		Date    pytypes.Date      `json:"date"`
		Time    pytypes.TimeOfDay `json:"time"`
		Decimal pytypes.Decimal   `json:"decimal"`
		UUID    pytypes.UUID      `json:"uuid"`
		Binary  []byte            `json:"binary"`
	}
	if err := msg.Decode(&typed); err != nil || typed.Decimal != "12.50" || typed.Date.Day != 29 || len(typed.Binary) != 3 {
		t.Errorf("typed: %+v %v", typed, err)
	}

	// msgpack: str, bin, ints and floats as Python packs them.
	msg = goGet(t, conn)
	if msg.Properties.ContentType != "application/x-msgpack" || msg.Properties.ContentEncoding != "binary" {
		t.Fatalf("msgpack: %q %q", msg.Properties.ContentType, msg.Properties.ContentEncoding)
	}
	got = nil
	if err := msg.Decode(&got); err != nil {
		t.Fatal(err)
	}
	wantMsgpack := map[string]any{
		"s": "x", "b": []byte{0, 0xff}, "i": int64(1), "big": int64(1 << 40), "neg": int64(-200),
		"f": 1.5, "t": true, "n": nil, "l": []any{int64(1), "a"}, "m": map[string]any{"k": "v"},
	}
	if !reflect.DeepEqual(got, wantMsgpack) {
		t.Errorf("msgpack: got %#v\nwant %#v", got, wantMsgpack)
	}

	// yaml, from yaml.safe_dump.
	msg = goGet(t, conn)
	if msg.Properties.ContentType != "application/x-yaml" || msg.Properties.ContentEncoding != "utf-8" {
		t.Fatalf("yaml: %q %q", msg.Properties.ContentType, msg.Properties.ContentEncoding)
	}
	got = nil
	if err := msg.Decode(&got); err != nil {
		t.Fatal(err)
	}
	wantYAML := map[string]any{"s": "x", "i": 7, "f": 2.5, "l": []any{"a", "b"}, "n": nil, "t": true}
	if !reflect.DeepEqual(got, wantYAML) {
		t.Errorf("yaml: got %#v\nwant %#v", got, wantYAML)
	}

	// raw: bytes without a serializer are application/data, binary.
	msg = goGet(t, conn)
	var raw any
	if err := msg.Decode(&raw); err != nil || msg.Properties.ContentType != "application/data" ||
		msg.Properties.ContentEncoding != "binary" || !reflect.DeepEqual(raw, []byte{0xde, 0xad, 0xbe, 0xef}) {
		t.Errorf("raw: %q %q %#v %v", msg.Properties.ContentType, msg.Properties.ContentEncoding, raw, err)
	}

	// text: str without a serializer is text/plain, utf-8.
	msg = goGet(t, conn)
	var text any
	if err := msg.Decode(&text); err != nil || msg.Properties.ContentType != "text/plain" ||
		msg.Properties.ContentEncoding != "utf-8" || text != "héllo wörld" {
		t.Errorf("text: %q %q %#v %v", msg.Properties.ContentType, msg.Properties.ContentEncoding, text, err)
	}
}

func TestCodecsGoPublishesKombuDecodes(t *testing.T) {
	url, conn := codecConn(t, "yaml", "msgpack")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(codecQueue))
	publish := func(body any, opts ...kombu.PublishOption) {
		t.Helper()
		if err := p.Publish(ctx, body, opts...); err != nil {
			t.Fatal(err)
		}
	}
	publish(map[string]any{
		"aware":   time.Date(2024, 3, 1, 10, 0, 0, 250_000_000, time.UTC),
		"offset":  time.Date(2024, 3, 1, 10, 0, 0, 0, time.FixedZone("", -(5*3600+30*60))),
		"naive":   pytypes.Naive(time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)),
		"date":    pytypes.Date{Year: 2024, Month: 2, Day: 29},
		"time":    pytypes.TimeOfDay{Hour: 23, Minute: 59, Second: 58, Nanosecond: 1000},
		"tz_time": pytypes.TimeOfDay{Hour: 8, Offset: 3600, HasOffset: true},
		"decimal": pytypes.Decimal("-1.50E+3"),
		"uuid":    mustUUID(t, "0f8fad5b-d9cb-469f-a165-70867728950e"),
		"text":    []byte("héllo"),
		"binary":  []byte{0xff, 0, 0x80},
		"plain":   []any{1, 2.5, "x", true, nil, "<&>"},
	}, kombu.WithSerializer("json"))
	publish(map[string]any{
		"s": "x", "b": []byte{0, 0xff}, "i": 1, "big": int64(1) << 40, "neg": -200, "f": 1.5,
		"t": true, "n": nil, "l": []any{1, "a"}, "m": map[string]any{"k": "v"},
	}, kombu.WithSerializer("msgpack"))
	publish(map[string]any{"s": "x", "i": 7, "f": 2.5, "l": []string{"a", "b"}, "n": nil, "t": true},
		kombu.WithSerializer("yaml"))
	publish([]byte{0xde, 0xad, 0xbe, 0xef})
	publish("héllo wörld")

	msgs := pyConsumeTyped(t, url, 5, "json,msgpack,yaml,application/data,text/plain")
	var types map[string]any

	// json: Kombu 5.3's decoder gives Python's own types back.
	if err := json.Unmarshal(msgs[0].PyTypes, &types); err != nil {
		t.Fatal(err)
	}
	wantJSON := map[string]any{
		"aware":   []any{"datetime", "2024-03-01T10:00:00.250000+00:00"},
		"offset":  []any{"datetime", "2024-03-01T10:00:00-05:30"},
		"naive":   []any{"datetime", "2024-03-01T10:00:00"},
		"date":    []any{"date", "2024-02-29"},
		"time":    []any{"time", "23:59:58.000001"},
		"tz_time": []any{"time", "08:00:00+01:00"},
		"decimal": []any{"Decimal", "-1.50E+3"},
		"uuid":    []any{"UUID", "0f8fad5b-d9cb-469f-a165-70867728950e"},
		"text":    []any{"bytes", base64.StdEncoding.EncodeToString([]byte("héllo"))},
		"binary":  []any{"bytes", "/wCA"},
		"plain":   []any{[]any{"int", "1"}, []any{"float", "2.5"}, []any{"str", "x"}, []any{"bool", "True"}, []any{"NoneType", "None"}, []any{"str", "<&>"}},
	}
	if !reflect.DeepEqual(types, wantJSON) {
		t.Errorf("json: Python decoded\n%s\nwant %v", msgs[0].PyTypes, wantJSON)
	}
	// Kombu 5.3's encoder writes the decoded values back byte for byte as
	// kombu-go wrote them (compact separators aside, which are Python's
	// only difference).
	if !bytes.Equal(msgs[0].Reencoded, msgs[0].Raw) {
		t.Errorf("json: Kombu re-encodes\n%s\nkombu-go wrote\n%s", msgs[0].Reencoded, msgs[0].Raw)
	}

	// msgpack: str and bytes kept apart (use_bin_type), and Kombu's packer
	// writes the same bytes again.
	types = nil
	if err := json.Unmarshal(msgs[1].PyTypes, &types); err != nil {
		t.Fatal(err)
	}
	wantMsgpack := map[string]any{
		"s": []any{"str", "x"}, "b": []any{"bytes", "AP8="}, "i": []any{"int", "1"}, "big": []any{"int", "1099511627776"},
		"neg": []any{"int", "-200"}, "f": []any{"float", "1.5"}, "t": []any{"bool", "True"}, "n": []any{"NoneType", "None"},
		"l": []any{[]any{"int", "1"}, []any{"str", "a"}}, "m": map[string]any{"k": []any{"str", "v"}},
	}
	if msgs[1].ContentType != "application/x-msgpack" || !reflect.DeepEqual(types, wantMsgpack) {
		t.Errorf("msgpack (%s): Python decoded\n%s", msgs[1].ContentType, msgs[1].PyTypes)
	}
	if !bytes.Equal(msgs[1].Reencoded, msgs[1].Raw) {
		t.Errorf("msgpack: Python packs %x, kombu-go wrote %x", msgs[1].Reencoded, msgs[1].Raw)
	}

	// yaml: safe_load reads what go-yaml wrote.
	types = nil
	if err := json.Unmarshal(msgs[2].PyTypes, &types); err != nil {
		t.Fatal(err)
	}
	wantYAML := map[string]any{
		"s": []any{"str", "x"}, "i": []any{"int", "7"}, "f": []any{"float", "2.5"},
		"l": []any{[]any{"str", "a"}, []any{"str", "b"}}, "n": []any{"NoneType", "None"}, "t": []any{"bool", "True"},
	}
	if msgs[2].ContentType != "application/x-yaml" || !reflect.DeepEqual(types, wantYAML) {
		t.Errorf("yaml (%s): Python decoded\n%s", msgs[2].ContentType, msgs[2].PyTypes)
	}

	// raw → bytes, text → str.
	if msgs[3].ContentType != "application/data" || string(msgs[3].PyTypes) != `["bytes", "3q2+7w=="]` {
		t.Errorf("raw (%s): Python decoded %s", msgs[3].ContentType, msgs[3].PyTypes)
	}
	var text []string
	if err := json.Unmarshal(msgs[4].PyTypes, &text); err != nil || msgs[4].ContentType != "text/plain" ||
		!reflect.DeepEqual(text, []string{"str", "héllo wörld"}) {
		t.Errorf("text (%s): Python decoded %s", msgs[4].ContentType, msgs[4].PyTypes)
	}
}

// compressions lists Kombu's compressions with the Python module each
// needs beyond the standard library.
var compressions = []struct{ name, contentType, module string }{
	{"zlib", "application/x-gzip", ""},
	{"gzip", "application/x-gzip", ""},
	{"bzip2", "application/x-bz2", ""},
	{"lzma", "application/x-lzma", ""},
	{"xz", "application/x-lzma", ""},
	{"brotli", "application/x-brotli", "brotli"},
	{"zstd", "application/zstd", "zstandard"},
}

func TestCompressionInterop(t *testing.T) {
	body := map[string]any{"order_id": "A-1", "note": strings.Repeat("compress me ", 200)}
	for _, c := range compressions {
		t.Run(c.name, func(t *testing.T) {
			var modules []string
			if c.module != "" {
				modules = append(modules, c.module)
			}
			url, conn := codecConn(t, modules...)

			// Kombu compresses, kombu-go decompresses.
			pyRun(t, []map[string]any{{"routing_key": codecQueue, "serializer": "json", "compression": c.name, "body": body}},
				"publish", url)
			msg := goGet(t, conn)
			if msg.Headers["compression"] != c.contentType {
				t.Errorf("Kombu's compression header %v, want %s", msg.Headers["compression"], c.contentType)
			}
			var got map[string]any
			if err := msg.Decode(&got); err != nil || !reflect.DeepEqual(got, body) {
				t.Errorf("decoded %.80v, %v", got, err)
			}

			// kombu-go compresses, Kombu decompresses.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := kombu.NewProducer(conn, kombu.WithRoutingKey(codecQueue)).Publish(ctx, body, kombu.WithCompression(c.name)); err != nil {
				t.Fatal(err)
			}
			msgs := pyConsume(t, url, codecQueue, 1)
			if msgs[0].Headers["compression"] != c.contentType {
				t.Errorf("kombu-go's compression header %v, want %s", msgs[0].Headers["compression"], c.contentType)
			}
			got = nil
			if err := json.Unmarshal(msgs[0].Body, &got); err != nil || !reflect.DeepEqual(got, body) {
				t.Errorf("Kombu decoded %.80s, %v", msgs[0].Body, err)
			}
		})
	}
}
