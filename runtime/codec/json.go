package codec

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kombu-go/kombu/runtime/pytypes"
)

// JSON is Kombu's default serializer (application/json, utf-8), with
// Kombu's {"__type__": ..., "__value__": ...} envelopes: time.Time values
// are written as datetime envelopes and []byte as bytes or base64 ones, and
// the types of package pytypes (Date, TimeOfDay, Decimal, UUID) as theirs.
// Decoding into any (or a map[string]any, or a []any) turns each envelope
// into its Go value (see pytypes.FromEnvelope); struct fields of those types
// (and of time.Time and []byte) read the envelopes and also the plain
// strings Kombu 5.2 and earlier wrote.
//
// Everything else follows encoding/json: struct tags, field matching,
// numbers into any as float64, nil slices as null. Two differences: "<",
// ">" and "&" are not escaped (Python does not escape them either), and a
// body that is not valid UTF-8 does not decode (Kombu refuses it too).
//
// Proto messages are written as the dict Python Kombu consumers expect (see
// the package documentation): protojson's form with the proto field names
// ("order_id", not "orderId"), 64-bit integers as numbers and floats with a
// decimal point. Reading accepts that and protojson's own form and ignores
// unknown fields, so a newer producer does not break an older consumer.
type JSON struct{}

func (JSON) Name() string            { return "json" }
func (JSON) ContentType() string     { return ContentTypeJSON }
func (JSON) ContentEncoding() string { return "utf-8" }

// Marshal encodes v as Kombu's json serializer does.
func (JSON) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return encoded(marshalProtoDict(m))
	}
	return encoded(json.Marshal(v, kombuJSONEncode))
}

// Unmarshal decodes data into v, converting Kombu's envelopes.
func (JSON) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		return decodeFailed(protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m))
	}
	return decodeFailed(json.Unmarshal(data, v, kombuJSONDecode))
}

// ProtoJSON writes proto messages in the canonical proto3 JSON mapping
// (lowerCamelCase names, as protojson does by default) for consumers that
// expect that rather than Kombu's dicts. It sends application/json, so any
// JSON consumer reads it; package kombu decodes application/json with JSON,
// which accepts both name styles.
type ProtoJSON struct{}

func (ProtoJSON) Name() string            { return "protojson" }
func (ProtoJSON) ContentType() string     { return ContentTypeJSON }
func (ProtoJSON) ContentEncoding() string { return "utf-8" }

// Marshal encodes v, which must be a proto.Message, with protojson.
func (ProtoJSON) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, encodeFailed(fmt.Errorf("the protojson serializer needs a proto.Message, got %T", v))
	}
	return encoded(protojson.Marshal(m))
}

// Unmarshal decodes data into v, which must be a proto.Message, ignoring
// unknown fields.
func (ProtoJSON) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return decodeFailed(fmt.Errorf("the protojson serializer decodes into a proto.Message, got %T", v))
	}
	return decodeFailed(protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m))
}

// The JSON options are built once and never changed.
var (
	kombuJSONEncode = json.JoinOptions(
		jsonv1.DefaultOptionsV1(),
		jsontext.EscapeForHTML(false),
		json.WithMarshalers(json.JoinMarshalers(
			json.MarshalToFunc(marshalTime),
			json.MarshalToFunc(marshalBytes),
		)),
	)
	kombuJSONDecode = json.JoinOptions(
		jsonv1.DefaultOptionsV1(),
		jsontext.AllowInvalidUTF8(false),
		json.WithUnmarshalers(json.JoinUnmarshalers(
			json.UnmarshalFromFunc(unmarshalAny),
			json.UnmarshalFromFunc(unmarshalTime),
			json.UnmarshalFromFunc(unmarshalBytes),
			// The pytypes types' UnmarshalJSON methods work with any JSON
			// package; these read the envelopes without the detour.
			json.UnmarshalFromFunc(unmarshalDecimal),
			json.UnmarshalFromFunc(unmarshalUUID),
			json.UnmarshalFromFunc(unmarshalDate),
			json.UnmarshalFromFunc(unmarshalTimeOfDay),
		)),
	)
)

