package virtual

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/kombu-go/kombu/runtime/transport"
)

// The fast envelope decoder. Every consumer of a virtual transport decodes
// one envelope per message, and the reflective decoder (decodeEnvelopeSlow)
// cost tens of allocations and most of a consumer's time per message. This
// one walks the bytes once, by hand, and handles the envelopes Kombu and
// this package write: one object with Kombu's keys, each once, of the
// types Kombu writes. Whatever it is not sure to read exactly as the slow
// decoder does (a duplicate key, a key differing from a known one only in
// case or delimiters as v1's case-insensitive matching would accept, an
// escaped key, a value of another type, invalid UTF-8, anything that is not
// JSON, very deep nesting) makes it give up, and DecodeEnvelope falls back
// to the slow decoder, which decides: so the two agree on every input, as
// FuzzDecodeEnvelopeFastMatchesSlow checks.

// maxFastDepth bounds the nesting the fast decoder follows (the slow one
// takes the rest).
const maxFastDepth = 64

// fastEnvelope holds what the fast decoder found, as the slow decoder's
// wireEnvelope would hold it: raw values are slices of the input, strings
// are the JSON text between the quotes.
type fastEnvelope struct {
	body, contentEncoding, contentType, bodyEncoding fastString
	headers                                          map[string]any
	headersRedelivered                               bool
	hasProperties                                    bool
	deliveryMode, priority, correlationID, replyTo   []byte
	expiration, messageID, timestamp, typ            []byte
	userID, appID, exchange, routingKey              []byte
	diRedelivered, redelivered                       []byte
}

// fastString is a JSON string or null as a *string field reads it.
type fastString struct {
	set     bool   // present and not null
	text    []byte // between the quotes
	escaped bool   // text has backslash escapes
}

func (f fastString) value() (string, bool) {
	if !f.escaped {
		return internString(f.text), true
	}
	b, err := jsontext.AppendUnquote(nil, append(append([]byte{'"'}, f.text...), '"'))
	if err != nil {
		return "", false
	}
	return string(b), true
}

// internString returns common property values without an allocation.
func internString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "utf-8":
		return "utf-8"
	case "binary":
		return "binary"
	case "application/json":
		return "application/json"
	case "application/x-protobuf":
		return "application/x-protobuf"
	case "application/data":
		return "application/data"
	case "text/plain":
		return "text/plain"
	case "base64":
		return "base64"
	}
	return string(b)
}

type fastScanner struct {
	b []byte
	i int
	// arena holds the bytes of every string and the body one delivery
	// keeps, so that a delivery costs one allocation for them, not one
	// each. It is allocated on first use with the input's length as its
	// capacity, which nothing it holds can exceed (each is a copy of a
	// distinct part of the input, or base64 decoded from one, which is
	// shorter), so it never moves: strings made over it stay valid. Its
	// bytes are never written again once a string covers them.
	arena []byte
}

// grow returns n bytes of the arena for the caller to fill, or nil where
// the arena has no room (then the caller allocates on its own).
func (s *fastScanner) grow(n int) []byte {
	if s.arena == nil {
		s.arena = make([]byte, 0, len(s.b))
	}
	at := len(s.arena)
	if n > cap(s.arena)-at {
		return nil
	}
	s.arena = s.arena[:at+n]
	return s.arena[at : at+n : at+n]
}

// keep returns b as a string over the arena.
func (s *fastScanner) keep(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	dst := s.grow(len(b))
	if dst == nil {
		return string(b)
	}
	copy(dst, b)
	return unsafe.String(&dst[0], len(dst))
}

// value is fastString.value with an unescaped string kept in the arena.
func (s *fastScanner) value(f fastString) (string, bool) {
	if f.escaped {
		return f.value()
	}
	return s.intern(f.text), true
}

// intern is internString over the arena.
func (s *fastScanner) intern(b []byte) string {
	switch string(b) {
	case "", "utf-8", "binary", "application/json", "application/x-protobuf",
		"application/data", "text/plain", "base64":
		return internString(b)
	}
	return s.keep(b)
}

