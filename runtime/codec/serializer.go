package codec

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// Protobuf writes proto messages in the binary protobuf encoding
// (application/x-protobuf). It is the default of generated producers.
type Protobuf struct{}

func (Protobuf) Name() string            { return "protobuf" }
func (Protobuf) ContentType() string     { return ContentTypeProtobuf }
func (Protobuf) ContentEncoding() string { return "binary" }

// Marshal encodes v, which must be a proto.Message.
func (Protobuf) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, encodeFailed(fmt.Errorf("the protobuf serializer needs a proto.Message, got %T", v))
	}
	return encoded(proto.Marshal(m))
}

// Unmarshal decodes data into v, which must be a proto.Message.
func (Protobuf) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return decodeFailed(fmt.Errorf("the protobuf serializer decodes into a proto.Message, got %T", v))
	}
	return decodeFailed(proto.Unmarshal(data, m))
}

// Raw sends bytes as they are, as Kombu's "raw" does (application/data).
// It encodes a []byte or a string and decodes into *[]byte, *string or
// *any (a []byte, as Python gets bytes).
type Raw struct{}

func (Raw) Name() string            { return "raw" }
func (Raw) ContentType() string     { return ContentTypeData }
func (Raw) ContentEncoding() string { return "binary" }

// Marshal returns v's bytes; v must be a []byte or a string.
func (Raw) Marshal(v any) ([]byte, error) {
	return encoded(bytesOf(v))
}

// Unmarshal stores data in *[]byte, *string or *any.
func (Raw) Unmarshal(data []byte, v any) error { return decodeFailed(setBytes(data, v, false)) }

// Text sends UTF-8 text (text/plain), as Kombu does for str bodies. It
// encodes a string or a []byte and decodes into *string, *[]byte or *any (a
// string, as Python gets str); text that is not valid UTF-8 is refused both
// ways.
type Text struct{}

func (Text) Name() string            { return "text" }
func (Text) ContentType() string     { return ContentTypeText }
func (Text) ContentEncoding() string { return "utf-8" }

// Marshal returns v's bytes; v must be a string or a []byte of UTF-8 text.
func (Text) Marshal(v any) ([]byte, error) {
	b, err := bytesOf(v)
	if err == nil && !utf8.Valid(b) {
		err = errors.New("text body is not valid UTF-8")
	}
	if err != nil {
		return nil, encodeFailed(err)
	}
	return b, nil
}

// Unmarshal stores UTF-8 text in *string, *[]byte or *any.
func (Text) Unmarshal(data []byte, v any) error {
	if !utf8.Valid(data) {
		return decodeFailed(errors.New("text body is not valid UTF-8"))
	}
	return decodeFailed(setBytes(data, v, true))
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

// setBytes stores data in *[]byte, *string or *any; text says whether an
// any gets a string (text) or a []byte (raw bytes), as Python gets str or
// bytes.
func setBytes(data []byte, v any, text bool) error {
	switch p := v.(type) {
	case *[]byte:
		*p = append((*p)[:0], data...)
		return nil
	case *string:
		*p = string(data)
		return nil
	case *any:
		if text {
			*p = string(data)
		} else {
			*p = append([]byte(nil), data...)
		}
		return nil
	}
	return fmt.Errorf("decode into *[]byte, *string or *any, got %T", v)
}
