package virtual

import (
	"bytes"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// envelopeSamples are envelopes as Kombu, Celery and this package write
// them, and odd ones Python could also have stored: the fuzz seeds, and
// the ones the fast decoder must read itself.
var envelopeSamples = []struct {
	raw  string
	fast bool // the fast decoder reads it (rather than leaving it to the slow one)
}{
	{`{"body": "aGk=", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "q"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t"}}`, true},
	{`{"body": "eyJ4IjogMX0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"h": 1, "z": [1, null, true], "f": 1.5, "big": 12345678901234567890, "e": 1e3, "s": "\u00e9\ud83d\ude00", "n": {"a": {"b": [false]}}}, "properties": {"correlation_id": "cid", "reply_to": "rq", "message_id": "m1", "timestamp": 1764806400, "type": "t", "user_id": "u", "app_id": "ap", "delivery_mode": 2, "expiration": "10000", "delivery_info": {"exchange": "ex", "routing_key": "rk"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "TAG"}}`, true},
	{`{"body": "aGk=", "headers": {"redelivered": true, "x-death": [{"time": "2024-05-06T07:08:09.123456+00:00", "count": 1}, {"time": {"__type__": "datetime", "__value__": "2024-05-06T07:08:09Z"}}, 5]}, "properties": {"delivery_info": {"redelivered": true}, "body_encoding": "base64"}, "redelivered": true}`, true},
	{` {"body": "plain text", "properties": {"timestamp": 1764806400.25, "priority": "7", "delivery_mode": 2.9, "expiration": 5000, "message_id": 42, "correlation_id": null, "type": "\"q\""}} `, true},
	{`{"body": "aGk", "properties": {"body_encoding": "base64"}}`, false},                  // not padded: the slow decoder cleans it
	{`{"body": "a Gk=\n", "properties": {"body_encoding": "base64"}}`, false},              // escaped, then cleaned by the slow one
	{`{"Body": "aGk=", "properties": {"body_encoding": "base64"}}`, false},                 // v1 matches case-insensitively
	{`{"body": "aGk=", "body": "eA==", "properties": {"body_encoding": "base64"}}`, false}, // duplicate
	{`{"body": 5, "properties": {}}`, false},
	{`{"body": "", "headers": null, "properties": {"delivery_info": null}}`, true},
	{`{"body": "eA==", "properties": {"delivery_info": {"exchange": 1, "routing_key": ["x"]}, "body_encoding": "base64"}}`, true},
	{`{"headers": {"a": 1, "a": 2}, "properties": {}}`, false},
	{`{"headers": {"k": "\ud800"}, "properties": {}}`, false},
	{`{"headers": [], "properties": {}}`, false},
	{`{"properties": {}}`, true},
	{`{"properties": {}} x`, false},
	{`{"properties": null}`, false},
	{`{"x": [1, {"y": -0.5e-3}], "properties": {"z": {}}}`, true},
	{`{"body": "\u00e9", "properties": {}}`, true},
	{"{\"body\": \"\xff\", \"properties\": {}}", false},
	{`{"properties": {"delivery_mode": 01}}`, false},
	{`null`, false},
	{``, false},
}

// The fast decoder must agree with the slow one on every input (falling
// back where unsure), and read the usual envelopes itself.
func TestDecodeEnvelopeFastMatchesSlow(t *testing.T) {
	p := &transport.Publishing{
		Exchange: "ex", RoutingKey: "a.b", Body: []byte("body\x00\xff"),
		Headers: map[string]any{"kombu_go_type": "x.y", "n": 1, "l": []any{"a", 2.5}, "when": time.Unix(1, 0).UTC()},
		Properties: transport.Properties{
			ContentType: "application/x-protobuf", ContentEncoding: "binary", MessageID: "m", Type: "x.y",
			Timestamp: time.Unix(1764806400, 0), Expiration: 3 * time.Second, Priority: 3, CorrelationID: "é",
		},
	}
	head, err := AppendEnvelopeHead(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	written := string(AppendEnvelopeTail(head, NewDeliveryTag()))
	marked, err := MarkRedelivered([]byte(written))
	if err != nil {
		t.Fatal(err)
	}
	samples := append(envelopeSamples, struct {
		raw  string
		fast bool
	}{written, true}, struct {
		raw  string
		fast bool
	}{string(marked), true}, struct {
		raw  string
		fast bool
	}{string(benchEnvelope(t)), true})
	for _, s := range samples {
		_, fast := decodeEnvelopeFast([]byte(s.raw))
		if fast != s.fast {
			t.Errorf("fast decoder reads %s: %t, want %t", s.raw, fast, s.fast)
		}
		compareDecoders(t, []byte(s.raw))
	}
}

func compareDecoders(t *testing.T, raw []byte) {
	t.Helper()
	want, wantErr := decodeEnvelopeSlow(raw)
	got, err := DecodeEnvelope(raw)
	if (err == nil) != (wantErr == nil) || err != nil && !errors.Is(err, ErrEnvelope) {
		t.Fatalf("DecodeEnvelope(%q): %v; the slow decoder: %v", raw, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeEnvelope(%q)\n got  %#v\n slow %#v", raw, got, want)
	}
}

func FuzzDecodeEnvelopeFastMatchesSlow(f *testing.F) {
	for _, s := range envelopeSamples {
		f.Add([]byte(s.raw))
	}
	f.Add(benchEnvelope(f))
	f.Fuzz(func(t *testing.T, raw []byte) {
		compareDecoders(t, raw)
	})
}

// Delivery tags are version 4 UUIDs in their usual text form, as Kombu's
// uuid() makes them, and do not repeat.
func TestDeliveryTagsAreUUID4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 10000 {
		tag := NewDeliveryTag()
		if !re.MatchString(tag) {
			t.Fatalf("tag %q is not a version 4 UUID", tag)
		}
		if seen[tag] {
			t.Fatalf("tag %q made twice", tag)
		}
		seen[tag] = true
	}
	env := string(appendEnvelopeTailNewTag([]byte(`{"properties": {"delivery_tag": "`)))
	if tag := strings.TrimSuffix(strings.TrimPrefix(env, `{"properties": {"delivery_tag": "`), `"}}`); !re.MatchString(tag) {
		t.Errorf("envelope tail %q has no version 4 UUID", env)
	}
}

// TestDecodeEnvelopeFastOwnsItsBytes checks that what the fast decoder
// returns shares nothing with the input (a store may reuse its buffer),
// and that appending to the body, which shares the decoder's one
// allocation with the strings, cannot write over them.
func TestDecodeEnvelopeFastOwnsItsBytes(t *testing.T) {
	raw := benchEnvelope(t)
	want, ok := decodeEnvelopeFast(bytes.Clone(raw))
	if !ok {
		t.Fatal("the fast decoder gave up on the SDK's envelope")
	}
	got, ok := decodeEnvelopeFast(raw)
	if !ok {
		t.Fatal("the fast decoder gave up on the SDK's envelope")
	}
	for i := range raw {
		raw[i] = 'x'
	}
	got.Body = append(got.Body, bytes.Repeat([]byte{'y'}, 64)...)
	got.Body = got.Body[:len(want.Body)]
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after the input was overwritten and the body appended to:\n got %+v\nwant %+v", got, want)
	}
}
