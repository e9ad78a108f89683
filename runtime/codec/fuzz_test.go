package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/pytypes"
)

// Fuzz targets for everything a serializer or decompressor reads from a
// peer. `go test` runs their seeds (f.Add and testdata/fuzz/<name>/) as
// regression tests; `go test -run '^$' -fuzz '^FuzzX$' -fuzztime 60s
// ./runtime/codec/` fuzzes one. The properties: no panic, no hang, memory
// bounded by the limit, and a decompressor never returns more than the
// limit.

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
		When time.Time         `json:"when"`
		Day  pytypes.Date      `json:"day"`
		At   pytypes.TimeOfDay `json:"at"`
		Dec  pytypes.Decimal   `json:"dec"`
		ID   pytypes.UUID      `json:"id"`
		Raw  []byte            `json:"raw"`
		Any  any               `json:"any"`
		Map  map[string]any    `json:"map"`
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v any
		if err := (JSON{}).Unmarshal(body, &v); err == nil {
			first, err := JSON{}.Marshal(v)
			if err != nil {
				if isUnrepresentable(v) {
					return
				}
				t.Fatalf("decoded %#v does not re-encode: %v", v, err)
			}
			var again any
			if err := (JSON{}).Unmarshal(first, &again); err != nil {
				t.Fatalf("re-encoded %s does not decode: %v", first, err)
			}
			second, err := JSON{}.Marshal(again)
			if err != nil || !bytes.Equal(first, second) {
				t.Fatalf("not stable:\n%s\n%s %v", first, second, err)
			}
		}
		var s typed
		_ = JSON{}.Unmarshal(body, &s)
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
		b, err := Msgpack{}.Marshal(in)
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
		if err := (Msgpack{}).Unmarshal(body, &v); err != nil {
			return
		}
		if _, err := (Msgpack{}).Marshal(v); err != nil {
			t.Fatalf("decoded %#v does not re-encode: %v", v, err)
		}
		var s struct {
			A []string       `json:"a"`
			M map[string]int `json:"m"`
		}
		_ = Msgpack{}.Unmarshal(body, &s)
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
		_ = YAML{}.Unmarshal(body, &v)
	})
}
