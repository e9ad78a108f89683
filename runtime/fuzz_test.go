package kombu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/pytypes"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Fuzz targets for the consumer's path through bytes a peer chose (the
// serializers and decompressors themselves are fuzzed in package codec).
// `go test` runs their seeds (f.Add and testdata/fuzz/<name>/) as
// regression tests; `go test -run '^$' -fuzz '^FuzzX$' -fuzztime 60s
// ./runtime/` fuzzes one.
// The properties: no panic, no hang, memory bounded by the body limit, and
// errors that the consumer recognises (ErrDecode, ErrContentDisallowed,
// ErrLimitExceeded, ErrUnknownCompression), never a success that returns
// more than the limit.

const fuzzLimit = 64 << 10 // small, so that a bomb costs each execution little

// FuzzContentTypeDispatch sends a body with any content type, encoding,
// compression header and accept list through the path a consumer takes:
// newMessage (accept check, decompression) and Decode into several targets.
func FuzzContentTypeDispatch(f *testing.F) {
	z := &codec.Zlib{}
	packed, _ := z.Compress([]byte(`{"a": 1}`))
	f.Add("application/json", "utf-8", "", []byte(`{"a": {"__type__": "decimal", "__value__": "1"}}`), uint8(0))
	f.Add("application/json", "utf-8", "application/x-gzip", packed, uint8(1))
	f.Add("application/x-msgpack", "binary", "", []byte{0x81, 0xa1, 'a', 0x01}, uint8(2))
	f.Add("application/x-yaml", "utf-8", "", []byte("a: [1, 2]\n"), uint8(2))
	f.Add("application/x-yaml", "utf-8", "", []byte("a: !!python/object:os.system x\n"), uint8(2))
	f.Add("text/plain", "utf-8", "", []byte("h\xffi"), uint8(1))
	f.Add("application/data", "binary", "zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, uint8(1))
	f.Add("application/x-python-serialize", "binary", "", []byte("cos\nsystem\n"), uint8(0))
	f.Add("application/x-protobuf", "binary", "bzip2", []byte("BZh9"), uint8(3))
	f.Add("", "", "", []byte{}, uint8(0))
	f.Add("application/xml", "latin-1", "lz4", []byte("<a/>"), uint8(0))
	accepts := [][]string{nil, {"json"}, {"json", "msgpack", "yaml", "text"}, {"application/x-protobuf", "raw"}}
	conn := testConnection(mustCodecs(f, fuzzLimit))
	f.Fuzz(func(t *testing.T, ct, enc, compression string, body []byte, sel uint8) {
		accept, err := conn.codecs.accept(accepts[int(sel)%len(accepts)])
		if err != nil {
			t.Fatal(err)
		}
		d := &transport.Delivery{Body: body, Properties: transport.Properties{ContentType: ct, ContentEncoding: enc}}
		if compression != "" {
			d.Headers = map[string]any{"compression": compression}
		}
		m, err := conn.newMessage(d, accept, 0)
		if m == nil {
			t.Fatal("newMessage returned no message to settle")
		}
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if int64(len(m.Body)) > fuzzLimit {
			t.Fatalf("%d bytes past the %d limit", len(m.Body), fuzzLimit)
		}
		var (
			a   any
			s   string
			b   []byte
			mp  map[string]any
			str struct {
				A any             `json:"a" yaml:"a"`
				D pytypes.Decimal `json:"d" yaml:"d"`
			}
		)
		for _, target := range []any{&a, &s, &b, &mp, &str} {
			if err := m.Decode(target); err != nil {
				checkDecodeError(t, err)
			}
		}
	})
}

func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrDecode) && !errors.Is(err, ErrContentDisallowed) {
		t.Fatalf("error the consumer would not treat as a decode error: %v", err)
	}
}

