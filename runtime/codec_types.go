package kombu

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Go types for the values Kombu's JSON serializer wraps in
// {"__type__": T, "__value__": V} envelopes (Kombu 5.3 and later). Decoding
// into any (or a map[string]any, or a []any) turns each envelope into:
//
//	"datetime"         time.Time (a naive Python datetime: see Naive)
//	"date"             Date
//	"time"             TimeOfDay
//	"decimal"          Decimal
//	"uuid"             UUID
//	"bytes", "base64"  []byte
//
// and encoding writes those Go types back as the same envelopes, exactly as
// Kombu writes them, so that Python gets datetime, date, time, Decimal, UUID
// and bytes back. Struct fields of these types (and of time.Time and
// []byte) decode from the envelopes too, and also from the plain strings
// Kombu 5.2 and earlier wrote for datetimes, dates, times, decimals and
// UUIDs.

// naive is the location of a time.Time decoded from a naive Python datetime
// (one without a UTC offset). It is created once and never changed.
var naive = time.FixedZone("naive", 0)

// Naive returns t's wall clock as a naive time: one that the json
// serializer writes without a UTC offset, so that Python reads it as a
// naive datetime. A naive datetime that came from Python decodes to a naive
// time, and goes back unchanged.
func Naive(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), naive)
}

// IsNaive reports whether t is naive (see Naive).
func IsNaive(t time.Time) bool { return t.Location() == naive }

// Date is a calendar date without a time or a time zone, as Python's
// datetime.date. Its zero value encodes as JSON null.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// DateOf returns the date of t in t's location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

// String returns the date as Python's date.isoformat does: "2024-03-01".
func (d Date) String() string { return string(d.appendISO(nil)) }

func (d Date) appendISO(b []byte) []byte {
	b = appendInt(b, d.Year, 4)
	b = append(b, '-')
	b = appendInt(b, int(d.Month), 2)
	b = append(b, '-')
	return appendInt(b, d.Day, 2)
}

// valid reports whether d is a date Python can represent.
func (d Date) valid() bool {
	if d.Year < 1 || d.Year > 9999 || d.Month < 1 || d.Month > 12 || d.Day < 1 {
		return false
	}
	return d.Day <= daysIn(d.Month, d.Year)
}

// ParseDate parses "YYYY-MM-DD", or the date of an ISO 8601 date and time
// ("2024-03-01T10:00:00"), as Kombu's decoder does.
func ParseDate(s string) (Date, error) {
	if len(s) == 10 {
		d, err := parseISODate(s)
		if err != nil {
			return Date{}, err
		}
		return d, nil
	}
	t, err := ParseISOTime(s)
	if err != nil {
		return Date{}, err
	}
	return DateOf(t), nil
}

// MarshalJSON writes Kombu's date envelope, or null for the zero Date.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	if !d.valid() {
		return nil, fmt.Errorf("kombu: date %v is not a valid Python date", d)
	}
	b := append([]byte(nil), `{"__type__":"date","__value__":"`...)
	b = d.appendISO(b)
	return append(b, `"}`...), nil
}

// UnmarshalJSON reads Kombu's date envelope or a "YYYY-MM-DD" string.
func (d *Date) UnmarshalJSON(data []byte) error {
	return unmarshalEnvelope(data, d, "Date", ParseDate, func(v any) (Date, bool) {
		t, ok := v.(time.Time) // a datetime envelope: its date
		return DateOf(t), ok
	})
}

// MarshalText writes "YYYY-MM-DD" (for YAML, msgpack and map keys).
func (d Date) MarshalText() ([]byte, error) {
	if !d.valid() {
		return nil, fmt.Errorf("kombu: date %v is not a valid Python date", d)
	}
	return d.appendISO(nil), nil
}

// UnmarshalText reads "YYYY-MM-DD".
func (d *Date) UnmarshalText(b []byte) error { return parseInto(d, string(b), ParseDate) }

// TimeOfDay is a time of day, as Python's datetime.time: naive unless
// HasOffset says it carries a UTC offset.
type TimeOfDay struct {
	Hour, Minute, Second int
	Nanosecond           int // Python keeps microseconds: the rest is dropped when encoding
	Offset               int // seconds east of UTC, when HasOffset
	HasOffset            bool
}

// TimeOfDayOf returns the time of day of t; an aware t gives an aware
// TimeOfDay.
func TimeOfDayOf(t time.Time) TimeOfDay {
	h, m, s := t.Clock()
	tod := TimeOfDay{Hour: h, Minute: m, Second: s, Nanosecond: t.Nanosecond()}
	if !IsNaive(t) {
		_, tod.Offset = t.Zone()
		tod.HasOffset = true
	}
	return tod
}

