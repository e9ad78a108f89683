package virtual

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
)

// These tests check the Python-compatible pieces against Python itself:
// Debian's python3 with python3-kombu, as the interop tests use.

const python = "/usr/bin/python3"

// runPython runs a Python program with in as JSON on stdin and decodes its
// stdout as JSON into out.
func runPython(t *testing.T, program string, in, out any) {
	t.Helper()
	if err := exec.Command(python, "-c", "import kombu").Run(); err != nil {
		brokertest.Unavailable(t, "Python Kombu not available ("+python+" -c 'import kombu'); apt-get install python3-kombu")
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", program)
	cmd.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("python output %q: %v", stdout.String(), err)
	}
}

func TestPyFloatMatchesPython(t *testing.T) {
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 1.5, 0.1, 1.0 / 3, 1e-4, 1e-5, 1.5e-5, 123456789, 1e15, 1e16, 1.5e16,
		12345678901234567890, 1e22, 1e100, 5e-324, math.MaxFloat64, 0.30000000000000004, 100, 2.5e-7, 9007199254740993,
		math.Inf(1), math.Inf(-1), math.NaN()}
	var hexes []string
	for _, f := range floats {
		hexes = append(hexes, formatHex(f))
	}
	var want []string
	runPython(t, `
import json, sys
print(json.dumps([json.dumps(float.fromhex(h)) for h in json.load(sys.stdin)]))`, hexes, &want)
	for i, f := range floats {
		if got := string(appendPyFloat(nil, f)); got != want[i] {
			t.Errorf("appendPyFloat(%v) = %s, Python writes %s", f, got, want[i])
		}
	}
}

// formatHex writes f as float.fromhex reads it.
func formatHex(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	return strconv.FormatFloat(f, 'x', -1, 64)
}

func TestPyStringMatchesPython(t *testing.T) {
	strs := []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rcr\bbs\fff", "\x00\x01\x1f\x7f",
		"é/ü", "日本語", "emoji 😀 𝄞", "\u2028\u2029", "<script>&'", "mixed é\"😀\\"}
	var want []string
	runPython(t, `
import json, sys
print(json.dumps([json.dumps(s) for s in json.load(sys.stdin)]))`, strs, &want)
	for i, s := range strs {
		if got := string(AppendPyString(nil, s)); got != want[i] {
			t.Errorf("AppendPyString(%q) = %s, Python writes %s", s, got, want[i])
		}
	}
}

func TestPyValueMatchesKombuJSON(t *testing.T) {
	// Maps are written with sorted keys; Python keeps insertion order, so
	// the Python side gets its dicts already sorted.
	headers := map[string]any{
		"int": 1, "neg": int64(-7), "uint": uint32(7), "float": 2.5, "whole": 3.0, "bool": true, "off": false, "nil": nil,
		"str": "é", "list": []any{1, "a", nil, []string{"x"}}, "nested": map[string]any{"b": 1, "a": map[string]string{"z": "y"}},
		"time": time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC), "time0": time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
	}
	got, err := appendPyMap(nil, headers)
	if err != nil {
		t.Fatal(err)
	}
	var want string
	runPython(t, `
import json, sys, datetime
from kombu.utils.json import dumps
h = {
 "bool": True, "float": 2.5, "int": 1, "list": [1, "a", None, ["x"]], "neg": -7,
 "nested": {"a": {"z": "y"}, "b": 1}, "nil": None, "off": False, "str": "é",
 "time": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc),
 "time0": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
 "uint": 7, "whole": 3.0,
}
print(json.dumps(dumps(h)))`, nil, &want)
	if string(got) != want {
		t.Errorf("headers\n got  %s\n want %s", got, want)
	}
}

func TestMarkRedeliveredMatchesKombu(t *testing.T) {
	envelopes := []string{
		`{"body": "aGk=", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "q"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t"}}`,
		`{"body":"eA==","headers":{"a":1.50,"b":[1e2,-0,"\u00e9\ud83d\ude00"],"redelivered":false},"properties":{"x":"\ud800","delivery_info":{"redelivered":false,"exchange":"e"}}}`,
		`{"body": "", "headers": {"k": "v"}, "properties": {}}`,
		`{"body": "", "properties": {"delivery_info": {}}}`,
		`{"a": 1, "a": 2, "headers": {}, "n": NaN, "i": -Infinity}`,
	}
	var want []string
	runPython(t, `
import json, sys
from kombu.utils.json import dumps, loads
out = []
for raw in json.load(sys.stdin):
    payload = loads(raw)
    try:
        payload['headers']['redelivered'] = True
        payload['properties']['delivery_info']['redelivered'] = True
    except KeyError:
        pass
    out.append(dumps(payload))
print(json.dumps(out))`, envelopes, &want)
	for i, raw := range envelopes {
		got, err := MarkRedelivered([]byte(raw))
		if err != nil {
			t.Errorf("MarkRedelivered(%s): %v", raw, err)
			continue
		}
		if string(got) != want[i] {
			t.Errorf("MarkRedelivered(%s)\n got  %s\n want %s", raw, got, want[i])
		}
	}
}

