package pytypes

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrEnvelope marks an object that looks like one of Kombu's envelopes
// (exactly the keys "__type__" and "__value__") but is not one Kombu writes:
// an unknown type, or a value that does not parse. Kombu's decoder raises on
// it too.
var ErrEnvelope = errors.New("pytypes: bad __type__ envelope")

// FromEnvelope converts m, a JSON object as a decoder produces it (numbers
// as float64), to the Go value it stands for when it is one of Kombu's
// envelopes: the object's keys are exactly "__type__" and "__value__", as
// Kombu's object hook requires. ok reports whether m is an envelope; an
// envelope FromEnvelope cannot convert is an error wrapping ErrEnvelope.
//
// Kombu 5.3 and later (kombu/utils/json.py) write these envelopes, which
// FromEnvelope turns into these Go values:
//
//	"datetime"         time.Time   datetime.isoformat(): "2024-03-01T10:00:00.250000+00:00"
//	"date"             Date        date.isoformat()
//	"time"             TimeOfDay   time.isoformat()
//	"decimal"          Decimal     str(Decimal)
//	"uuid"             UUID        {"hex": "<32 hex digits>"}
//	"bytes", "base64"  []byte      the text when it is UTF-8, base64 otherwise
//
// The types' MarshalJSON methods write them byte for byte as Kombu does
// (without Python's spaces).
func FromEnvelope(m map[string]any) (v any, ok bool, err error) {
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
		return nil, true, fmt.Errorf("%w: __type__ is %s, want a string", ErrEnvelope, jsonKind(rawType))
	}
	if typ == "uuid" {
		u, err := uuidFromKombu(value)
		if err != nil {
			return nil, true, fmt.Errorf("%w: %w", ErrEnvelope, err)
		}
		return u, true, nil
	}
	switch typ {
	case "datetime", "date", "time", "decimal", "bytes", "base64":
	default:
		return nil, true, fmt.Errorf("%w: unsupported __type__ %q", ErrEnvelope, typ)
	}
	s, ok := value.(string)
	if !ok {
		return nil, true, fmt.Errorf("%w: %s value is %s, want a string", ErrEnvelope, typ, jsonKind(value))
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
		return nil, true, fmt.Errorf("%w: %s: %w", ErrEnvelope, typ, err)
	}
	return v, true, nil
}

// MarshalJSON writes Kombu's date envelope, or null for the zero Date.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	if !d.valid() {
		return nil, invalidDate(d)
	}
	b := append([]byte(nil), `{"__type__":"date","__value__":"`...)
	b = d.appendISO(b)
	return append(b, `"}`...), nil
}

// UnmarshalJSON reads Kombu's date envelope, the date of a datetime
// envelope, or a "YYYY-MM-DD" string.
func (d *Date) UnmarshalJSON(data []byte) error {
	return unmarshalEnvelope(data, d, "Date", ParseDate, func(v any) (Date, bool) {
		t, ok := v.(time.Time) // a datetime envelope: its date
		return DateOf(t), ok
	})
}

// MarshalJSON writes Kombu's time envelope.
func (t TimeOfDay) MarshalJSON() ([]byte, error) {
	if !t.valid() {
		return nil, invalidTimeOfDay(t)
	}
	b := append([]byte(nil), `{"__type__":"time","__value__":"`...)
	b = t.appendISO(b)
	return append(b, `"}`...), nil
}

// UnmarshalJSON reads Kombu's time envelope or an ISO 8601 time string.
func (t *TimeOfDay) UnmarshalJSON(data []byte) error {
	return unmarshalEnvelope(data, t, "TimeOfDay", ParseTimeOfDay, nil)
}

// MarshalJSON writes Kombu's decimal envelope, or null for the empty
// Decimal.
func (d Decimal) MarshalJSON() ([]byte, error) {
	if d == "" {
		return []byte("null"), nil
	}
	if !validDecimal(string(d)) {
		return nil, invalidDecimal(string(d))
	}
	b := append([]byte(nil), `{"__type__":"decimal","__value__":"`...)
	b = append(b, d...)
	return append(b, `"}`...), nil
}

// UnmarshalJSON reads Kombu's decimal envelope, a string or a JSON number.
func (d *Decimal) UnmarshalJSON(data []byte) error {
	if n := strings.TrimSpace(string(data)); n != "" && (n[0] == '-' || n[0] >= '0' && n[0] <= '9') {
		return parseInto(d, n, ParseDecimal)
	}
	return unmarshalEnvelope(data, d, "Decimal", ParseDecimal, nil)
}

// MarshalJSON writes Kombu's uuid envelope.
func (u UUID) MarshalJSON() ([]byte, error) {
	b := append([]byte(nil), `{"__type__":"uuid","__value__":{"hex":"`...)
	b = hex.AppendEncode(b, u[:])
	return append(b, `"}}`...), nil
}

// UnmarshalJSON reads Kombu's uuid envelope or a UUID string.
func (u *UUID) UnmarshalJSON(data []byte) error {
	return unmarshalEnvelope(data, u, "UUID", ParseUUID, nil)
}

// uuidFromKombu turns the value of Kombu's uuid envelope, the keyword
// arguments of Python's UUID(**value), into a UUID. Kombu 5.3.0 to 5.3.x
// also sent "version", which UUID() stamps into the value.
func uuidFromKombu(v any) (UUID, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return UUID{}, fmt.Errorf("uuid envelope value is %s, want an object with hex", jsonKind(v))
	}
	h, ok := m["hex"].(string)
	if !ok {
		return UUID{}, errors.New(`uuid envelope lacks a "hex" string`)
	}
	for k := range m {
		if k != "hex" && k != "version" {
			return UUID{}, fmt.Errorf("uuid envelope has an unsupported key %q", k)
		}
	}
	u, err := ParseUUID(h)
	if err != nil {
		return UUID{}, err
	}
	if ver, ok := m["version"]; ok && ver != nil {
		f, ok := ver.(float64)
		if !ok || f != float64(int(f)) || f < 1 || f > 8 {
			return UUID{}, fmt.Errorf("uuid envelope has an illegal version %v", ver)
		}
		u[8] = u[8]&0x3f | 0x80       // RFC 4122 variant
		u[6] = u[6]&0x0f | byte(f)<<4 // version
	}
	return u, nil
}

// jsonKind names the JSON kind of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// unmarshalEnvelope stores in dst what the JSON in data holds: Kombu's
// envelope of a T, or a string parse accepts (JSON null leaves dst as it
// is). other, if set, converts what another envelope decodes to.
func unmarshalEnvelope[T any](data []byte, dst *T, name string, parse func(string) (T, error), other func(any) (T, bool)) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if m, ok := v.(map[string]any); ok {
		x, isEnvelope, err := FromEnvelope(m)
		if err != nil {
			return err
		}
		if isEnvelope {
			v = x
		}
	}
	switch x := v.(type) {
	case nil:
		return nil
	case T:
		*dst = x
		return nil
	case string:
		return parseInto(dst, x, parse)
	}
	if other != nil {
		if x, ok := other(v); ok {
			*dst = x
			return nil
		}
	}
	return fmt.Errorf("%w: cannot decode %s into a %s", ErrInvalid, jsonKind(v), name)
}
