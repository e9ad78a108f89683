package virtual

import (
	"errors"
	"fmt"
	"time"
)

// Python times. Kombu's JSON encoder (kombu/utils/json.py) has written a
// datetime two ways:
//
//   - Kombu 5.2 and earlier (Debian bookworm's python3-kombu is 5.2.4):
//     JSONEncoder.default returns o.isoformat() as a plain string, with a
//     final "+00:00" replaced by "Z": "2024-05-06T07:08:09.123456Z".
//   - Kombu 5.3 and later: {"__type__": "datetime", "__value__":
//     o.isoformat()}, the offset as isoformat() writes it:
//     "2024-05-06T07:08:09.123456+00:00". Their loads turns that object
//     back into a datetime; 5.2 leaves it a dict.
//
// Both are isoformat() underneath, so kombu-go has one formatter,
// AppendISOTime, and says which offset form a caller wants. Envelope
// headers (x-death times, time.Time header values) are written in 5.2's
// plain form, OffsetZ, which every Kombu reads as the same string and which
// Redis has always stored; the json serializer's {"__type__": "datetime"}
// envelopes use OffsetISO, or OffsetNone for a naive time.

// Offset says how AppendISOTime writes a time's UTC offset.
type Offset uint8

const (
	// OffsetISO writes the offset as datetime.isoformat() does for an
	// aware datetime: "+00:00", "+05:30", "-03:00", with ":SS" when the
	// offset has seconds. Kombu 5.3+ writes this inside its datetime
	// envelope.
	OffsetISO Offset = iota
	// OffsetZ is OffsetISO with "Z" for a zero offset: Kombu 5.2's
	// JSONEncoder.
	OffsetZ
	// OffsetNone writes no offset: isoformat() of a naive datetime.
	OffsetNone
)

// ErrTimeRange reports a time that Python's datetime cannot hold.
var ErrTimeRange = errors.New("time outside Python's datetime range (years 1 to 9999)")

// AppendISOTime appends t, in its own location, as Python's
// datetime.isoformat() writes it: "YYYY-MM-DDTHH:MM:SS", then
// ".ffffff" only when the microseconds are not zero (nanoseconds beyond
// them are dropped, as Python has none), then the offset in the form off
// says. A year outside 1 to 9999 fails with ErrTimeRange.
func AppendISOTime(b []byte, t time.Time, off Offset) ([]byte, error) {
	y, mo, d := t.Date()
	if y < 1 || y > 9999 {
		return nil, fmt.Errorf("%w: %v", ErrTimeRange, t)
	}
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mo), 2)
	b = append(b, '-')
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	h, mi, s := t.Clock()
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	b = appendDigits(b, s, 2)
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = appendDigits(b, us, 6)
	}
	if off == OffsetNone {
		return b, nil
	}
	_, secs := t.Zone()
	if secs == 0 && off == OffsetZ {
		return append(b, 'Z'), nil
	}
	return appendUTCOffset(b, secs), nil
}

// appendUTCOffset writes an offset as Python does: "+HH:MM", with ":SS"
// when it has seconds.
func appendUTCOffset(b []byte, secs int) []byte {
	sign := byte('+')
	if secs < 0 {
		sign, secs = '-', -secs
	}
	b = append(b, sign)
	b = appendDigits(b, secs/3600, 2)
	b = append(b, ':')
	b = appendDigits(b, secs/60%60, 2)
	if secs%60 != 0 {
		b = append(b, ':')
		b = appendDigits(b, secs%60, 2)
	}
	return b
}

// appendDigits appends a non-negative n in decimal, zero-padded to width.
func appendDigits(b []byte, n, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for n >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	i--
	buf[i] = byte('0' + n)
	return append(b, buf[i:]...)
}

// parseISOTime reads a time as AppendISOTime and Python's isoformat() write
// it: with "Z", with a UTC offset, or naive, taken as UTC.
func parseISOTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}