func TestKeyToPatternMatchesKombu(t *testing.T) {
	keys := []string{"", "a", "a.b", "*", "#", "a.*", "a.#", "*.b", "#.b", "a.*.#", "a#", "a*b", "a.b-c", "a b",
		"é.*", "日本.#", "a→b.*", "x\x00y", "a$b^c.(d)", "a..b", ".a", "a.", "under_score.*"}
	var want []string
	runPython(t, `
import json, sys
from kombu.transport.virtual.exchange import TopicExchange
t = TopicExchange(None)
print(json.dumps([t.key_to_pattern(k) for k in json.load(sys.stdin)]))`, keys, &want)
	for i, k := range keys {
		if got := KeyToPattern(k); got != want[i] {
			t.Errorf("KeyToPattern(%q) = %q, Kombu writes %q", k, got, want[i])
		}
	}
}

func TestTopicMatchingMatchesKombu(t *testing.T) {
	keys := []string{"", "a", "a.b", "*", "#", "a.*", "a.#", "*.b", "#.b", "a.*.#", "a#", "a*b", "a.b-c", "*.*",
		"#.#", "é.*", "a→b.*", "x\x00y.#", "a$b^c.(d)", "a..b", "a.*.c", "#.c"}
	routing := []string{"", "a", "b", "a.b", "a.c", "a.b.c", "a.b.c.d", "b.b", "x.b", "a.", ".b", "a..b", "a#", "axb",
		"a.b-c", "aXb-c", "é.x", "a→b.c", "x\x00y.z", "a$b^c.(d)", "a.b\n", "a.x.c", "c", "ab"}
	type row struct {
		Pattern string `json:"pattern"`
		Match   []bool `json:"match"`
	}
	var want []row
	runPython(t, `
import json, sys, re
from kombu.transport.virtual.exchange import TopicExchange
t = TopicExchange(None)
d = json.load(sys.stdin)
out = []
for k in d["keys"]:
    p = t.key_to_pattern(k)
    out.append({"pattern": p, "match": [bool(t._match(p, r)) for r in d["routing"]]})
# Patterns a binding may also carry: empty (direct-style) and hand-written.
for p in ["", "^a\\.b$", "^(?P<x>a)\\..*$", "^a\\Z", "^\\d+$"]:
    out.append({"pattern": p, "match": [bool(t._match(p, r)) for r in d["routing"]]})
print(json.dumps(out))`, map[string]any{"keys": keys, "routing": routing}, &want)
	for _, w := range want {
		for j, rk := range routing {
			if got := MatchPattern(w.Pattern, rk); got != w.Match[j] {
				t.Errorf("pattern %q, routing key %q: Go matches %t, Python %t", w.Pattern, rk, got, w.Match[j])
			}
		}
	}
}

