package kombu

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// A Serializer turns values into message bodies and back. Its name is what
// producers ask for (WithSerializer("json")); its content type is what
// travels with the message and selects the decoder on the other side, as in
// Kombu's serialization registry.
type Serializer interface {
	Name() string            // "json"
	ContentType() string     // "application/json"
	ContentEncoding() string // "utf-8", or "binary" for bytes
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// Content types kombu-go uses and trusts. Kombu always accepts
// application/data and application/text, whatever the accept list says.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeData     = "application/data"
	ContentTypeText     = "text/plain"
	contentTypeAppText  = "application/text"
)

// builtinSerializers are the serializers every connection has. Further ones
// are added per connection with WithSerializers.
var builtinSerializers = []Serializer{
	jsonSerializer{},
	protobufSerializer{},
	rawSerializer{},
	textSerializer{},
}

// jsonSerializer is Kombu's default serializer. Proto messages are written
// with protojson using the proto field names ("order_id", not "orderId"), so
// a Python consumer gets the dict it expects; reading accepts either form and
// ignores unknown fields, so a newer producer does not break an older
// consumer.
type jsonSerializer struct{}

func (jsonSerializer) Name() string            { return "json" }
func (jsonSerializer) ContentType() string     { return ContentTypeJSON }
func (jsonSerializer) ContentEncoding() string { return "utf-8" }

func (jsonSerializer) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	}
	return json.Marshal(v)
}

func (jsonSerializer) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
	}
	return json.Unmarshal(data, v)
}

// protobufSerializer writes the binary protobuf encoding.
type protobufSerializer struct{}

func (protobufSerializer) Name() string            { return "protobuf" }
func (protobufSerializer) ContentType() string     { return ContentTypeProtobuf }
func (protobufSerializer) ContentEncoding() string { return "binary" }

func (protobufSerializer) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("the protobuf serializer needs a proto.Message, got %T", v)
	}
	return proto.Marshal(m)
}

func (protobufSerializer) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("the protobuf serializer decodes into a proto.Message, got %T", v)
	}
	return proto.Unmarshal(data, m)
}

// rawSerializer sends bytes as they are, as Kombu's "raw" does
// (application/data). It decodes into *[]byte or *string.
type rawSerializer struct{}

func (rawSerializer) Name() string                       { return "raw" }
func (rawSerializer) ContentType() string                { return ContentTypeData }
func (rawSerializer) ContentEncoding() string            { return "binary" }
func (rawSerializer) Marshal(v any) ([]byte, error)      { return bytesOf(v) }
func (rawSerializer) Unmarshal(data []byte, v any) error { return setBytes(data, v) }

// textSerializer sends UTF-8 text (text/plain), as Kombu does for str bodies.
type textSerializer struct{}

func (textSerializer) Name() string            { return "text" }
func (textSerializer) ContentType() string     { return ContentTypeText }
func (textSerializer) ContentEncoding() string { return "utf-8" }

func (textSerializer) Marshal(v any) ([]byte, error) {
	b, err := bytesOf(v)
	if err == nil && !utf8.Valid(b) {
		return nil, fmt.Errorf("text body is not valid UTF-8")
	}
	return b, err
}

func (textSerializer) Unmarshal(data []byte, v any) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("text body is not valid UTF-8")
	}
	return setBytes(data, v)
}

func bytesOf(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case string:
		return []byte(b), nil
	}
	return nil, fmt.Errorf("a raw or text body must be []byte or string, got %T", v)
}

func setBytes(data []byte, v any) error {
	switch p := v.(type) {
	case *[]byte:
		*p = append((*p)[:0], data...)
		return nil
	case *string:
		*p = string(data)
		return nil
	}
	return fmt.Errorf("decode into *[]byte or *string, got %T", v)
}

// codecs is one connection's serializers and compressors, looked up by name
// and by content type. It is built once at Dial and read-only afterwards, so
// lookups need no lock.
type codecs struct {
	byName        map[string]Serializer
	byContentType map[string]Serializer
	compressors   map[string]Compressor // by name, alias and content type
	maxBodySize   int64
}

func newCodecs(extraSer []Serializer, extraComp []Compressor, maxBodySize int64) (*codecs, error) {
	c := &codecs{
		byName:        map[string]Serializer{},
		byContentType: map[string]Serializer{},
		compressors:   map[string]Compressor{},
		maxBodySize:   maxBodySize,
	}
	for _, s := range append(append([]Serializer(nil), builtinSerializers...), extraSer...) {
		if s.Name() == "" || s.ContentType() == "" {
			return nil, fmt.Errorf("kombu: serializer %T needs a name and a content type", s)
		}
		c.byName[s.Name()] = s
		c.byContentType[s.ContentType()] = s
	}
	for _, z := range append(append([]Compressor(nil), builtinCompressors...), extraComp...) {
		for _, key := range append([]string{z.Name(), z.ContentType()}, z.Aliases()...) {
			c.compressors[key] = z
		}
	}
	return c, nil
}

func (c *codecs) serializer(name string) (Serializer, error) {
	if s, ok := c.byName[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownSerializer, name, strings.Join(c.serializerNames(), ", "))
}

func (c *codecs) serializerNames() []string {
	names := make([]string, 0, len(c.byName))
	for _, s := range builtinSerializers {
		names = append(names, s.Name())
	}
	for n := range c.byName {
		if !isBuiltinSerializer(n) {
			names = append(names, n)
		}
	}
	return names
}

func isBuiltinSerializer(name string) bool {
	for _, s := range builtinSerializers {
		if s.Name() == name {
			return true
		}
	}
	return false
}

// acceptList is the set of content types a consumer decodes; nil accepts
// every registered one.
type acceptList struct {
	types map[string]struct{}
	names []string // as given, for error messages
}

// accept resolves serializer names and MIME types to an accept list, as
// Kombu's prepare_accept_content does.
func (c *codecs) accept(names []string) (*acceptList, error) {
	if names == nil {
		return nil, nil
	}
	a := &acceptList{types: make(map[string]struct{}, len(names)), names: names}
	for _, n := range names {
		if strings.Contains(n, "/") {
			a.types[n] = struct{}{}
			continue
		}
		s, err := c.serializer(n)
		if err != nil {
			return nil, fmt.Errorf("kombu: accept list: %w", err)
		}
		a.types[s.ContentType()] = struct{}{}
	}
	return a, nil
}

// allows applies Kombu's rule: the listed types, plus application/data and
// application/text, which carry no code and are always trusted.
func (a *acceptList) allows(contentType string) bool {
	if a == nil {
		return true
	}
	if contentType == ContentTypeData || contentType == contentTypeAppText {
		return true
	}
	_, ok := a.types[contentType]
	return ok
}
