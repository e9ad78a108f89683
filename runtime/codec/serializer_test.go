package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/apipb"
)

func TestJSONUsesProtoFieldNames(t *testing.T) {
	data, err := JSON{}.Marshal(&apipb.Method{Name: "Get", RequestTypeUrl: "type.googleapis.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	// Python Kombu consumers get the proto's own field names.
	if !bytes.Contains(data, []byte(`"request_type_url"`)) {
		t.Fatalf("json %s lacks the proto field name request_type_url", data)
	}
	// Reading accepts both the proto name and the lowerCamel JSON name, and
	// ignores fields it does not know.
	for _, in := range []string{
		`{"name":"Get","request_type_url":"u"}`,
		`{"name":"Get","requestTypeUrl":"u","added_later":1}`,
	} {
		var m apipb.Method
		if err := (JSON{}).Unmarshal([]byte(in), &m); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if m.GetRequestTypeUrl() != "u" || m.GetName() != "Get" {
			t.Fatalf("%s decoded to %v", in, &m)
		}
	}
}

func TestJSONPlainValues(t *testing.T) {
	data, err := JSON{}.Marshal(map[string]any{"id": 42})
	if err != nil || string(data) != `{"id":42}` {
		t.Fatalf("got %s, %v", data, err)
	}
}

func TestProtobufRoundTripAndMisuse(t *testing.T) {
	in := &apipb.Method{Name: "Get", RequestStreaming: true}
	data, err := Protobuf{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out apipb.Method
	if err := (Protobuf{}).Unmarshal(data, &out); err != nil || !proto.Equal(in, &out) {
		t.Fatalf("round trip: %v, %v", &out, err)
	}
	if _, err := (Protobuf{}).Marshal(map[string]int{}); err == nil {
		t.Fatal("marshalling a map with protobuf succeeded")
	}
	var s string
	if err := (Protobuf{}).Unmarshal(data, &s); err == nil {
		t.Fatal("unmarshalling protobuf into *string succeeded")
	}
}

func TestRawAndText(t *testing.T) {
	var b []byte
	if err := (Raw{}).Unmarshal([]byte{0xff, 0}, &b); err != nil || !bytes.Equal(b, []byte{0xff, 0}) {
		t.Fatalf("raw: %v %v", b, err)
	}
	var s string
	if err := (Text{}).Unmarshal([]byte("héllo"), &s); err != nil || s != "héllo" {
		t.Fatalf("text: %q %v", s, err)
	}
	if err := (Text{}).Unmarshal([]byte{0xff}, &s); err == nil {
		t.Fatal("invalid UTF-8 text decoded without error")
	}
	if _, err := (Raw{}).Marshal(42); err == nil {
		t.Fatal("raw serializer accepted an int")
	}
}

func TestZlibIsBoundedAndKombuCompatible(t *testing.T) {
	z := Zlib{}
	small, err := z.Compress(bytes.Repeat([]byte("a"), 1000))
	if err != nil {
		t.Fatal(err)
	}
	// Kombu's "zlib" is a zlib stream (0x78 ...) despite its application/x-gzip label.
	if small[0] != 0x78 || z.ContentType() != "application/x-gzip" {
		t.Fatalf("header byte %#x, content type %s", small[0], z.ContentType())
	}
	out, err := z.Decompress(small, 1000)
	if err != nil || len(out) != 1000 {
		t.Fatalf("decompress at the limit: %d bytes, %v", len(out), err)
	}
	bomb, _ := z.Compress(make([]byte, 4<<20)) // 4 MiB of zeros: ~4 KiB compressed
	if _, err := z.Decompress(bomb, 1<<20); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("bomb: got %v, want ErrLimitExceeded", err)
	}
	if _, err := z.Decompress([]byte("not zlib"), 1<<20); err == nil {
		t.Fatal("garbage decompressed without error")
	}
}

func TestProtojsonNeedsAProtoMessage(t *testing.T) {
	if _, err := (ProtoJSON{}).Marshal(map[string]int{}); !errors.Is(err, ErrEncode) {
		t.Fatalf("protojson marshalled a map: %v", err)
	}
	var m map[string]any
	if err := (ProtoJSON{}).Unmarshal([]byte(`{}`), &m); !errors.Is(err, ErrDecode) {
		t.Fatalf("protojson unmarshalled into a map: %v", err)
	}
}

// Every failure of a serializer or compressor is typed, so that a caller
// outside package kombu can tell bad input from other errors, and its text
// is the cause's alone (package kombu adds "cannot decode message" once).
func TestErrorsWrapErrDecodeAndErrEncode(t *testing.T) {
	for _, s := range []serializer{JSON{}, ProtoJSON{}, Protobuf{}, Msgpack{}, YAML{}, Raw{}, Text{}} {
		for _, bad := range []any{make(chan int), func() {}} {
			if _, err := s.Marshal(bad); !errors.Is(err, ErrEncode) || errors.Is(err, ErrDecode) {
				t.Errorf("%s: Marshal(%T): %v, want ErrEncode", s.Name(), bad, err)
			}
		}
		var v struct{ A chan int }
		err := s.Unmarshal([]byte("\xff\x00{"), &v)
		if !errors.Is(err, ErrDecode) || errors.Is(err, ErrEncode) {
			t.Errorf("%s: Unmarshal(garbage): %v, want ErrDecode", s.Name(), err)
		}
		if err != nil && strings.Contains(err.Error(), ErrDecode.Error()) {
			t.Errorf("%s: %q repeats the sentinel's text", s.Name(), err)
		}
	}
	for _, name := range []string{"zlib", "bzip2", "lzma", "brotli", "zstd"} {
		z := compressorFor(t, name)
		if _, err := z.Decompress([]byte("not compressed"), 1<<20); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: Decompress(garbage): %v, want ErrDecode", name, err)
		}
		bomb, err := z.Compress(make([]byte, 4096))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := z.Decompress(bomb, 1000); !errors.Is(err, ErrDecode) || !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%s: Decompress over the limit: %v, want ErrDecode and ErrLimitExceeded", name, err)
		}
	}
}
