package virtual

import (
	"bytes"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// benchEnvelope is an envelope as the SDK writes one for a 100-byte
// protobuf body with the properties a generated producer sets.
func benchEnvelope(tb testing.TB) []byte {
	p := &transport.Publishing{
		Exchange: "kombu-go-bench", RoutingKey: "order.placed",
		Body:    bytes.Repeat([]byte{0x0a, 0x31}, 50),
		Headers: map[string]any{"kombu_go_type": "kombubench.v1.Bench.PlaceOrder"},
		Properties: transport.Properties{
			ContentType: "application/x-protobuf", ContentEncoding: "binary",
			DeliveryMode: 2, MessageID: "3f1c2a9e-4b7d-4e0f-9a51-6c2d8e7b1f40",
			Type: "kombubench.v1.Bench.PlaceOrder", Timestamp: time.Unix(1764806400, 0),
		},
	}
	b, err := AppendEnvelopeHead(nil, p)
	if err != nil {
		tb.Fatal(err)
	}
	return AppendEnvelopeTail(b, NewDeliveryTag())
}

// BenchmarkDecodeEnvelope is the per-message cost of reading a stored
// envelope, which every consumer of a virtual transport pays.
func BenchmarkDecodeEnvelope(b *testing.B) {
	raw := benchEnvelope(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEnvelope(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEnvelopeSlow is the reflective decoder the fast one falls
// back on, for comparison.
func BenchmarkDecodeEnvelopeSlow(b *testing.B) {
	raw := benchEnvelope(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEnvelopeSlow(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeEnvelope is the per-message cost of writing an envelope,
// which every publish to a virtual transport pays.
func BenchmarkEncodeEnvelope(b *testing.B) {
	raw := benchEnvelope(b)
	d, err := DecodeEnvelope(raw)
	if err != nil {
		b.Fatal(err)
	}
	p := &transport.Publishing{Exchange: d.Exchange, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers, Properties: d.Properties}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		head, err := AppendEnvelopeHead(make([]byte, 0, envelopeCap(p)), p)
		if err != nil {
			b.Fatal(err)
		}
		_ = appendEnvelopeTailNewTag(head)
	}
}
