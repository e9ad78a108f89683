package kombu

import (
	"bytes"
	"encoding/base64"
	"errors"
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
)

// jsonSerializer is Kombu's default serializer, with Kombu's
// {"__type__": ..., "__value__": ...} envelopes (see the types in
// codec_types.go).
//
// Everything else follows encoding/json: struct tags, field matching,
// numbers into any as float64, nil slices as null. Two differences: "<",
// ">" and "&" are not escaped (Python does not escape them either), and a
// body that is not valid UTF-8 does not decode (Kombu refuses it too).
// time.Time and []byte values, which encoding/json writes as RFC 3339 and
// base64 strings, are written as Kombu's datetime and bytes envelopes
// instead; when decoding, they accept the envelopes and the plain strings.
//
// Proto messages are written as the dict Python Kombu consumers expect
// (see marshalProtoDict): protojson's form with the proto field names
// ("order_id", not "orderId"), 64-bit integers as numbers and floats with a
// decimal point. Reading accepts that and protojson's own form and ignores
// unknown fields, so a newer producer does not break an older consumer.
type jsonSerializer struct{}

func (jsonSerializer) Name() string            { return "json" }
func (jsonSerializer) ContentType() string     { return ContentTypeJSON }
func (jsonSerializer) ContentEncoding() string { return "utf-8" }

func (jsonSerializer) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return marshalProtoDict(m)
	}
	return json.Marshal(v, kombuJSONEncode)
}

func (jsonSerializer) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
	}
	return json.Unmarshal(data, v, kombuJSONDecode)
}

// protojsonSerializer writes proto messages in the canonical proto3 JSON
// mapping (lowerCamelCase names, as protojson does by default) for
// consumers that expect that rather than Kombu's dicts. It sends
// application/json, so any JSON consumer reads it; on the receiving side
// the json serializer decodes it (it accepts both name styles).
type protojsonSerializer struct{}

func (protojsonSerializer) Name() string            { return "protojson" }
func (protojsonSerializer) ContentType() string     { return ContentTypeJSON }
func (protojsonSerializer) ContentEncoding() string { return "utf-8" }

func (protojsonSerializer) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("the protojson serializer needs a proto.Message, got %T", v)
	}
	return protojson.Marshal(m)
}

func (protojsonSerializer) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("the protojson serializer decodes into a proto.Message, got %T", v)
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
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
			// The Kombu types' UnmarshalJSON methods work with any JSON
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
	iso, err := appendISOTime(buf[:0], t)
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
	x, isEnvelope, err := fromEnvelope(m)
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
				return "", "", fmt.Errorf("%w: __type__ must be a string, once", errEnvelope)
			}
			tok, err := dec.ReadToken()
			if err != nil {
				return "", "", err
			}
			typ, haveType = tok.String(), true
		case "__value__":
			if dec.PeekKind() != '"' || haveValue {
				return "", "", fmt.Errorf("%w: __value__ must be a string, once", errEnvelope)
			}
			tok, err := dec.ReadToken()
			if err != nil {
				return "", "", err
			}
			text, haveValue = tok.String(), true
		default:
			return "", "", fmt.Errorf("%w: unexpected key %q", errEnvelope, name.String())
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return "", "", err
	}
	if !haveType || !haveValue {
		return "", "", fmt.Errorf("%w: want __type__ and __value__", errEnvelope)
	}
	for _, t := range types {
		if typ == t {
			return text, typ, nil
		}
	}
	return "", "", fmt.Errorf("%w: a %q envelope where %s is expected", errEnvelope, typ, strings.Join(types, " or "))
}

// unmarshalTime reads a datetime (or date) envelope, or a string in ISO
// 8601 or RFC 3339 form, into a time.Time.
func unmarshalTime(dec *jsontext.Decoder, t *time.Time) error {
	text, _, err := readEnvelopeText(dec, "datetime", "date")
	if err != nil {
		return err
	}
	p, err := ParseISOTime(text)
	if err != nil {
		return err
	}
	*t = p
	return nil
}