func mustCodecs(tb testing.TB, limit int64) *codecs {
	c, err := newCodecs(nil, nil, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// FuzzHeaders builds message headers of every type an AMQP field table can
// carry (nested tables and arrays as in x-death, timestamps, byte arrays,
// floats) from the fuzzer's bytes, and sends them through the in-process
// broker and the consumer's decoding path: published, fetched, decoded,
// rejected into a dead-letter exchange (which rewrites x-death from what
// the message already carries) and fetched from the dead-letter queue.
// The AMQP wire tables themselves are read by amqp091-go, which fuzzes its
// own table reader.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte("x-death\x07\x01\x06count\x03\x00\x00\x00\x00\x00\x00\x00\x02queue\x05\x04work"))
	f.Add([]byte("x-death\x07\x02\x05\x03abc\x06queue\x05\x04work"))
	f.Add([]byte("compression\x05\x12application/x-gzip"))
	f.Add([]byte("compression\x04\x03\x01\x02\x03"))
	f.Add([]byte("x-first-death-queue\x09\xff\xff\xff\xff\xff\xff\xff\xff"))
	ctx := context.Background()
	conn, err := Dial(ctx, fmt.Sprintf("memory:///fuzz-headers-%d", os.Getpid()))
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()
	topo := Topology{
		Exchanges: []Exchange{{Name: "dlx", Type: ExchangeFanout}},
		Queues: []Queue{
			{Name: "dead", Bindings: []Binding{{Exchange: "dlx"}}},
			{Name: "work", DeadLetterExchange: "dlx"},
		},
	}
	if err := topo.Declare(ctx, conn); err != nil {
		f.Fatal(err)
	}
	p := NewProducer(conn, WithRoutingKey("work"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := headerReader{data: data}
		headers := r.table(0)
		if err := p.Publish(ctx, []byte(`{"a": 1}`), WithContentType(ContentTypeJSON, "utf-8"), WithHeaders(headers)); err != nil {
			t.Fatalf("publish: %v", err)
		}
		msg, err := Queue{Name: "work"}.Get(ctx, conn)
		if err != nil {
			// Get rejects a message it cannot decode: dead-lettered below.
			checkDecodeError(t, err)
		} else {
			var v any
			if err := msg.Decode(&v); err != nil {
				checkDecodeError(t, err)
			}
			if err := msg.Reject(false); err != nil {
				t.Fatal(err)
			}
		}
		dead, err := Queue{Name: "dead"}.Get(ctx, conn, WithAutoAck())
		if err != nil {
			checkDecodeError(t, err)
		}
		if dead == nil {
			t.Fatal("the rejected message was not dead-lettered")
		}
		deaths, _ := dead.Headers["x-death"].([]any)
		first, _ := deaths[0].(map[string]any)
		if n, _ := first["count"].(int64); first["queue"] != "work" || n < 1 {
			t.Fatalf("x-death %#v", dead.Headers["x-death"])
		}
	})
}

// headerReader turns bytes into a header table: each entry is a
// NUL-terminated-or-short key, a type byte and a value.
type headerReader struct {
	data []byte
	i    int
}

func (r *headerReader) byte() byte {
	if r.i >= len(r.data) {
		return 0
	}
	r.i++
	return r.data[r.i-1]
}

func (r *headerReader) bytes(n int) []byte {
	n = min(n, len(r.data)-r.i)
	b := r.data[r.i : r.i+n]
	r.i += n
	return b
}

func (r *headerReader) key() string {
	start := r.i
	for r.i < len(r.data) && r.data[r.i] >= ' ' && r.i-start < 32 {
		r.i++
	}
	k := string(r.data[start:r.i])
	if !utf8.ValidString(k) {
		k = "k"
	}
	return k
}

func (r *headerReader) value(depth int) any {
	switch r.byte() % 12 {
	case 0:
		return nil
	case 1:
		return r.byte()&1 == 1
	case 2:
		return int8(r.byte())
	case 3:
		return int64(binary.BigEndian.Uint64(append(r.bytes(8), make([]byte, 8)...)))
	case 4:
		return r.bytes(int(r.byte()))
	case 5:
		return string(r.bytes(int(r.byte())))
	case 6:
		if depth < 8 {
			return r.table(depth + 1)
		}
		return nil
	case 7:
		if depth < 8 {
			n := int(r.byte() % 8)
			a := make([]any, 0, n)
			for range n {
				a = append(a, r.value(depth+1))
			}
			return a
		}
		return nil
	case 8:
		return time.Unix(int64(binary.BigEndian.Uint32(append(r.bytes(4), 0, 0, 0, 0))), 0).UTC()
	case 9:
		return math.Float64frombits(binary.BigEndian.Uint64(append(r.bytes(8), make([]byte, 8)...)))
	case 10:
		return int32(binary.BigEndian.Uint32(append(r.bytes(4), 0, 0, 0, 0)))
	default:
		return float32(r.byte())
	}
}

func (r *headerReader) table(depth int) map[string]any {
	m := map[string]any{}
	for r.i < len(r.data) && len(m) < 16 {
		k := r.key()
		m[k] = r.value(depth)
		if depth > 0 && r.byte()%4 == 0 {
			break
		}
	}
	return m
}