// rawString is the package's rawString with a plain string's text kept in
// the arena.
func (s *fastScanner) rawString(raw []byte) string {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		inner := raw[1 : len(raw)-1]
		for _, c := range inner {
			if c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
				return rawString(raw)
			}
		}
		return s.keep(inner)
	}
	return rawString(raw)
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string at s.i (which is '"'): its text between the quotes
// and whether it has escapes. ok is false for what is not a valid JSON
// string of valid UTF-8.
// plainByte tells the bytes of a JSON string that need no attention: not
// the closing quote, not an escape, not a control character, not part of a
// multi-byte UTF-8 sequence (a read-only table).
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *fastScanner) str() (text []byte, escaped, ok bool) {
	start := s.i + 1
	high := false
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		if plainByte[c] {
			continue // most bytes: one look-up rather than the switch's tests
		}
		switch {
		case c == '"':
			s.i = i + 1
			text = s.b[start:i]
			if high && !utf8.Valid(text) {
				return nil, false, false
			}
			return text, escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(s.b) {
				return nil, false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, false, false
					}
				}
				i += 4
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			high = true
		}
	}
	return nil, false, false
}

// number reads a number at s.i in JSON's strict grammar.
func (s *fastScanner) number() ([]byte, bool) {
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

func (s *fastScanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// skip reads any value at s.i and returns its text.
func (s *fastScanner) skip(depth int) ([]byte, bool) {
	if s.i >= len(s.b) || depth > maxFastDepth {
		return nil, false
	}
	start := s.i
	switch c := s.b[s.i]; c {
	case '"':
		if _, _, ok := s.str(); !ok {
			return nil, false
		}
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == end {
			s.i++
			break
		}
		for {
			if c == '{' {
				if s.i >= len(s.b) || s.b[s.i] != '"' {
					return nil, false
				}
				if _, _, ok := s.str(); !ok {
					return nil, false
				}
				s.ws()
				if s.i >= len(s.b) || s.b[s.i] != ':' {
					return nil, false
				}
				s.i++
				s.ws()
			}
			if _, ok := s.skip(depth + 1); !ok {
				return nil, false
			}
			s.ws()
			if s.i >= len(s.b) {
				return nil, false
			}
			if s.b[s.i] == end {
				s.i++
				break
			}
			if s.b[s.i] != ',' {
				return nil, false
			}
			s.i++
			s.ws()
		}
	case 't':
		if !s.literal("true") {
			return nil, false
		}
	case 'f':
		if !s.literal("false") {
			return nil, false
		}
	case 'n':
		if !s.literal("null") {
			return nil, false
		}
	default:
		if _, ok := s.number(); !ok {
			return nil, false
		}
	}
	return s.b[start:s.i], true
}

// object walks an object at s.i, calling field for each member with the
// scanner at its value; field reads the value and returns false to give
// up. Keys with escapes or bytes outside ASCII make it give up: the slow
// decoder matches keys case-insensitively, which only it should judge.
func (s *fastScanner) object(field func(key []byte) bool) bool {
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		key, escaped, ok := s.str()
		if !ok || escaped {
			return false
		}
		for _, c := range key {
			if c >= utf8.RuneSelf {
				return false
			}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if !field(key) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		if s.b[s.i] == '}' {
			s.i++
			return true
		}
		if s.b[s.i] != ',' {
			return false
		}
		s.i++
		s.ws()
	}
}

// nearKey reports whether key is not one of known but matches one when
// case, '-' and '_' are ignored (more than v1's matching ignores, so that
// the fast decoder gives up on every key v1 might take for a known one).
func nearKey(key []byte, known ...string) bool {
	for _, k := range known {
		if foldKeyEqual(key, k) {
			return true
		}
	}
	return false
}

func foldKeyEqual(a []byte, b string) bool {
	i, j := 0, 0
	for {
		for i < len(a) && (a[i] == '-' || a[i] == '_') {
			i++
		}
		for j < len(b) && (b[j] == '-' || b[j] == '_') {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		ca, cb := a[i], b[j]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
		i++
		j++
	}
}

// fastStr reads a *string field: a string or null.
func (s *fastScanner) fastStr(dst *fastString) bool {
	if s.i < len(s.b) && s.b[s.i] == 'n' {
		*dst = fastString{}
		return s.literal("null")
	}
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	text, escaped, ok := s.str()
	*dst = fastString{set: true, text: text, escaped: escaped}
	return ok
}

// headerValue reads a header value as decodeHeaders and convertNumbers
// make it.
func (s *fastScanner) headerValue(depth int) (any, bool) {
	if s.i >= len(s.b) || depth > maxFastDepth {
		return nil, false
	}
	switch c := s.b[s.i]; c {
	case '"':
		text, escaped, ok := s.str()
		if !ok {
			return nil, false
		}
		if escaped {
			return fastString{set: true, text: text, escaped: true}.value()
		}
		return s.keep(text), true
	case '{':
		m := map[string]any{}
		ok := s.object(func(key []byte) bool {
			if _, dup := m[string(key)]; dup {
				return false
			}
			v, ok := s.headerValue(depth + 1)
			m[s.keep(key)] = v
			return ok
		})
		return m, ok
	case '[':
		a := []any{}
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return a, true
		}
		for {
			v, ok := s.headerValue(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			s.ws()
			if s.i >= len(s.b) {
				return nil, false
			}
			if s.b[s.i] == ']' {
				s.i++
				return a, true
			}
			if s.b[s.i] != ',' {
				return nil, false
			}
			s.i++
			s.ws()
		}
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	case 'n':
		return nil, s.literal("null")
	default:
		text, ok := s.number()
		if !ok {
			return nil, false
		}
		return numberValue(text), true
	}
}

// numberValue is convertNumbers for one number's text.
func numberValue(text []byte) any {
	t := string(text)
	if !strings.ContainsAny(t, ".eE") {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return n
		}
	}
	f, _ := strconv.ParseFloat(t, 64)
	return f
}

// decodeEnvelopeFast is DecodeEnvelope for the envelopes it is sure of;
// ok is false where decodeEnvelopeSlow must decide.
func decodeEnvelopeFast(raw []byte) (*transport.Delivery, bool) {
	d := &transport.Delivery{}
	if !decodeEnvelopeInto(raw, d) {
		return nil, false
	}
	return d, true
}

// decodeEnvelopeInto is decodeEnvelopeFast into a delivery the caller
// allocated (with what it allocates alongside); d is only written when it
// reports true.
func decodeEnvelopeInto(raw []byte, d *transport.Delivery) (ok bool) {
	var e fastEnvelope
	s := fastScanner{b: raw}
	s.ws()
	var seen uint8
	once := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "body":
			return once(1) && s.fastStr(&e.body)
		case "content-encoding":
			return once(2) && s.fastStr(&e.contentEncoding)
		case "content-type":
			return once(4) && s.fastStr(&e.contentType)
		case "headers":
			return once(8) && s.fastHeaders(&e)
		case "properties":
			return once(16) && s.fastProperties(&e)
		case "redelivered":
			if !once(32) {
				return false
			}
			v, ok := s.skip(0)
			e.redelivered = v
			return ok
		}
		if nearKey(key, "body", "content-encoding", "content-type", "headers", "properties", "redelivered") {
			return false
		}
		_, ok := s.skip(0)
		return ok
	})
	s.ws()
	if !ok || s.i != len(s.b) || !e.hasProperties {
		return false
	}
	return e.delivery(&s, d)
}