// String returns the time as Python's time.isoformat does: "10:30:00",
// "10:30:00.250000", "10:30:00+02:00".
func (t TimeOfDay) String() string { return string(t.appendISO(nil)) }

func (t TimeOfDay) appendISO(b []byte) []byte {
	b = appendClock(b, t.Hour, t.Minute, t.Second, t.Nanosecond)
	if t.HasOffset {
		b = appendOffset(b, t.Offset)
	}
	return b
}

func (t TimeOfDay) valid() bool {
	return t.Hour >= 0 && t.Hour < 24 && t.Minute >= 0 && t.Minute < 60 && t.Second >= 0 && t.Second < 60 &&
		t.Nanosecond >= 0 && t.Nanosecond < 1e9 && t.Offset > -86400 && t.Offset < 86400
}

// ParseTimeOfDay parses a time as Python's time.fromisoformat does:
// "HH[:MM[:SS[.ffffff]]]", optionally followed by "Z" or "+HH:MM".
func ParseTimeOfDay(s string) (TimeOfDay, error) {
	p := isoParser{s: s}
	t := p.clock()
	if p.err == nil && p.i < len(p.s) {
		t.Offset = p.offset()
		t.HasOffset = true
	}
	if p.err == nil && p.i != len(p.s) {
		p.fail("trailing characters")
	}
	if p.err != nil {
		return TimeOfDay{}, p.err
	}
	return t, nil
}

// MarshalJSON writes Kombu's time envelope.
func (t TimeOfDay) MarshalJSON() ([]byte, error) {
	if !t.valid() {
		return nil, fmt.Errorf("kombu: %+v is not a valid time of day", t)
	}
	b := append([]byte(nil), `{"__type__":"time","__value__":"`...)
	b = t.appendISO(b)
	return append(b, `"}`...), nil
}

// UnmarshalJSON reads Kombu's time envelope or an ISO 8601 time string.
func (t *TimeOfDay) UnmarshalJSON(data []byte) error {
	return unmarshalEnvelope(data, t, "TimeOfDay", ParseTimeOfDay, nil)
}

// MarshalText writes the ISO 8601 time.
func (t TimeOfDay) MarshalText() ([]byte, error) {
	if !t.valid() {
		return nil, fmt.Errorf("kombu: %+v is not a valid time of day", t)
	}
	return t.appendISO(nil), nil
}

// UnmarshalText reads an ISO 8601 time.
func (t *TimeOfDay) UnmarshalText(b []byte) error { return parseInto(t, string(b), ParseTimeOfDay) }

// Decimal is a decimal number kept as its exact text, as Python's
// decimal.Decimal writes it with str(): "12.50", "1E+3", "-0", "NaN",
// "Infinity". Converting it to a float would lose what Decimal is for, so
// kombu-go leaves arithmetic to the caller (math/big, or a decimal
// library). The empty Decimal encodes as JSON null.
type Decimal string

// ParseDecimal checks s against the syntax Python's Decimal accepts
// (without surrounding spaces or underscores) and returns it.
func ParseDecimal(s string) (Decimal, error) {
	if !validDecimal(s) {
		return "", fmt.Errorf("kombu: %q is not a decimal number", s)
	}
	return Decimal(s), nil
}

// String returns the decimal's text.
func (d Decimal) String() string { return string(d) }