func TestEnvelopeMatchesKombu(t *testing.T) {
	p := &transport.Publishing{
		Exchange: "ex", RoutingKey: "rk", Body: []byte(`{"x": 1}`),
		Headers: map[string]any{"h": 1, "z": []any{1, nil, true}},
		Properties: transport.Properties{
			ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2, Priority: 5,
			CorrelationID: "cid", ReplyTo: "rq", MessageID: "m1", Type: "t", AppID: "ap",
		},
	}
	head, err := AppendEnvelopeHead(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	got := string(AppendEnvelopeTail(head, "TAG"))
	var want string
	runPython(t, `
import json, sys
from kombu import Connection, Producer
from kombu.transport.virtual.base import Channel
msgs = []
with Connection("memory://") as conn:
    ch = conn.channel()
    ch._next_delivery_tag = lambda: "TAG"
    ch._put = lambda queue, message, **kw: msgs.append(message)
    ch.exchange_declare("ex", "direct")
    ch.queue_declare("q")
    ch.queue_bind("q", "ex", "rk")
    Producer(ch).publish('{"x": 1}', exchange="ex", routing_key="rk", headers={"h": 1, "z": [1, None, True]},
        priority=5, content_type="application/json", content_encoding="utf-8",
        correlation_id="cid", reply_to="rq", message_id="m1", type="t", app_id="ap")
from kombu.utils.json import dumps
print(json.dumps(dumps(msgs[0])))`, nil, &want)
	if got != want {
		t.Errorf("envelope\n got  %s\n want %s", got, want)
	}
	d, err := DecodeEnvelope([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != `{"x": 1}` || d.Properties != p.Properties || d.Exchange != "ex" || d.RoutingKey != "rk" ||
		d.Headers["h"] != int64(1) || d.Redelivered {
		t.Errorf("decoded %+v", d)
	}
}

// One formatter writes every Python time: each offset form against
// Python's own isoformat() and Kombu 5.2's JSON encoder.
func TestISOTimeMatchesPython(t *testing.T) {
	type sample struct {
		Y, Mo, D, H, Mi, S, Us int
		Offset                 int // seconds east of UTC
	}
	samples := []sample{
		{2024, 5, 6, 7, 8, 9, 0, 0},
		{2024, 5, 6, 7, 8, 9, 123456, 0},
		{2024, 5, 6, 7, 8, 9, 1, 19800}, // +05:30
		{1999, 12, 31, 23, 59, 59, 999999, -10800},
		{1, 1, 1, 0, 0, 0, 0, 0},
		{9999, 12, 31, 23, 59, 59, 999999, 0},
		{1937, 6, 30, 12, 0, 0, 0, 1172},      // Amsterdam's +00:19:32
		{2024, 2, 29, 0, 0, 5, 500000, -3723}, // -01:02:03
	}
	var want struct {
		Aware []string `json:"aware"`
		Naive []string `json:"naive"`
		Kombu []string `json:"kombu"`
	}
	runPython(t, `
import json, sys, datetime
from kombu.utils.json import dumps
out = {"aware": [], "naive": [], "kombu": []}
for s in json.load(sys.stdin):
    tz = datetime.timezone(datetime.timedelta(seconds=s["Offset"]))
    naive = datetime.datetime(s["Y"], s["Mo"], s["D"], s["H"], s["Mi"], s["S"], s["Us"])
    aware = naive.replace(tzinfo=tz)
    out["aware"].append(aware.isoformat())
    out["naive"].append(naive.isoformat())
    out["kombu"].append(json.loads(dumps(aware)))
print(json.dumps(out))`, samples, &want)
	for i, s := range samples {
		at := time.Date(s.Y, time.Month(s.Mo), s.D, s.H, s.Mi, s.S, s.Us*1000+321, time.FixedZone("", s.Offset))
		for _, c := range []struct {
			off  Offset
			want string
		}{{OffsetISO, want.Aware[i]}, {OffsetNone, want.Naive[i]}, {OffsetZ, want.Kombu[i]}} {
			got, err := AppendISOTime(nil, at, c.off)
			if err != nil || string(got) != c.want {
				t.Errorf("AppendISOTime(%v, %d) = %q, %v; Python writes %q", at, c.off, got, err, c.want)
			}
		}
	}
	for _, year := range []int{0, -1, 10000} {
		at := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
		if got, err := AppendISOTime([]byte("x"), at, OffsetZ); !errors.Is(err, ErrTimeRange) || got != nil {
			t.Errorf("year %d: %q, %v; want ErrTimeRange", year, got, err)
		}
		_, err := AppendPyValue(nil, at)
		if !errors.Is(err, ErrTimeRange) || !errors.Is(err, transport.ErrNotSupported) {
			t.Errorf("a header time in year %d: %v; want ErrTimeRange and ErrNotSupported", year, err)
		}
	}
}

// What Python Kombu could not read as a message is not an envelope.
func TestDecodeEnvelopeRefusesNonEnvelopes(t *testing.T) {
	for _, raw := range []string{``, `null`, `[]`, `"text"`, `{"hello": "world"}`, `{"body": "eA==", "properties": null}`,
		`{"body": "eA==", "properties": []}`, `{"properties": {}} x`} {
		if d, err := DecodeEnvelope([]byte(raw)); !errors.Is(err, ErrEnvelope) {
			t.Errorf("DecodeEnvelope(%s) = %+v, %v; want ErrEnvelope", raw, d, err)
		}
	}
	d, err := DecodeEnvelope([]byte(`{"properties": {}}`))
	if err != nil || len(d.Body) != 0 {
		t.Errorf("the least envelope: %+v, %v", d, err)
	}
}
