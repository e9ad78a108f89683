// Package pytypes holds Go types for the Python values that Kombu's
// serializers carry and Go has no type for: Date (datetime.date), TimeOfDay
// (datetime.time), Decimal (decimal.Decimal) and UUID (uuid.UUID), and
// naive datetimes (Naive). A time.Time is a Python datetime and a []byte
// is Python bytes.
//
// Each type writes itself as Kombu writes the Python value and reads what
// Kombu writes, so that a Go struct of these fields and a Python dict hold
// the same data:
//
//   - JSON: Kombu's {"__type__": ..., "__value__": ...} envelopes (see
//     FromEnvelope), through MarshalJSON and UnmarshalJSON, which work with
//     any JSON package; struct fields also read the plain strings Kombu 5.2
//     and earlier wrote.
//   - msgpack: a str of the ISO 8601 or decimal text, written by
//     MarshalMsgpack, whose signature holds only standard types
//     (github.com/vmihailenco/msgpack honours it), and read by UnmarshalText;
//     Python's msgpack has no date, decimal or UUID type, so Python reads a
//     str.
//   - YAML, map keys and other text formats: MarshalText and UnmarshalText.
//
// The kombu-go json, msgpack and yaml serializers (package
// github.com/kombu-go/kombu/runtime/codec) decode Kombu's envelopes into
// these types. The package imports only the standard library and
// runtime/transport/virtual, whose one Python time formatter it uses.
package pytypes

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// ErrInvalid marks a value Python could not hold (a 30th of February, a
// year 10000 datetime, an hour of 25) or text that does not parse as the
// type it is read into.
var ErrInvalid = errors.New("pytypes: invalid value")

func invalidDate(d Date) error {
	return fmt.Errorf("%w: date %04d-%02d-%02d is not a valid Python date", ErrInvalid, d.Year, int(d.Month), d.Day)
}

func invalidTimeOfDay(t TimeOfDay) error {
	return fmt.Errorf("%w: %+v is not a valid time of day", ErrInvalid, t)
}

func invalidDecimal(s string) error {
	return fmt.Errorf("%w: %q is not a decimal number", ErrInvalid, s)
}

// naive is the location of a time.Time decoded from a naive Python datetime
// (one without a UTC offset). It is created once and never changed.
var naive = time.FixedZone("naive", 0)

// Naive returns t's wall clock as a naive time: one that AppendISOTime
// (and so kombu-go's json serializer) writes without a UTC offset, so that
// Python reads it as a naive datetime. A naive datetime that came from
// Python parses (ParseISOTime) to a naive time, and goes back unchanged.
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

// MarshalText writes "YYYY-MM-DD" (for YAML and map keys).
func (d Date) MarshalText() ([]byte, error) {
	if !d.valid() {
		return nil, invalidDate(d)
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

// MarshalText writes the ISO 8601 time.
func (t TimeOfDay) MarshalText() ([]byte, error) {
	if !t.valid() {
		return nil, invalidTimeOfDay(t)
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
		return "", invalidDecimal(s)
	}
	return Decimal(s), nil
}

// String returns the decimal's text.
func (d Decimal) String() string { return string(d) }

// MarshalText writes the decimal's text.
func (d Decimal) MarshalText() ([]byte, error) {
	if !validDecimal(string(d)) {
		return nil, invalidDecimal(string(d))
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
		return u, fmt.Errorf("%w: %q is not a UUID", ErrInvalid, s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("%w: %q is not a UUID", ErrInvalid, s)
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

// MarshalText writes the canonical form.
func (u UUID) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText reads any form ParseUUID accepts.
func (u *UUID) UnmarshalText(b []byte) error { return parseInto(u, string(b), ParseUUID) }

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

// AppendISOTime appends t as Python's datetime.isoformat writes it, the
// text of Kombu's datetime envelope:
// "2024-03-01T10:00:00", then ".ffffff" when the microseconds are not zero,
// then the UTC offset ("+00:00", "-05:30") unless t is naive. Nanoseconds
// below the microsecond are dropped, as Python cannot hold them.
//
// The formatting is virtual.AppendISOTime's, the one Python time formatter
// kombu-go has, which Kombu's envelopes on every virtual transport use too.
func AppendISOTime(b []byte, t time.Time) ([]byte, error) {
	off := virtual.OffsetISO
	if IsNaive(t) {
		off = virtual.OffsetNone
	}
	out, err := virtual.AppendISOTime(b, t, off)
	if err != nil {
		return nil, fmt.Errorf("%w: time %v is outside Python's datetime range (years 1 to 9999)", ErrInvalid, t)
	}
	return out, nil
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
		p.err = fmt.Errorf("%w: cannot parse %q as an ISO 8601 time: %s", ErrInvalid, p.s, why)
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

// parseInto stores parse(s) in dst, or leaves dst as it is on error.
func parseInto[T any](dst *T, s string, parse func(string) (T, error)) error {
	v, err := parse(s)
	if err == nil {
		*dst = v
	}
	return err
}
