package kombu

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kombu-go/kombu/runtime/codec"
)

// A Serializer turns values into message bodies and back. Its name is what
// producers ask for (WithSerializer("json")); its content type is what
// travels with the message and selects the decoder on the other side, as in
// Kombu's serialization registry.
//
// Every connection has these, from package codec, with Kombu's names,
// content types and content encodings:
//
//	json       application/json        utf-8   Kombu's default, with its __type__ envelopes (see package pytypes)
//	protobuf   application/x-protobuf  binary  proto messages (generated stubs' default)
//	protojson  application/json        utf-8   proto messages in the canonical proto3 JSON mapping
//	msgpack    application/x-msgpack   binary  as Kombu: use_bin_type=True, raw=False
//	yaml       application/x-yaml      utf-8   safe decoding only, as yaml.safe_load
//	raw        application/data        binary  []byte or string as is
//	text       text/plain              utf-8   UTF-8 text
//
// A producer that names no serializer sends []byte as raw, a string as
// text and anything else as json, as Kombu does. json, msgpack and yaml
// carry a proto message as the dict a Python consumer expects: proto field
// names, 64-bit integers as numbers, floats as floats, enums by name, bytes
// in base64 (see package codec).
//
// Add serializers per connection with WithCustomSerializers; one with a
// built-in's name or content type replaces it on that connection. There is
// no global registry.
//
// Consumers decode by content type, within their accept list (WithAccept,
// by serializer name or content type). application/data and
// application/text are always accepted, as in Kombu; text/plain is not
// unless listed. Without WithAccept a consumer refuses what Kombu refuses by
// default (pickle, yaml and msgpack) and accepts everything else; a content
// type no serializer handles then decodes, as in Kombu, into *[]byte,
// *string or *any as bytes or, when its content encoding is utf-8, text.
// A refused message fails with ErrContentDisallowed, goes to the consumer's
// decode-error handler and is rejected (dead-lettered where its queue has a
// dead-letter exchange).
type Serializer interface {
	Name() string            // "json"
	ContentType() string     // "application/json"
	ContentEncoding() string // "utf-8", or "binary" for bytes
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// Content types kombu-go uses. Kombu always accepts application/data and
// application/text, whatever the accept list says.
const (
	ContentTypeJSON     = codec.ContentTypeJSON
	ContentTypeProtobuf = codec.ContentTypeProtobuf
	ContentTypeMsgpack  = codec.ContentTypeMsgpack
	ContentTypeYAML     = codec.ContentTypeYAML
	ContentTypeData     = codec.ContentTypeData
	ContentTypeText     = codec.ContentTypeText
	contentTypeAppText  = "application/text"
	contentTypePickle   = "application/x-python-serialize"
)

// builtinSerializers are the serializers every connection has, in the order
// error messages list them. Further ones are added per connection with
// WithCustomSerializers. The list is never modified.
var builtinSerializers = []Serializer{
	codec.JSON{},
	codec.Protobuf{},
	codec.ProtoJSON{},
	codec.Msgpack{},
	codec.YAML{},
	codec.Raw{},
	codec.Text{},
}

// refusedByDefault are the content types a consumer without WithAccept
// refuses. Kombu disables pickle, yaml and msgpack at import
// (disable_insecure_serializers) and kombu-go does the same, so that a
// service refuses what its Python neighbours refuse: pickle runs code (and
// kombu-go cannot decode it anyway), and yaml and msgpack are complex
// formats a team should opt into. List them with WithAccept to decode them.
var refusedByDefault = map[string]string{
	contentTypePickle:  "pickle",
	ContentTypeYAML:    "yaml",
	ContentTypeMsgpack: "msgpack",
}

// decodeUnregistered decodes a body whose content type no serializer
// handles, as Kombu does: text in its content encoding, unless the encoding
// is binary. Only UTF-8 (and its subset ASCII) text is supported.
func decodeUnregistered(data []byte, encoding string, v any) error {
	switch strings.ToLower(encoding) {
	case "binary", "ascii-8bit":
		return codec.Raw{}.Unmarshal(data, v)
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return codec.Text{}.Unmarshal(data, v)
	}
	return fmt.Errorf("content encoding %q is not supported (only utf-8 and binary)", encoding)
}

// codecs is one connection's serializers and compressors, looked up by name
// and by content type. It is built once at Dial and read-only afterwards, so
// lookups need no lock.
type codecs struct {
	byName        map[string]Serializer
	byContentType map[string]Serializer
	names         []string              // serializer names, built-ins first
	compressors   map[string]Compressor // by name, alias and content type
	maxBodySize   int64
}

// newCodecs builds a registry from the built-ins and the connection's own
// serializers and compressors. A built-in that shares its content type with
// an earlier one (protojson with json) does not take over decoding; an
// added serializer or compressor replaces any built-in with its name or
// content type.
func newCodecs(extraSer []Serializer, extraComp []Compressor, maxBodySize int64) (*codecs, error) {
	c := &codecs{
		byName:        map[string]Serializer{},
		byContentType: map[string]Serializer{},
		compressors:   map[string]Compressor{},
		maxBodySize:   maxBodySize,
	}
	for i, s := range append(append([]Serializer(nil), builtinSerializers...), extraSer...) {
		if s == nil || s.Name() == "" || s.ContentType() == "" {
			return nil, fmt.Errorf("kombu: serializer %T needs a name and a content type", s)
		}
		if _, dup := c.byName[s.Name()]; !dup {
			c.names = append(c.names, s.Name())
		}
		c.byName[s.Name()] = s
		if _, taken := c.byContentType[s.ContentType()]; !taken || i >= len(builtinSerializers) {
			c.byContentType[s.ContentType()] = s
		}
	}
	for _, z := range append(newBuiltinCompressors(), extraComp...) {
		if z == nil || z.Name() == "" || z.ContentType() == "" {
			return nil, fmt.Errorf("kombu: compressor %T needs a name and a content type", z)
		}
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

func (c *codecs) serializerNames() []string { return slices.Clone(c.names) }

// acceptList is the set of content types a consumer decodes. A nil list
// accepts everything.
type acceptList struct {
	types   map[string]struct{} // WithAccept's list, resolved to content types
	refused map[string]string   // without WithAccept: refusedByDefault
	names   []string            // as given, for error messages
}

// accept resolves serializer names and MIME types to an accept list, as
// Kombu's prepare_accept_content does. Without names (no WithAccept) the
// list accepts every content type but those Kombu disables by default:
// pickle, yaml and msgpack.
func (c *codecs) accept(names []string) (*acceptList, error) {
	if names == nil {
		return &acceptList{refused: refusedByDefault}, nil
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
	if a.types == nil {
		_, refused := a.refused[contentType]
		return !refused
	}
	_, ok := a.types[contentType]
	return ok
}

// refusal explains why allows returned false.
func (a *acceptList) refusal(contentType string) string {
	if a.types == nil {
		return fmt.Sprintf("%q (%s) is refused by default, as Kombu refuses pickle, yaml and msgpack; name it in WithAccept to decode it",
			contentType, a.refused[contentType])
	}
	return fmt.Sprintf("%q (accepted: %s)", contentType, strings.Join(a.names, ", "))
}