func writeEnvelope(enc *jsontext.Encoder, typ string, value jsontext.Token) error {
	for _, tok := range []jsontext.Token{
		jsontext.BeginObject,
		jsontext.String("__type__"), jsontext.String(typ),
		jsontext.String("__value__"), value,
		jsontext.EndObject,
	} {
		if err := enc.WriteToken(tok); err != nil {
			return err
		}
	}
	return nil
}

// marshalTime writes a time.Time as Kombu's datetime envelope.
func marshalTime(enc *jsontext.Encoder, t time.Time) error {
	var buf [40]byte
	iso, err := pytypes.AppendISOTime(buf[:0], t)
	if err != nil {
		return err
	}
	return writeEnvelope(enc, "datetime", jsontext.String(string(iso)))
}

// marshalBytes writes a []byte as Kombu does: {"__type__": "bytes"} with
// the text when it is valid UTF-8, {"__type__": "base64"} otherwise. A nil
// slice is null, as encoding/json writes it.
func marshalBytes(enc *jsontext.Encoder, b []byte) error {
	if b == nil {
		return enc.WriteToken(jsontext.Null)
	}
	if utf8.Valid(b) {
		return writeEnvelope(enc, "bytes", jsontext.String(string(b)))
	}
	return writeEnvelope(enc, "base64", jsontext.String(base64.StdEncoding.EncodeToString(b)))
}

// unmarshalAny decodes a JSON object bound for an any: an envelope becomes
// its Go value, any other object a map[string]any. Nested values are
// converted first, as Python's object_hook does.
func unmarshalAny(dec *jsontext.Decoder, v *any) error {
	if dec.PeekKind() != '{' {
		return json.SkipFunc
	}
	if p := reflect.ValueOf(*v); p.Kind() == reflect.Pointer && !p.IsNil() {
		return json.SkipFunc // encoding/json decodes into what the pointer points to
	}
	m := make(map[string]any)
	if err := json.UnmarshalDecode(dec, &m); err != nil {
		return err
	}
	x, isEnvelope, err := pytypes.FromEnvelope(m)
	if err != nil {
		return err
	}
	if isEnvelope {
		*v = x
	} else {
		*v = m
	}
	return nil
}

// readEnvelopeText reads a string, or an envelope whose __type__ is one of
// types and whose __value__ is a string, and returns the text and the
// type ("" for a plain string). Null and other kinds are left to the
// default decoding (SkipFunc).
func readEnvelopeText(dec *jsontext.Decoder, types ...string) (text, typ string, err error) {
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return "", "", err
		}
		return tok.String(), "", nil
	case '{':
	default:
		return "", "", json.SkipFunc
	}
	if _, err := dec.ReadToken(); err != nil {
		return "", "", err
	}
	var haveType, haveValue bool
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return "", "", err
		}
		switch name.String() {
		case "__type__":
			if dec.PeekKind() != '"' || haveType {
				return "", "", fmt.Errorf("%w: __type__ must be a string, once", pytypes.ErrEnvelope)
			}
			tok, err := dec.ReadToken()
			if err != nil {
				return "", "", err
			}
			typ, haveType = tok.String(), true
		case "__value__":
			if dec.PeekKind() != '"' || haveValue {
				return "", "", fmt.Errorf("%w: __value__ must be a string, once", pytypes.ErrEnvelope)
			}
			tok, err := dec.ReadToken()
			if err != nil {
				return "", "", err
			}
			text, haveValue = tok.String(), true
		default:
			return "", "", fmt.Errorf("%w: unexpected key %q", pytypes.ErrEnvelope, name.String())
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return "", "", err
	}
	if !haveType || !haveValue {
		return "", "", fmt.Errorf("%w: want __type__ and __value__", pytypes.ErrEnvelope)
	}
	for _, t := range types {
		if typ == t {
			return text, typ, nil
		}
	}
	return "", "", fmt.Errorf("%w: a %q envelope where %s is expected", pytypes.ErrEnvelope, typ, strings.Join(types, " or "))
}

// unmarshalTime reads a datetime (or date) envelope, or a string in ISO
// 8601 or RFC 3339 form, into a time.Time.
func unmarshalTime(dec *jsontext.Decoder, t *time.Time) error {
	text, _, err := readEnvelopeText(dec, "datetime", "date")
	if err != nil {
		return err
	}
	p, err := pytypes.ParseISOTime(text)
	if err != nil {
		return err
	}
	*t = p
	return nil
}