func (s *fastScanner) fastHeaders(e *fastEnvelope) bool {
	if s.i < len(s.b) && s.b[s.i] == 'n' {
		return s.literal("null")
	}
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	h := map[string]any{}
	e.headers = h
	return s.object(func(key []byte) bool {
		if _, dup := h[string(key)]; dup {
			return false
		}
		start := s.i
		v, ok := s.headerValue(1)
		if ok && string(key) == "redelivered" {
			e.headersRedelivered = string(s.b[start:s.i]) == "true"
		}
		h[s.keep(key)] = v
		return ok
	})
}

func (s *fastScanner) fastProperties(e *fastEnvelope) bool {
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false // null or another type: the slow decoder says why
	}
	e.hasProperties = true
	var seen uint16
	raw := func(bit uint16, dst *[]byte) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		v, ok := s.skip(1)
		*dst = v
		return ok
	}
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "body_encoding":
			if seen&1 != 0 {
				return false
			}
			seen |= 1
			return s.fastStr(&e.bodyEncoding)
		case "delivery_mode":
			return raw(2, &e.deliveryMode)
		case "priority":
			return raw(4, &e.priority)
		case "correlation_id":
			return raw(8, &e.correlationID)
		case "reply_to":
			return raw(16, &e.replyTo)
		case "expiration":
			return raw(32, &e.expiration)
		case "message_id":
			return raw(64, &e.messageID)
		case "timestamp":
			return raw(128, &e.timestamp)
		case "type":
			return raw(256, &e.typ)
		case "user_id":
			return raw(512, &e.userID)
		case "app_id":
			return raw(1024, &e.appID)
		case "delivery_info":
			if seen&2048 != 0 {
				return false
			}
			seen |= 2048
			return s.fastDeliveryInfo(e)
		}
		if nearKey(key, "body_encoding", "delivery_mode", "priority", "correlation_id", "reply_to", "expiration",
			"message_id", "timestamp", "type", "user_id", "app_id", "delivery_info") {
			return false
		}
		_, ok := s.skip(1)
		return ok
	})
}

