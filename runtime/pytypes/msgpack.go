package pytypes

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The types travel in msgpack as a str of their text form, as Python's
// msgpack has no date, time, decimal or UUID type of its own. MarshalMsgpack
// is msgpack's Marshaler (as github.com/vmihailenco/msgpack/v5 defines it),
// written against the msgpack specification rather than a library so that
// this package's API holds no type of another module: without it a msgpack
// library would write MarshalText's output as bin, which Python reads as
// bytes. Reading needs no method of its own: a msgpack library hands a str
// (or bin) to UnmarshalText, as vmihailenco/msgpack does, at no more cost
// than the text. UUID alone has UnmarshalMsgpack, to read 16 bytes of bin as
// well.

// MarshalMsgpack writes the date as a msgpack str, "YYYY-MM-DD".
func (d Date) MarshalMsgpack() ([]byte, error) { return msgpackText(d) }

// MarshalMsgpack writes the time as a msgpack str, as Python's
// time.isoformat writes it.
func (t TimeOfDay) MarshalMsgpack() ([]byte, error) { return msgpackText(t) }

// MarshalMsgpack writes the decimal's text as a msgpack str.
func (d Decimal) MarshalMsgpack() ([]byte, error) { return msgpackText(d) }

// MarshalMsgpack writes the UUID in its canonical form as a msgpack str.
func (u UUID) MarshalMsgpack() ([]byte, error) { return msgpackText(u) }

// UnmarshalMsgpack reads a UUID written as a msgpack str of any form
// ParseUUID accepts, or as 16 bytes of bin (Python's uuid.bytes).
func (u *UUID) UnmarshalMsgpack(b []byte) error {
	payload, err := msgpackStrOrBin(b)
	if err != nil {
		return err
	}
	if len(payload) == 16 {
		copy(u[:], payload)
		return nil
	}
	return u.UnmarshalText(payload)
}

// msgpackText writes v's text as a msgpack str, with the shortest header
// for its length (fixstr, str 8, str 16 or str 32), as msgpack encoders do.
func msgpackText(v interface{ MarshalText() ([]byte, error) }) ([]byte, error) {
	text, err := v.MarshalText()
	if err != nil {
		return nil, err
	}
	n := len(text)
	var b []byte
	switch {
	case n < 32:
		b = append(make([]byte, 0, 1+n), 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(make([]byte, 0, 2+n), 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(make([]byte, 0, 3+n), 0xda), uint16(n))
	case uint64(n) <= math.MaxUint32:
		b = binary.BigEndian.AppendUint32(append(make([]byte, 0, 5+n), 0xdb), uint32(n))
	default:
		return nil, fmt.Errorf("%w: %d bytes of text do not fit a msgpack str", ErrInvalid, n)
	}
	return append(b, text...), nil
}

// msgpackStrOrBin returns the bytes of the one msgpack value in b, which
// must be a str, a bin or nil (no bytes).
func msgpackStrOrBin(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty msgpack value", ErrInvalid)
	}
	c, rest := b[0], b[1:]
	var n uint64
	switch {
	case c == 0xc0: // nil: no bytes
	case c >= 0xa0 && c <= 0xbf: // fixstr
		n = uint64(c & 0x1f)
	case c == 0xd9, c == 0xc4: // str 8, bin 8
		if len(rest) < 1 {
			return nil, fmt.Errorf("%w: truncated msgpack value", ErrInvalid)
		}
		n, rest = uint64(rest[0]), rest[1:]
	case c == 0xda, c == 0xc5: // str 16, bin 16
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: truncated msgpack value", ErrInvalid)
		}
		n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
	case c == 0xdb, c == 0xc6: // str 32, bin 32
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: truncated msgpack value", ErrInvalid)
		}
		n, rest = uint64(binary.BigEndian.Uint32(rest)), rest[4:]
	default:
		return nil, fmt.Errorf("%w: msgpack type %#x where a str or bin is expected", ErrInvalid, c)
	}
	if uint64(len(rest)) != n {
		return nil, fmt.Errorf("%w: msgpack value of %d bytes declares %d", ErrInvalid, len(rest), n)
	}
	return rest, nil
}
