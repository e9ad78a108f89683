package kombu

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Fuzz targets for everything that reads bytes a peer chose. `go test`
// runs their seeds (f.Add and testdata/fuzz/<name>/) as regression tests;
// `go test -run '^$' -fuzz '^FuzzX$' -fuzztime 60s ./runtime/` fuzzes one.
// The properties: no panic, no hang, memory bounded by the body limit, and
// errors that the consumer recognises (ErrDecode, ErrContentDisallowed,
// ErrLimitExceeded, ErrUnknownCompression), never a success that returns
// more than the limit.

const fuzzLimit = 64 << 10 // small, so that a bomb costs each execution little

// FuzzKombuJSON decodes a body with the json serializer, Kombu's
// __type__ envelopes included, into any and into typed fields. What decodes
// re-encodes, and decoding that gives the same value again.
func FuzzKombuJSON(f *testing.F) {
	for _, s := range []string{
		`{"__type__": "datetime", "__value__": "2024-03-01T10:00:00.250000+00:00"}`,
		`{"__type__": "date", "__value__": "2024-03-01"}`,
		`{"__type__": "time", "__value__": "10:30:00.000250+05:30"}`,
		`{"__type__": "decimal", "__value__": "-1.50E+3"}`,
		`{"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678", "version": 4}}`,
		`{"__type__": "bytes", "__value__": "h\u00e9"}`,
		`{"__type__": "base64", "__value__": "/wCA"}`,
		`{"__type__": "nope", "__value__": 1}`,
		`{"a": [1, 2.5, true, null, "x", {"b": {"__type__": "decimal", "__value__": "1"}}]}`,
		`[[[[[[[[[[[[]]]]]]]]]]]]`,
		`{"when": "2024-03-01T10:00:00Z", "id": "12345678-1234-5678-1234-567812345678", "n": 1e400}`,
		"\"\xff\"",
	} {
		f.Add([]byte(s))
	}
	type typed struct {
		When time.Time      `json:"when"`
		Day  Date           `json:"day"`
		At   TimeOfDay      `json:"at"`
		Dec  Decimal        `json:"dec"`
		ID   UUID           `json:"id"`
		Raw  []byte         `json:"raw"`
		Any  any            `json:"any"`
		Map  map[string]any `json:"map"`
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v any
		if err := (jsonSerializer{}).Unmarshal(body, &v); err == nil {
			first, err := jsonSerializer{}.Marshal(v)
			if err != nil {
				if isUnrepresentable(v) {
					return
				}
				t.Fatalf("decoded %#v does not re-encode: %v", v, err)
			}
			var again any
			if err := (jsonSerializer{}).Unmarshal(first, &again); err != nil {
				t.Fatalf("re-encoded %s does not decode: %v", first, err)
			}
			second, err := jsonSerializer{}.Marshal(again)
			if err != nil || !bytes.Equal(first, second) {
				t.Fatalf("not stable:\n%s\n%s %v", first, second, err)
			}
		}
		var s typed
		_ = jsonSerializer{}.Unmarshal(body, &s)
	})
}

// isUnrepresentable reports values that decode but that Python could not
// hold either, so refusing to encode them is right: datetimes whose UTC
// offset pushes them outside years 1 to 9999 are the only ones.
func isUnrepresentable(v any) bool {
	found := false
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case time.Time:
			if y := x.Year(); y < 1 || y > 9999 {
				found = true
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return found
}

// FuzzISOTime parses ISO 8601 times as the datetime envelope carries them.
func FuzzISOTime(f *testing.F) {
	for _, s := range []string{"2024-03-01", "2024-03-01T10:00:00.123456+05:30", "2024-03-01 10:00Z",
		"9999-12-31T23:59:59.999999-23:59:59.999999", "0001-01-01T00:00:00+00:00", "2024-02-30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseISOTime(s)
		if err != nil {
			return
		}
		b, err := appendISOTime(nil, tm)
		if err != nil {
			return // an offset moved it outside years 1 to 9999
		}
		back, err := ParseISOTime(string(b))
		if err != nil || !back.Equal(tm.Truncate(time.Microsecond)) || IsNaive(back) != IsNaive(tm) {
			t.Fatalf("%q → %v → %s → %v, %v", s, tm, b, back, err)
		}
	})
}

