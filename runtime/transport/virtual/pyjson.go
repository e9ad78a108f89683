package virtual

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Kombu stores messages on its virtual transports as JSON written by Python's
// json.dumps with its defaults: ", " and ": " separators, ensure_ascii
// escaping, floats as repr() writes them. Writing the same bytes lets a
// Python reader, a person looking at the store (redis-cli, cat) and a
// byte-for-byte test see no difference between a message Go wrote and one
// Kombu wrote. This file holds that encoder, and an order-keeping parser for
// the one place Go edits a stored message: marking it redelivered before it
// goes back to its queue, as Kombu does with loads/dumps.

const hexDigits = "0123456789abcdef"

// AppendPyString appends s as a JSON string the way json.dumps writes it:
// every character outside printable ASCII (' ' to '~') as \uXXXX (a
// surrogate pair above U+FFFF), and \" \\ \b \f \n \r \t for those five.
// Bytes that are not UTF-8 are written as U+FFFD.
func AppendPyString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		if c < utf8.RuneSelf {
			b = appendPyEscape(b, rune(c))
			i++
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			b = appendPyEscape(b, r)
			i += size
		}
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendPyRunes appends a string held as code points, which may include
// lone surrogates that Python strings can carry.
func appendPyRunes(b []byte, rs []rune) []byte {
	b = append(b, '"')
	for _, r := range rs {
		if r >= ' ' && r <= '~' && r != '"' && r != '\\' {
			b = append(b, byte(r))
			continue
		}
		b = appendPyEscape(b, r)
	}
	return append(b, '"')
}

func appendPyEscape(b []byte, r rune) []byte {
	switch r {
	case '"':
		return append(b, '\\', '"')
	case '\\':
		return append(b, '\\', '\\')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	}
	if r > 0xFFFF {
		r1, r2 := utf16.EncodeRune(r)
		return appendU4(appendU4(b, r1), r2)
	}
	return appendU4(b, r)
}

func appendU4(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// appendPyFloat appends f as Python's repr(float) writes it inside JSON:
// the shortest digits that read back to f, in fixed notation with at least
// one decimal ("1.0", "0.0001") unless the exponent is below -4 or 16 and
// above ("1e-05", "1e+16"); NaN and infinities as NaN, Infinity, -Infinity.
func appendPyFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // [-]d[.ddd]e±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		b = append(b, '-')
	}
	mant, expText, _ := strings.Cut(string(e), "e")
	exp, _ := strconv.Atoi(expText)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1 // value = 0.digits × 10^decpt
	if decpt <= -4 || decpt > 16 {
		b = append(b, digits[0])
		if len(digits) > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if exp < 0 {
			b = append(b, '-')
			exp = -exp
		} else {
			b = append(b, '+')
		}
		if exp < 10 {
			b = append(b, '0')
		}
		return strconv.AppendInt(b, int64(exp), 10)
	}
	switch {
	case decpt <= 0:
		b = append(b, '0', '.')
		for range -decpt {
			b = append(b, '0')
		}
		return append(b, digits...)
	case decpt < len(digits):
		b = append(b, digits[:decpt]...)
		b = append(b, '.')
		return append(b, digits[decpt:]...)
	default:
		b = append(b, digits...)
		for range decpt - len(digits) {
			b = append(b, '0')
		}
		return append(b, '.', '0')
	}
}

// errHeaderType reports a header value JSON cannot carry: the transport
// does not support it.
var errHeaderType = fmt.Errorf("header value of a type JSON cannot carry: %w", transport.ErrNotSupported)