func unmarshalDecimal(dec *jsontext.Decoder, d *Decimal) error {
	if dec.PeekKind() == '0' {
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		*d = Decimal(raw)
		return nil
	}
	text, _, err := readEnvelopeText(dec, "decimal")
	if err != nil {
		return err
	}
	v, err := ParseDecimal(text)
	if err == nil {
		*d = v
	}
	return err
}

func unmarshalDate(dec *jsontext.Decoder, d *Date) error {
	text, _, err := readEnvelopeText(dec, "date", "datetime")
	if err != nil {
		return err
	}
	v, err := ParseDate(text)
	if err == nil {
		*d = v
	}
	return err
}

func unmarshalTimeOfDay(dec *jsontext.Decoder, t *TimeOfDay) error {
	text, _, err := readEnvelopeText(dec, "time")
	if err != nil {
		return err
	}
	v, err := ParseTimeOfDay(text)
	if err == nil {
		*t = v
	}
	return err
}

// unmarshalUUID reads a uuid envelope or a UUID string.
func unmarshalUUID(dec *jsontext.Decoder, u *UUID) error {
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		v, err := ParseUUID(tok.String())
		if err == nil {
			*u = v
		}
		return err
	case '{':
		v, err := decodeObject(dec)
		if err != nil {
			return err
		}
		x, ok := v.(UUID)
		if !ok {
			return fmt.Errorf("kombu: cannot decode %s into a UUID", jsonKind(v))
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
		return fmt.Errorf("kombu: cannot decode %s into a []byte", jsonKind(v))
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
	x, isEnvelope, err := fromEnvelope(m)
	if err != nil || isEnvelope {
		return x, err
	}
	return m, nil
}

// decodeEnvelope decodes one JSON value with Kombu's rules; the Kombu
// types' UnmarshalJSON methods use it.
func decodeEnvelope(data []byte) (any, error) {
	var v any
	if err := json.Unmarshal(data, &v, kombuJSONDecode); err != nil {
		return nil, err
	}
	return v, nil
}

// errEnvelope marks a malformed or unknown envelope.
var errEnvelope = errors.New("kombu: bad __type__ envelope")

// fromEnvelope converts m if it is an envelope: an object whose keys are
// exactly __type__ and __value__, as Kombu's object_hook requires. An
// unknown __type__ is an error, as in Kombu.
func fromEnvelope(m map[string]any) (v any, isEnvelope bool, err error) {
	if len(m) != 2 {
		return nil, false, nil
	}
	rawType, ok1 := m["__type__"]
	value, ok2 := m["__value__"]
	if !ok1 || !ok2 {
		return nil, false, nil
	}
	typ, ok := rawType.(string)
	if !ok {
		return nil, true, fmt.Errorf("%w: __type__ is %s, want a string", errEnvelope, jsonKind(rawType))
	}
	if typ == "uuid" {
		u, err := uuidFromKombu(value)
		if err != nil {
			return nil, true, fmt.Errorf("%w: %v", errEnvelope, err)
		}
		return u, true, nil
	}
	switch typ {
	case "datetime", "date", "time", "decimal", "bytes", "base64":
	default:
		return nil, true, fmt.Errorf("%w: unsupported __type__ %q", errEnvelope, typ)
	}
	s, ok := value.(string)
	if !ok {
		return nil, true, fmt.Errorf("%w: %s value is %s, want a string", errEnvelope, typ, jsonKind(value))
	}
	switch typ {
	case "datetime":
		v, err = ParseISOTime(s)
	case "date":
		v, err = ParseDate(s)
	case "time":
		v, err = ParseTimeOfDay(s)
	case "decimal":
		v, err = ParseDecimal(s)
	case "bytes":
		v = []byte(s)
	case "base64":
		v, err = base64.StdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, true, fmt.Errorf("%w: %s: %v", errEnvelope, typ, err)
	}
	return v, true, nil
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
