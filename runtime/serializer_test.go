package kombu

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/apipb"
)

func TestJSONUsesProtoFieldNames(t *testing.T) {
	data, err := jsonSerializer{}.Marshal(&apipb.Method{Name: "Get", RequestTypeUrl: "type.googleapis.com/x"})
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
		if err := (jsonSerializer{}).Unmarshal([]byte(in), &m); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if m.GetRequestTypeUrl() != "u" || m.GetName() != "Get" {
			t.Fatalf("%s decoded to %v", in, &m)
		}
	}
}

func TestJSONPlainValues(t *testing.T) {
	data, err := jsonSerializer{}.Marshal(map[string]any{"id": 42})
	if err != nil || string(data) != `{"id":42}` {
		t.Fatalf("got %s, %v", data, err)
	}
}

func TestProtobufRoundTripAndMisuse(t *testing.T) {
	in := &apipb.Method{Name: "Get", RequestStreaming: true}
	data, err := protobufSerializer{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out apipb.Method
	if err := (protobufSerializer{}).Unmarshal(data, &out); err != nil || !proto.Equal(in, &out) {
		t.Fatalf("round trip: %v, %v", &out, err)
	}
	if _, err := (protobufSerializer{}).Marshal(map[string]int{}); err == nil {
		t.Fatal("marshalling a map with protobuf succeeded")
	}
	var s string
	if err := (protobufSerializer{}).Unmarshal(data, &s); err == nil {
		t.Fatal("unmarshalling protobuf into *string succeeded")
	}
}

func TestRawAndText(t *testing.T) {
	var b []byte
	if err := (rawSerializer{}).Unmarshal([]byte{0xff, 0}, &b); err != nil || !bytes.Equal(b, []byte{0xff, 0}) {
		t.Fatalf("raw: %v %v", b, err)
	}
	var s string
	if err := (textSerializer{}).Unmarshal([]byte("héllo"), &s); err != nil || s != "héllo" {
		t.Fatalf("text: %q %v", s, err)
	}
	if err := (textSerializer{}).Unmarshal([]byte{0xff}, &s); err == nil {
		t.Fatal("invalid UTF-8 text decoded without error")
	}
	if _, err := (rawSerializer{}).Marshal(42); err == nil {
		t.Fatal("raw serializer accepted an int")
	}
}

func TestAcceptListFollowsKombu(t *testing.T) {
	c := defaultCodecs
	a, err := c.accept([]string{"json"})
	if err != nil {
		t.Fatal(err)
	}
	for ct, want := range map[string]bool{
		ContentTypeJSON:     true,
		ContentTypeData:     true, // always trusted
		contentTypeAppText:  true, // always trusted
		ContentTypeText:     false,
		ContentTypeProtobuf: false,
	} {
		if got := a.allows(ct); got != want {
			t.Errorf("accept [json] allows(%q) = %v, want %v", ct, got, want)
		}
	}
	if a, _ := c.accept([]string{"application/x-protobuf"}); !a.allows(ContentTypeProtobuf) {
		t.Error("MIME type in the accept list not accepted")
	}
	if _, err := c.accept([]string{"pickle"}); !errors.Is(err, ErrUnknownSerializer) {
		t.Errorf("unknown name in accept list: got %v, want ErrUnknownSerializer", err)
	}
	var none *acceptList
	if !none.allows("application/anything") {
		t.Error("a nil accept list (replies to this process's own requests) should accept everything")
	}
}

func TestDefaultAcceptRefusesWhatKombuDisables(t *testing.T) {
	a, err := defaultCodecs.accept(nil) // a consumer without WithAccept
	if err != nil {
		t.Fatal(err)
	}
	for ct, want := range map[string]bool{
		ContentTypeJSON:     true,
		ContentTypeProtobuf: true,
		ContentTypeText:     true,
		ContentTypeData:     true,
		contentTypeAppText:  true,
		"application/xml":   true, // unregistered: handed over as text or bytes, as Kombu does
		ContentTypeYAML:     false,
		ContentTypeMsgpack:  false,
		contentTypePickle:   false,
	} {
		if got := a.allows(ct); got != want {
			t.Errorf("default accept allows(%q) = %v, want %v", ct, got, want)
		}
	}
	if msg := a.refusal(ContentTypeYAML); !strings.Contains(msg, "yaml") || !strings.Contains(msg, "WithAccept") {
		t.Errorf("refusal %q does not say how to accept yaml", msg)
	}
	// Listing them opts in; pickle stays undecodable even then.
	a, _ = defaultCodecs.accept([]string{"msgpack", "yaml", "application/x-python-serialize"})
	for _, ct := range []string{ContentTypeMsgpack, ContentTypeYAML, contentTypePickle} {
		if !a.allows(ct) {
			t.Errorf("explicit accept refuses %s", ct)
		}
	}
	m, err := testMessage(t, &transport.Delivery{Body: []byte("cos\nsystem\n"),
		Properties: transport.Properties{ContentType: contentTypePickle, ContentEncoding: "binary"}}, []string{"application/x-python-serialize"})
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := m.Decode(&v); err == nil {
		// Unregistered types decode as bytes, as in Kombu: never as pickle.
		if b, ok := v.([]byte); !ok || string(b) != "cos\nsystem\n" {
			t.Fatalf("pickle body decoded as %#v", v)
		}
	}
}

func TestUnregisteredContentTypesAsKombu(t *testing.T) {
	for _, tt := range []struct {
		encoding string
		body     []byte
		want     any
		ok       bool
	}{
		{"utf-8", []byte("<a/>"), "<a/>", true},
		{"", []byte("<a/>"), "<a/>", true},
		{"binary", []byte{0xff}, []byte{0xff}, true},
		{"utf-8", []byte{0xff}, nil, false},
		{"latin-1", []byte("x"), nil, false},
	} {
		m, err := testMessage(t, &transport.Delivery{Body: tt.body,
			Properties: transport.Properties{ContentType: "application/xml", ContentEncoding: tt.encoding}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		err = m.Decode(&v)
		if tt.ok != (err == nil) || tt.ok && !reflect.DeepEqual(v, tt.want) {
			t.Errorf("%q %q: %#v %v", tt.encoding, tt.body, v, err)
		}
		if err != nil && !errors.Is(err, ErrDecode) {
			t.Errorf("%q: %v is not ErrDecode", tt.encoding, err)
		}
	}
	// Raw and text bodies into *any: bytes and str, as Python gets them.
	for ct, want := range map[string]any{ContentTypeData: []byte("x"), ContentTypeText: "x"} {
		m, _ := testMessage(t, &transport.Delivery{Body: []byte("x"), Properties: transport.Properties{ContentType: ct}}, nil)
		var v any
		if err := m.Decode(&v); err != nil || !reflect.DeepEqual(v, want) {
			t.Errorf("%s into any: %#v %v", ct, v, err)
		}
	}
}

func TestEncodeChoosesSerializerAsKombu(t *testing.T) {
	tests := []struct {
		body        any
		cfg         publishConfig
		contentType string
		encoding    string
	}{
		{[]byte{1, 2}, publishConfig{}, ContentTypeData, "binary"},
		{"hi", publishConfig{}, ContentTypeText, "utf-8"},
		{map[string]int{"a": 1}, publishConfig{}, ContentTypeJSON, "utf-8"},
		{&apipb.Method{}, publishConfig{serializer: "protobuf"}, ContentTypeProtobuf, "binary"},
		{[]byte("<x/>"), publishConfig{contentType: "application/xml", encoding: "utf-8"}, "application/xml", "utf-8"},
	}
	for _, tt := range tests {
		_, ct, enc, err := defaultCodecs.encode(&tt.cfg, tt.body)
		if err != nil || ct != tt.contentType || enc != tt.encoding {
			t.Errorf("encode(%T, %+v) = %q %q %v, want %q %q", tt.body, tt.cfg, ct, enc, err, tt.contentType, tt.encoding)
		}
	}
	_, _, _, err := defaultCodecs.encode(&publishConfig{serializer: "xml"}, 1)
	if !errors.Is(err, ErrUnknownSerializer) || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("unknown serializer: got %v", err)
	}
	_, _, _, err = defaultCodecs.encode(&publishConfig{serializer: "json"}, make(chan int))
	if !errors.Is(err, ErrEncode) {
		t.Errorf("unencodable body: got %v, want ErrEncode", err)
	}
}

func TestCustomSerializerReplacesPerConnection(t *testing.T) {
	c, err := newCodecs([]Serializer{upperText{}}, nil, DefaultMaxBodySize)
	if err != nil {
		t.Fatal(err)
	}
	data, ct, _, err := c.encode(&publishConfig{serializer: "upper"}, "abc")
	if err != nil || string(data) != "ABC" || ct != "text/x-upper" {
		t.Fatalf("got %q %q %v", data, ct, err)
	}
	if _, err := defaultCodecs.serializer("upper"); err == nil {
		t.Fatal("a serializer added to one connection leaked into the defaults")
	}
}

type upperText struct{}

func (upperText) Name() string            { return "upper" }
func (upperText) ContentType() string     { return "text/x-upper" }
func (upperText) ContentEncoding() string { return "utf-8" }
func (upperText) Marshal(v any) ([]byte, error) {
	return []byte(strings.ToUpper(v.(string))), nil
}
func (upperText) Unmarshal(data []byte, v any) error {
	*(v.(*string)) = strings.ToLower(string(data))
	return nil
}

func TestZlibIsBoundedAndKombuCompatible(t *testing.T) {
	z := zlibCompressor{}
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