// MarshalJSON writes Kombu's decimal envelope.
func (d Decimal) MarshalJSON() ([]byte, error) {
	if d == "" {
		return []byte("null"), nil
	}
	if !validDecimal(string(d)) {
		return nil, fmt.Errorf("kombu: %q is not a decimal number", string(d))
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

// MarshalText writes the decimal's text.
func (d Decimal) MarshalText() ([]byte, error) {
	if !validDecimal(string(d)) {
		return nil, fmt.Errorf("kombu: %q is not a decimal number", string(d))
	}
	return []byte(d), nil
}

// UnmarshalText reads a decimal's text.
func (d *Decimal) UnmarshalText(b []byte) error { return parseInto(d, string(b), ParseDecimal) }

// validDecimal follows Python's decimal grammar: sign? (digits ("."
// digits?)? | "." digits) (("e"|"E") sign? digits)? | sign? ("Inf" |
// "Infinity" | "NaN" digits? | "sNaN" digits?), case-insensitive names.
func validDecimal(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	lower := strings.ToLower(s)
	switch {
	case lower == "inf" || lower == "infinity":
		return true
	case strings.HasPrefix(lower, "nan"):
		return allDigits(lower[3:], true)
	case strings.HasPrefix(lower, "snan"):
		return allDigits(lower[4:], true)
	}
	mant, exp, hasExp := strings.Cut(lower, "e")
	intPart, frac, hasDot := strings.Cut(mant, ".")
	if intPart == "" && frac == "" || !allDigits(intPart, true) || !allDigits(frac, true) {
		return false
	}
	_ = hasDot
	if hasExp {
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			exp = exp[1:]
		}
		return allDigits(exp, false)
	}
	return true
}

func allDigits(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// UUID is a universally unique identifier, as Python's uuid.UUID. Kombu
// writes it as {"__type__": "uuid", "__value__": {"hex": "<32 hex digits>"}}.
type UUID [16]byte

// ParseUUID parses a UUID as Python's UUID(hex=...) does: 32 hex digits,
// with or without hyphens, braces or a "urn:uuid:" prefix.
func ParseUUID(s string) (UUID, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "urn:"), "uuid:")
	h = strings.Trim(h, "{}")
	h = strings.ReplaceAll(h, "-", "")
	var u UUID
	if len(h) != 32 {
		return u, fmt.Errorf("kombu: %q is not a UUID", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("kombu: %q is not a UUID", s)
	}
	return u, nil
}

// String returns the UUID in its canonical form,
// "12345678-1234-5678-1234-567812345678".
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// Version returns the UUID's version number (4 for a random UUID).
func (u UUID) Version() int { return int(u[6] >> 4) }

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

// MarshalText writes the canonical form.
func (u UUID) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText reads any form ParseUUID accepts.
func (u *UUID) UnmarshalText(b []byte) error { return parseInto(u, string(b), ParseUUID) }

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

// ParseISOTime parses an ISO 8601 date and time the way Python's
// datetime.fromisoformat does, and RFC 3339 too: "2024-03-01",
// "2024-03-01T10:00:00", "2024-03-01 10:00:00.123456+02:00",
// "2024-03-01T10:00:00Z". A time without a UTC offset is naive (see Naive);
// "+00:00" and "Z" give a time in time.UTC.
func ParseISOTime(s string) (time.Time, error) {
	p := isoParser{s: s}
	d := p.date()
	var c TimeOfDay
	if p.err == nil && p.i < len(p.s) {
		switch p.s[p.i] {
		case 'T', 't', ' ':
			p.i++
		default:
			p.fail("want T or a space between date and time")
		}
		c = p.clock()
		if p.err == nil && p.i < len(p.s) {
			c.Offset = p.offset()
			c.HasOffset = true
		}
	}
	if p.err == nil && p.i != len(p.s) {
		p.fail("trailing characters")
	}
	if p.err != nil {
		return time.Time{}, p.err
	}
	loc := naive
	if c.HasOffset {
		loc = time.UTC
		if c.Offset != 0 {
			loc = time.FixedZone("", c.Offset)
		}
	}
	return time.Date(d.Year, d.Month, d.Day, c.Hour, c.Minute, c.Second, c.Nanosecond, loc), nil
}

// appendISOTime writes t as Python's datetime.isoformat does:
// "2024-03-01T10:00:00", then ".ffffff" when the microseconds are not zero,
// then the UTC offset ("+00:00", "-05:30") unless t is naive. Nanoseconds
// below the microsecond are dropped, as Python cannot hold them.
func appendISOTime(b []byte, t time.Time) ([]byte, error) {
	y, mo, d := t.Date()
	if y < 1 || y > 9999 {
		return nil, fmt.Errorf("kombu: time %v is outside Python's datetime range (years 1 to 9999)", t)
	}
	b = Date{y, mo, d}.appendISO(b)
	b = append(b, 'T')
	h, mi, s := t.Clock()
	b = appendClock(b, h, mi, s, t.Nanosecond())
	if !IsNaive(t) {
		_, off := t.Zone()
		b = appendOffset(b, off)
	}
	return b, nil
}

func appendClock(b []byte, h, m, s, ns int) []byte {
	b = appendInt(b, h, 2)
	b = append(b, ':')
	b = appendInt(b, m, 2)
	b = append(b, ':')
	b = appendInt(b, s, 2)
	if us := ns / 1000; us != 0 {
		b = append(b, '.')
		b = appendInt(b, us, 6)
	}
	return b
}

// appendOffset writes a UTC offset as Python does: "+HH:MM", with ":SS"
// when the offset has seconds.
func appendOffset(b []byte, off int) []byte {
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	b = append(b, sign)
	b = appendInt(b, off/3600, 2)
	b = append(b, ':')
	b = appendInt(b, off/60%60, 2)
	if off%60 != 0 {
		b = append(b, ':')
		b = appendInt(b, off%60, 2)
	}
	return b
}

func appendInt(b []byte, n, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(n), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// isoParser reads the parts of ISO 8601 strings; the first error sticks.
type isoParser struct {
	s   string
	i   int
	err error
}

func (p *isoParser) fail(why string) {
	if p.err == nil {
		p.err = fmt.Errorf("kombu: cannot parse %q as an ISO 8601 time: %s", p.s, why)
	}
}

// digits reads exactly n digits.
func (p *isoParser) digits(n int) int {
	if p.err != nil {
		return 0
	}
	if p.i+n > len(p.s) {
		p.fail("too short")
		return 0
	}
	v := 0
	for _, c := range []byte(p.s[p.i : p.i+n]) {
		if c < '0' || c > '9' {
			p.fail("want a digit")
			return 0
		}
		v = v*10 + int(c-'0')
	}
	p.i += n
	return v
}

func (p *isoParser) char(c byte) bool {
	if p.err == nil && p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *isoParser) expect(c byte) {
	if !p.char(c) {
		p.fail(fmt.Sprintf("want %q", c))
	}
}

func parseISODate(s string) (Date, error) {
	p := isoParser{s: s}
	d := p.date()
	if p.err == nil && p.i != len(s) {
		p.fail("trailing characters")
	}
	return d, p.err
}

func (p *isoParser) date() Date {
	y := p.digits(4)
	p.expect('-')
	m := p.digits(2)
	p.expect('-')
	d := Date{y, time.Month(m), p.digits(2)}
	if p.err == nil && !d.valid() {
		p.fail("no such date")
	}
	return d
}

// clock reads HH[:MM[:SS[.fraction]]].
func (p *isoParser) clock() TimeOfDay {
	var t TimeOfDay
	t.Hour = p.digits(2)
	if p.char(':') {
		t.Minute = p.digits(2)
		if p.char(':') {
			t.Second = p.digits(2)
			if p.char('.') || p.char(',') {
				start := p.i
				for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
					p.i++
				}
				n := p.i - start
				if n == 0 || n > 9 {
					p.fail("want 1 to 9 fractional digits")
					return t
				}
				frac, _ := strconv.Atoi(p.s[start:p.i])
				for ; n < 9; n++ {
					frac *= 10
				}
				t.Nanosecond = frac
			}
		}
	}
	if p.err == nil && (t.Hour > 23 || t.Minute > 59 || t.Second > 59) {
		p.fail("hour, minute or second out of range")
	}
	return t
}

// offset reads "Z" or ±HH:MM[:SS[.ffffff]] and returns seconds east of UTC.
func (p *isoParser) offset() int {
	if p.char('Z') || p.char('z') {
		return 0
	}
	sign := 1
	switch {
	case p.char('+'):
	case p.char('-'):
		sign = -1
	default:
		p.fail("want Z, + or - before the UTC offset")
		return 0
	}
	h := p.digits(2)
	p.expect(':')
	m := p.digits(2)
	s := 0
	if p.char(':') {
		s = p.digits(2)
		if p.char('.') {
			// Python allows microseconds in an offset; Go zones have whole seconds.
			for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
				p.i++
			}
		}
	}
	if p.err == nil && (h > 23 || m > 59 || s > 59) {
		p.fail("UTC offset out of range")
	}
	return sign * (h*3600 + m*60 + s)
}

// unmarshalEnvelope stores in dst what the JSON in data holds: Kombu's
// envelope of a T, or a string parse accepts (JSON null leaves dst as it
// is). other, if set, converts what another envelope decodes to.
func unmarshalEnvelope[T any](data []byte, dst *T, name string, parse func(string) (T, error), other func(any) (T, bool)) error {
	v, err := decodeEnvelope(data)
	if err != nil {
		return err
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
	return fmt.Errorf("kombu: cannot decode %s into a %s", jsonKind(v), name)
}

// parseInto stores parse(s) in dst, or leaves dst as it is on error.
func parseInto[T any](dst *T, s string, parse func(string) (T, error)) error {
	v, err := parse(s)
	if err == nil {
		*dst = v
	}
	return err
}