// AppendPyValue appends a header value as json.dumps (with Kombu's encoder)
// writes the Python value it stands for. Map keys are written in sorted
// order, since Go maps have none. A time is written as Kombu 5.2's encoder
// writes a datetime (see AppendISOTime and OffsetZ). A value JSON cannot
// carry fails with an error wrapping transport.ErrNotSupported.
func AppendPyValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return AppendPyString(b, v), nil
	case bool:
		if v {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float32:
		return appendPyFloat(b, float64(v)), nil
	case float64:
		return appendPyFloat(b, v), nil
	case time.Time:
		b = append(b, '"')
		b, err := AppendISOTime(b, v, OffsetZ)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errHeaderType, err)
		}
		return append(b, '"'), nil
	case time.Duration:
		return strconv.AppendInt(b, v.Milliseconds(), 10), nil
	case []byte:
		// Python's json cannot write bytes; Kombu's AMQP transport would
		// send them as-is. Text stays text; anything else goes as base64.
		if utf8.Valid(v) {
			return AppendPyString(b, string(v)), nil
		}
		return AppendPyString(b, base64.StdEncoding.EncodeToString(v)), nil
	case fmt.Stringer:
		return AppendPyString(b, v.String()), nil
	case map[string]any:
		return appendPyMap(b, v)
	case map[string]string:
		keys := sortedKeys(v)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			b = AppendPyString(b, k)
			b = append(b, ':', ' ')
			b = AppendPyString(b, v[k])
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			var err error
			if b, err = AppendPyValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case []string:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			b = AppendPyString(b, e)
		}
		return append(b, ']'), nil
	}
	// Other slices, arrays and maps with string keys, by reflection.
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		b = append(b, '[')
		for i := range rv.Len() {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			var err error
			if b, err = AppendPyValue(b, rv.Index(i).Interface()); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			m := make(map[string]any, rv.Len())
			for it := rv.MapRange(); it.Next(); {
				m[it.Key().String()] = it.Value().Interface()
			}
			return appendPyMap(b, m)
		}
	}
	return nil, fmt.Errorf("%w: %T", errHeaderType, v)
}

func appendPyMap(b []byte, m map[string]any) ([]byte, error) {
	// Most header maps are small: sort their keys on the stack.
	var small [8]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',', ' ')
		}
		b = AppendPyString(b, k)
		b = append(b, ':', ' ')
		var err error
		if b, err = AppendPyValue(b, m[k]); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// pyNode is a parsed JSON value that keeps what Python's json.loads keeps:
// the order of object keys and the exact code points of strings, lone
// surrogates included. Encoding it again gives what json.dumps(loads(x))
// gives.
type pyNode struct {
	kind byte     // '{' object, '[' array, '"' string, '0' number, 'l' literal
	keys [][]rune // object keys, in order
	vals []*pyNode
	str  []rune // string value
	text string // number or literal, as written
}

func (n *pyNode) get(key string) *pyNode {
	if n == nil || n.kind != '{' {
		return nil
	}
	for i, k := range n.keys {
		if string(k) == key {
			return n.vals[i]
		}
	}
	return nil
}

// set sets key to v, in place if the key exists, else at the end, as
// assigning to a Python dict does.
func (n *pyNode) set(key string, v *pyNode) { n.setRunes([]rune(key), v) }

func (n *pyNode) setRunes(key []rune, v *pyNode) {
	for i, k := range n.keys {
		if slices.Equal(k, key) {
			n.vals[i] = v
			return
		}
	}
	n.keys = append(n.keys, key)
	n.vals = append(n.vals, v)
}

var pyTrue = &pyNode{kind: 'l', text: "true"}

func (n *pyNode) appendTo(b []byte) []byte {
	switch n.kind {
	case '{':
		b = append(b, '{')
		for i, k := range n.keys {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			b = appendPyRunes(b, k)
			b = append(b, ':', ' ')
			b = n.vals[i].appendTo(b)
		}
		return append(b, '}')
	case '[':
		b = append(b, '[')
		for i, v := range n.vals {
			if i > 0 {
				b = append(b, ',', ' ')
			}
			b = v.appendTo(b)
		}
		return append(b, ']')
	case '"':
		return appendPyRunes(b, n.str)
	case '0':
		return appendPyNumber(b, n.text)
	}
	return append(b, n.text...)
}

// appendPyNumber writes a JSON number as Python writes it back after
// reading it: integers unchanged (but "-0" as 0), anything with a fraction
// or exponent as a float's repr.
func appendPyNumber(b []byte, text string) []byte {
	if !strings.ContainsAny(text, ".eE") {
		if text == "-0" {
			return append(b, '0')
		}
		return append(b, text...)
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return append(b, text...)
	}
	return appendPyFloat(b, f)
}