// FuzzContentTypeDispatch sends a body with any content type, encoding,
// compression header and accept list through the path a consumer takes:
// newMessage (accept check, decompression) and Decode into several targets.
func FuzzContentTypeDispatch(f *testing.F) {
	z := &zlibCompressor{}
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
				A any     `json:"a" yaml:"a"`
				D Decimal `json:"d" yaml:"d"`
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

// fuzzDecompressor fuzzes one decompressor with the limit; bodies it
// compressed itself must come back whole.
func fuzzDecompressor(f *testing.F, name string, seeds ...[]byte) {
	z := compressorFor(f, name)
	for _, in := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("kombu "), 300), make([]byte, 3*fuzzLimit)} {
		c, err := z.Compress(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c)
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := z.Decompress(body, fuzzLimit)
		if err != nil {
			return
		}
		if int64(len(out)) > fuzzLimit {
			t.Fatalf("%d bytes past the %d limit", len(out), fuzzLimit)
		}
	})
}

func FuzzDecompressZlib(f *testing.F) {
	fuzzDecompressor(f, "zlib", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, []byte{0x78, 0x9c})
}

func FuzzDecompressBzip2(f *testing.F) {
	fuzzDecompressor(f, "bzip2", []byte("BZh91AY&SY"), []byte("BZh0"))
}

func FuzzDecompressXZ(f *testing.F) {
	fuzzDecompressor(f, "lzma", append(append([]byte(nil), xzMagic...), 0, 1))
}

func FuzzDecompressBrotli(f *testing.F) {
	fuzzDecompressor(f, "brotli", []byte{0x1b, 0xff, 0xff}, []byte{0x06})
}

func FuzzDecompressZstd(f *testing.F) {
	huge := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0}
	huge = binary.LittleEndian.AppendUint64(huge, 1<<30)
	huge = append(huge, byte(16<<3|1<<1|1), 0, 0, 'A')
	fuzzDecompressor(f, "zstd", huge, []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8, 1, 0, 0})
}

// FuzzMsgpack decodes msgpack bodies: the validator and the decoder must
// agree that what passes the one decodes without a panic in the other, and
// what decodes into any re-encodes.
func FuzzMsgpack(f *testing.F) {
	for _, in := range []any{map[string]any{"a": []any{int64(1), "x", []byte{0}, nil, true, 1.5}}, time.Unix(1, 5).UTC(), uint64(math.MaxUint64)} {
		b, err := msgpackSerializer{}.Marshal(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xd4, 0x05, 0x01})             // extension type 5
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}) // 4G items
	f.Add([]byte{0x81, 0x01, 0x02})             // int key
	f.Fuzz(func(t *testing.T, body []byte) {
		var v any
		if err := (msgpackSerializer{}).Unmarshal(body, &v); err != nil {
			return
		}
		if _, err := (msgpackSerializer{}).Marshal(v); err != nil {
			t.Fatalf("decoded %#v does not re-encode: %v", v, err)
		}
		var s struct {
			A []string       `json:"a"`
			M map[string]int `json:"m"`
		}
		_ = msgpackSerializer{}.Unmarshal(body, &s)
	})
}

// FuzzYAML decodes YAML bodies with the safe loader.
func FuzzYAML(f *testing.F) {
	for _, s := range []string{"a: 1\nb: [x, y]\n", "a: &x [1]\nb: *x\n", "!!python/object:x {}\n", "a: !!binary AP8=\n",
		"- [[[[[[[[[]]]]]]]]]\n", "a: 2001-12-14t21:59:43.10-05:00\n", "? [a]\n: b\n", "<<: {a: 1}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v any
		_ = yamlSerializer{}.Unmarshal(body, &v)
	})
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
