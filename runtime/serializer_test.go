package kombu

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/apipb"

	"github.com/kombu-go/kombu/runtime/transport"
)

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
		owned       bool
	}{
		{[]byte{1, 2}, publishConfig{}, ContentTypeData, "binary", false},
		{"hi", publishConfig{}, ContentTypeText, "utf-8", true},
		{[]byte("hi"), publishConfig{serializer: "text"}, ContentTypeText, "utf-8", false},
		{map[string]int{"a": 1}, publishConfig{}, ContentTypeJSON, "utf-8", true},
		{&apipb.Method{}, publishConfig{serializer: "protobuf"}, ContentTypeProtobuf, "binary", true},
		{[]byte("<x/>"), publishConfig{contentType: "application/xml", encoding: "utf-8"}, "application/xml", "utf-8", false},
		{"<x/>", publishConfig{contentType: "application/xml", encoding: "utf-8"}, "application/xml", "utf-8", true},
	}
	for _, tt := range tests {
		// A body is the message's own (transport.Publishing.BodyOwned)
		// unless it is the caller's []byte, passed through.
		_, ct, enc, owned, err := defaultCodecs.encode(&tt.cfg, tt.body)
		if err != nil || ct != tt.contentType || enc != tt.encoding || owned != tt.owned {
			t.Errorf("encode(%T, %+v) = %q %q owned %v, %v; want %q %q owned %v", tt.body, tt.cfg, ct, enc, owned, err, tt.contentType, tt.encoding, tt.owned)
		}
	}
	_, _, _, _, err := defaultCodecs.encode(&publishConfig{serializer: "xml"}, 1)
	if !errors.Is(err, ErrUnknownSerializer) || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("unknown serializer: got %v", err)
	}
	for _, name := range []string{"json", "msgpack", "yaml"} {
		_, _, _, _, err = defaultCodecs.encode(&publishConfig{serializer: name}, make(chan int))
		if !errors.Is(err, ErrEncode) {
			t.Errorf("%s: unencodable body: got %v, want ErrEncode", name, err)
		}
	}
}

func TestCustomSerializerReplacesPerConnection(t *testing.T) {
	c, err := newCodecs([]Serializer{upperText{}}, nil, DefaultMaxBodySize)
	if err != nil {
		t.Fatal(err)
	}
	data, ct, _, owned, err := c.encode(&publishConfig{serializer: "upper"}, "abc")
	if err != nil || string(data) != "ABC" || ct != "text/x-upper" {
		t.Fatalf("got %q %q %v", data, ct, err)
	}
	if owned {
		t.Error("a custom serializer's bytes marked as the message's own: it may reuse its buffer")
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

// protojson shares application/json with json, which keeps decoding it.
func TestProtojsonSharesJSONsContentType(t *testing.T) {
	c := mustCodecs(t, DefaultMaxBodySize)
	if _, err := c.serializer("protojson"); err != nil {
		t.Fatal(err)
	}
	if c.byContentType[ContentTypeJSON].Name() != "json" {
		t.Fatalf("application/json decodes with %s", c.byContentType[ContentTypeJSON].Name())
	}
	if !errors.Is(func() error { _, err := c.serializer("nope"); return err }(), ErrUnknownSerializer) {
		t.Fatal("unknown serializer")
	}
}

// The registry finds each built-in compressor by its name, its aliases and
// its header value (their values, Kombu's, are checked in package codec).
func TestRegistryFindsEveryCompressionName(t *testing.T) {
	c := mustCodecs(t, DefaultMaxBodySize)
	for _, z := range newBuiltinCompressors() {
		for _, key := range append([]string{z.Name(), z.ContentType()}, z.Aliases()...) {
			if got, err := c.compressor(key); err != nil || got.Name() != z.Name() {
				t.Errorf("%s: found %v, %v; want %s", key, got, err, z.Name())
			}
		}
	}
}

func TestUnknownCompressionIsADecodeError(t *testing.T) {
	for _, header := range []any{"application/x-snappy", "lz4", 42} {
		m, err := testMessage(t, &transport.Delivery{
			Body:    []byte("x"),
			Headers: map[string]any{"compression": header},
		}, nil)
		if !errors.Is(err, ErrDecode) || !errors.Is(err, ErrUnknownCompression) || m == nil {
			t.Errorf("compression %v: got %v, want ErrDecode and ErrUnknownCompression", header, err)
		}
	}
	// A body over the limit surfaces as ErrDecode and ErrLimitExceeded.
	limited, _ := newCodecs(nil, nil, 1000)
	conn := testConnection(limited)
	bomb, _ := compressorFor(t, "zstd").Compress(make([]byte, 1<<20))
	_, err := conn.newMessage(&transport.Delivery{Body: bomb, Headers: map[string]any{"compression": "application/zstd"}}, nil, 0)
	if !errors.Is(err, ErrDecode) || !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("bomb: got %v", err)
	}
}

// compressorFor returns the compressor a connection's registry has under a
// name, alias or header value.
func compressorFor(t testing.TB, name string) Compressor {
	t.Helper()
	z, err := mustCodecs(t, DefaultMaxBodySize).compressor(name)
	if err != nil {
		t.Fatal(err)
	}
	return z
}