// parsePy parses JSON as Python's json.loads does: NaN, Infinity and
// -Infinity are accepted, a repeated key keeps its first position and last
// value.
func parsePy(s string) (*pyNode, error) {
	p := pyParser{s: s}
	p.space()
	n, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, p.errorf("extra data")
	}
	return n, nil
}

type pyParser struct {
	s string
	i int
}

func (p *pyParser) errorf(format string, args ...any) error {
	return fmt.Errorf("json at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

// next reads what follows an object's or array's element: ',' (more
// follow) or its closing byte (it ends), or fails.
func (p *pyParser) next(closing byte) (more bool, err error) {
	p.space()
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			p.i++
			return true, nil
		case closing:
			p.i++
			return false, nil
		}
	}
	return false, p.errorf("expected ',' or '%c'", closing)
}

func (p *pyParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *pyParser) value(depth int) (*pyNode, error) {
	if depth > 500 {
		return nil, p.errorf("nested too deeply")
	}
	if p.i >= len(p.s) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		n := &pyNode{kind: '{'}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return n, nil
		}
		for {
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return nil, p.errorf("expected a key")
			}
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, p.errorf("expected ':'")
			}
			p.i++
			p.space()
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.setRunes(k, v)
			if more, err := p.next('}'); !more {
				if err != nil {
					return nil, err
				}
				return n, nil
			}
		}
	case c == '[':
		p.i++
		n := &pyNode{kind: '['}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return n, nil
		}
		for {
			p.space()
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
			if more, err := p.next(']'); !more {
				if err != nil {
					return nil, err
				}
				return n, nil
			}
		}
	case c == '"':
		rs, err := p.str()
		if err != nil {
			return nil, err
		}
		return &pyNode{kind: '"', str: rs}, nil
	case c == '-' || c >= '0' && c <= '9':
		if strings.HasPrefix(p.s[p.i:], "-Infinity") {
			p.i += len("-Infinity")
			return &pyNode{kind: 'l', text: "-Infinity"}, nil
		}
		start := p.i
		p.i++
		for p.i < len(p.s) && strings.IndexByte("0123456789.eE+-", p.s[p.i]) >= 0 {
			p.i++
		}
		text := p.s[start:p.i]
		if _, err := strconv.ParseFloat(text, 64); err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, p.errorf("bad number %q", text)
		}
		return &pyNode{kind: '0', text: text}, nil
	default:
		for _, lit := range [...]string{"true", "false", "null", "NaN", "Infinity"} {
			if strings.HasPrefix(p.s[p.i:], lit) {
				p.i += len(lit)
				return &pyNode{kind: 'l', text: lit}, nil
			}
		}
		return nil, p.errorf("unexpected character %q", c)
	}
}

// str reads a JSON string into code points, keeping lone surrogates.
func (p *pyParser) str() ([]rune, error) {
	p.i++ // opening quote
	var rs []rune
	for {
		if p.i >= len(p.s) {
			return nil, p.errorf("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return rs, nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return nil, p.errorf("unterminated escape")
			}
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				rs = append(rs, rune(e))
			case 'b':
				rs = append(rs, '\b')
			case 'f':
				rs = append(rs, '\f')
			case 'n':
				rs = append(rs, '\n')
			case 'r':
				rs = append(rs, '\r')
			case 't':
				rs = append(rs, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return nil, p.errorf("bad \\u escape")
				}
				if utf16.IsSurrogate(r) && r < 0xDC00 && strings.HasPrefix(p.s[p.i:], `\u`) {
					save := p.i
					p.i += 2
					if r2, ok := p.hex4(); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
						r = utf16.DecodeRune(r, r2)
					} else {
						p.i = save
					}
				}
				rs = append(rs, r)
			default:
				return nil, p.errorf("bad escape \\%c", e)
			}
		case c < ' ':
			return nil, p.errorf("control character in string")
		case c < utf8.RuneSelf:
			rs = append(rs, rune(c))
			p.i++
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			rs = append(rs, r)
			p.i += size
		}
	}
}

func (p *pyParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}
