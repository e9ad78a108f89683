package codec

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/apipb"

	"github.com/kombu-go/kombu/runtime/pytypes"
)

// serializer is what package kombu asks of a Serializer.
type serializer interface {
	Name() string
	ContentType() string
	ContentEncoding() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// benchOrder is a realistic message: an order of a few lines with ids,
// times, amounts and free text, about 1 KiB as JSON.
type benchOrder struct {
	ID       pytypes.UUID    `json:"id" yaml:"id"`
	Customer string          `json:"customer" yaml:"customer"`
	Placed   time.Time       `json:"placed" yaml:"placed"`
	Currency string          `json:"currency" yaml:"currency"`
	Total    pytypes.Decimal `json:"total" yaml:"total"`
	Lines    []benchLine     `json:"lines" yaml:"lines"`
	Tags     []string        `json:"tags" yaml:"tags"`
	Note     string          `json:"note" yaml:"note"`
	Priority int             `json:"priority" yaml:"priority"`
	Gift     bool            `json:"gift" yaml:"gift"`
}

type benchLine struct {
	SKU      string          `json:"sku" yaml:"sku"`
	Title    string          `json:"title" yaml:"title"`
	Quantity int             `json:"quantity" yaml:"quantity"`
	Price    pytypes.Decimal `json:"price" yaml:"price"`
}

func newBenchOrder() benchOrder {
	o := benchOrder{
		ID:       pytypes.UUID{0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f, 0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e},
		Customer: "customer-000042@example.com",
		Placed:   time.Date(2024, 3, 1, 10, 0, 0, 250_000_000, time.UTC),
		Currency: "EUR",
		Total:    "1234.50",
		Tags:     []string{"priority", "eu-west", "returning-customer", "newsletter"},
		Note:     "Please leave the parcel with the neighbour at number 12 if nobody answers the door.",
		Priority: 5,
		Gift:     true,
	}
	for i := range 6 {
		o.Lines = append(o.Lines, benchLine{
			SKU:      fmt.Sprintf("SKU-%06d", 1000+i*37),
			Title:    fmt.Sprintf("Stainless steel water bottle, %d ml, blue", 500+i*250),
			Quantity: 1 + i%3,
			Price:    pytypes.Decimal(fmt.Sprintf("%d.99", 10+i*7)),
		})
	}
	return o
}

// newBenchProto is a proto message of about the same size.
func newBenchProto() *apipb.Api {
	a := &apipb.Api{Name: "example.orders.v1.Orders", Version: "v1.4.2"}
	for i := range 8 {
		a.Methods = append(a.Methods, &apipb.Method{
			Name:             fmt.Sprintf("PlaceOrderVariant%d", i),
			RequestTypeUrl:   fmt.Sprintf("type.googleapis.com/example.orders.v1.PlaceOrderRequest%d", i),
			ResponseTypeUrl:  "type.googleapis.com/google.protobuf.Empty",
			RequestStreaming: i%2 == 0,
		})
	}
	return a
}

// BenchmarkCodecs measures, per serializer and compression, encoding and
// compressing a realistic 1 KiB message (encode) and decompressing and
// decoding it (decode). SetBytes is the serialized, uncompressed size, so
// MB/s compares codecs on the same payload.
//
//	go test -run '^$' -bench BenchmarkCodecs -benchmem ./runtime/codec/
func BenchmarkCodecs(b *testing.B) {
	order := newBenchOrder()
	pb := newBenchProto()
	payloads := []struct {
		name       string
		serializer serializer
		value      any
		into       func() any
	}{
		{"json", JSON{}, order, func() any { return new(benchOrder) }},
		{"msgpack", Msgpack{}, order, func() any { return new(benchOrder) }},
		{"yaml", YAML{}, order, func() any { return new(benchOrder) }},
		{"protobuf", Protobuf{}, pb, func() any { return new(apipb.Api) }},
		{"protojson", ProtoJSON{}, pb, func() any { return new(apipb.Api) }},
		// A proto message as json writes it for Python (see marshalProtoDict).
		{"json-proto", JSON{}, pb, func() any { return new(apipb.Api) }},
		{"raw", Raw{}, []byte(strings.Repeat(`{"k": "v", "n": 12345} `, 44)), func() any { return new([]byte) }},
	}
	// One of each compressor for the whole run, as a connection has: each
	// keeps pools (zstd's encoder state is megabytes), and a set per payload
	// would grow the heap the later benchmarks run in.
	compressors := map[string]compressor{}
	for _, name := range []string{"zlib", "bzip2", "lzma", "brotli", "zstd"} {
		compressors[name] = compressorFor(b, name)
	}
	for _, p := range payloads {
		s := p.serializer
		plain, err := s.Marshal(p.value)
		if err != nil {
			b.Fatal(err)
		}
		decoder := s
		if s.ContentType() == ContentTypeJSON {
			decoder = JSON{} // as package kombu decodes protojson
		}
		for _, comp := range []string{"none", "zlib", "bzip2", "lzma", "brotli", "zstd"} {
			z := compressors[comp] // nil for "none"
			name := fmt.Sprintf("%s/%s", p.name, comp)
			b.Run(name+"/encode", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(plain)))
				for b.Loop() {
					data, err := s.Marshal(p.value)
					if err != nil {
						b.Fatal(err)
					}
					if z != nil {
						if _, err := z.Compress(data); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			body := plain
			if z != nil {
				if body, err = z.Compress(plain); err != nil {
					b.Fatal(err)
				}
			}
			b.Run(name+"/decode", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(plain)))
				b.ReportMetric(float64(len(body)), "wire-bytes")
				for b.Loop() {
					data := body
					if z != nil {
						if data, err = z.Decompress(body, 64<<20); err != nil {
							b.Fatal(err)
						}
					}
					v := p.into()
					if err := decoder.Unmarshal(data, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestBenchPayloadsRoundTrip keeps the benchmark honest: each payload
// decodes to what was encoded.
func TestBenchPayloadsRoundTrip(t *testing.T) {
	order := newBenchOrder()
	for _, s := range []serializer{JSON{}, Msgpack{}, YAML{}} {
		name := s.Name()
		data, err := s.Marshal(order)
		if err != nil {
			t.Fatal(err)
		}
		var back benchOrder
		if err := s.Unmarshal(data, &back); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if back.Total != order.Total || len(back.Lines) != 6 || !back.Placed.Equal(order.Placed) || back.ID != order.ID {
			t.Fatalf("%s: %+v", name, back)
		}
		if name == "json" && (len(data) < 900 || len(data) > 1400) {
			t.Fatalf("json payload is %d bytes, want about 1 KiB", len(data))
		}
	}
	pb := newBenchProto()
	for _, s := range []serializer{Protobuf{}, ProtoJSON{}} {
		data, _ := s.Marshal(pb)
		back := new(apipb.Api)
		decoder := s
		if s.ContentType() == ContentTypeJSON {
			decoder = JSON{}
		}
		if err := decoder.Unmarshal(data, back); err != nil || !proto.Equal(back, pb) {
			t.Fatalf("%s: %v", s.Name(), err)
		}
	}
}