func unmarshalDecimal(dec *jsontext.Decoder, d *pytypes.Decimal) error {
	if dec.PeekKind() == '0' {
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		*d = pytypes.Decimal(raw)
		return nil
	}
	text, _, err := readEnvelopeText(dec, "decimal")
	if err != nil {
		return err
	}
	v, err := pytypes.ParseDecimal(text)
	if err == nil {
		*d = v
	}
	return err
}

func unmarshalDate(dec *jsontext.Decoder, d *pytypes.Date) error {
	text, _, err := readEnvelopeText(dec, "date", "datetime")
	if err != nil {
		return err
	}
	v, err := pytypes.ParseDate(text)
	if err == nil {
		*d = v
	}
	return err
}

func unmarshalTimeOfDay(dec *jsontext.Decoder, t *pytypes.TimeOfDay) error {
	text, _, err := readEnvelopeText(dec, "time")
	if err != nil {
		return err
	}
	v, err := pytypes.ParseTimeOfDay(text)
	if err == nil {
		*t = v
	}
	return err
}

// unmarshalUUID reads a uuid envelope or a UUID string.
func unmarshalUUID(dec *jsontext.Decoder, u *pytypes.UUID) error {
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		v, err := pytypes.ParseUUID(tok.String())
		if err == nil {
			*u = v
		}
		return err
	case '{':
		v, err := decodeObject(dec)
		if err != nil {
			return err
		}
		x, ok := v.(pytypes.UUID)
		if !ok {
			return fmt.Errorf("cannot decode %s into a UUID", describe(v))
		}
		*u = x
		return nil
	}
	return json.SkipFunc
}

// unmarshalBytes reads a bytes or base64 envelope into a []byte; a base64
// string and null decode as encoding/json decodes them.
func unmarshalBytes(dec *jsontext.Decoder, b *[]byte) error {
	if dec.PeekKind() != '{' {
		return json.SkipFunc
	}
	v, err := decodeObject(dec)
	if err != nil {
		return err
	}
	x, ok := v.([]byte)
	if !ok {
		return fmt.Errorf("cannot decode %s into a []byte", describe(v))
	}
	*b = x
	return nil
}

// decodeObject reads an object and converts it if it is an envelope.
func decodeObject(dec *jsontext.Decoder) (any, error) {
	m := make(map[string]any)
	if err := json.UnmarshalDecode(dec, &m); err != nil {
		return nil, err
	}
	x, isEnvelope, err := pytypes.FromEnvelope(m)
	if err != nil || isEnvelope {
		return x, err
	}
	return m, nil
}

// describe names what decodeObject returned, for error messages.
func describe(v any) string {
	if _, ok := v.(map[string]any); ok {
		return "an object"
	}
	return fmt.Sprintf("a %T envelope", v)
}

// protoToGeneric turns a proto message into the maps, slices, strings,
// numbers and booleans of the dict the json serializer writes (see
// marshalProtoDict), for serializers that have no proto mapping of their
// own (msgpack, yaml). Integers become int64 (uint64 above MaxInt64) and
// floats float64, so that Python reads ints and floats.
func protoToGeneric(m proto.Message) (any, error) {
	data, err := marshalProtoDict(m)
	if err != nil {
		return nil, err
	}
	var v any
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if err := json.UnmarshalDecode(dec, &v, json.WithUnmarshalers(json.UnmarshalFromFunc(
		func(dec *jsontext.Decoder, v *any) error {
			if dec.PeekKind() != '0' {
				return json.SkipFunc
			}
			raw, err := dec.ReadValue()
			if err != nil {
				return err
			}
			if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
				*v = n
			} else if u, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
				*v = u
			} else {
				*v, _ = strconv.ParseFloat(string(raw), 64)
			}
			return nil
		}))); err != nil {
		return nil, err
	}
	return v, nil
}

// protoFromGeneric is protoToGeneric's inverse: it writes v as JSON and
// reads that with protojson.
func protoFromGeneric(v any, m proto.Message) error {
	data, err := json.Marshal(v, jsonv1.DefaultOptionsV1())
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}