func (s *fastScanner) fastDeliveryInfo(e *fastEnvelope) bool {
	if s.i < len(s.b) && s.b[s.i] == 'n' {
		return s.literal("null")
	}
	var seen uint8
	raw := func(bit uint8, dst *[]byte) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		v, ok := s.skip(2)
		*dst = v
		return ok
	}
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "exchange":
			return raw(1, &e.exchange)
		case "routing_key":
			return raw(2, &e.routingKey)
		case "redelivered":
			return raw(4, &e.diRedelivered)
		}
		if nearKey(key, "exchange", "routing_key", "redelivered") {
			return false
		}
		_, ok := s.skip(2)
		return ok
	})
}

// delivery builds the delivery as decodeEnvelopeSlow does from its
// wireEnvelope.
func (e *fastEnvelope) delivery(s *fastScanner, out *transport.Delivery) bool {
	var d transport.Delivery
	if e.body.set && len(e.body.text) > 0 {
		text := e.body.text
		if e.body.escaped {
			v, ok := e.body.value()
			if !ok {
				return false
			}
			text = []byte(v)
		}
		if len(text) > 0 {
			enc, ok := s.value(e.bodyEncoding)
			if !ok {
				return false
			}
			if e.bodyEncoding.set && enc == "base64" {
				body := s.grow(base64.StdEncoding.DecodedLen(len(text)))
				if body == nil {
					body = make([]byte, base64.StdEncoding.DecodedLen(len(text)))
				}
				n, err := base64.StdEncoding.Decode(body, text)
				if err != nil {
					return false // the slow decoder cleans it or fails
				}
				d.Body = body[:n:n]
			} else if e.body.escaped {
				d.Body = text
			} else {
				if body := s.grow(len(text)); body != nil {
					copy(body, text)
					d.Body = body
				} else {
					d.Body = append([]byte(nil), text...)
				}
			}
		}
	}
	if e.headers != nil {
		d.Headers = DeathTimes(e.headers)
	}
	props := &d.Properties
	var ok bool
	if props.ContentType, ok = s.value(e.contentType); !ok {
		return false
	}
	if props.ContentEncoding, ok = s.value(e.contentEncoding); !ok {
		return false
	}
	props.DeliveryMode = uint8(min(max(rawInt(e.deliveryMode), 0), math.MaxUint8))
	props.Priority = uint8(min(max(rawInt(e.priority), 0), math.MaxUint8))
	props.CorrelationID = s.rawString(e.correlationID)
	props.ReplyTo = s.rawString(e.replyTo)
	props.MessageID = s.rawString(e.messageID)
	props.Type = s.rawString(e.typ)
	props.UserID = s.rawString(e.userID)
	props.AppID = s.rawString(e.appID)
	if ms := rawInt(e.expiration); ms > 0 {
		props.Expiration = time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	}
	if ts := rawFloat(e.timestamp); ts > 0 && ts < 1e12 {
		sec, frac := math.Modf(ts)
		props.Timestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	d.Exchange = s.rawString(e.exchange)
	d.RoutingKey = s.rawString(e.routingKey)
	d.Redelivered = rawTrue(e.diRedelivered) || rawTrue(e.redelivered) || e.headersRedelivered
	*out = d
	return true
}
