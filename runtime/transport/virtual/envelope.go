package virtual

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	json "github.com/go-json-experiment/json/v1"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// The envelope is the JSON object Kombu's virtual channel stores for each
// message (kombu/transport/virtual/base.py: Channel.prepare_message and
// _inplace_augment_message), with this key order:
//
//	{"body": "<base64>", "content-encoding": "utf-8", "content-type": "application/json",
//	 "headers": {...},
//	 "properties": {<correlation_id, reply_to, ...>, "delivery_mode": 2, ["expiration": "10000",]
//	                "delivery_info": {"exchange": "ex", "routing_key": "rk"},
//	                "priority": 0, "body_encoding": "base64", "delivery_tag": "<uuid4>"}}
//
// Properties Kombu's publish takes as keyword arguments come first, in the
// order AMQP lists them (which is also the order Celery passes them in).

// AppendEnvelopeHead appends a message's envelope, written as Python's
// json.dumps writes it, up to the opening quote of its delivery tag. The
// caller finishes it with AppendEnvelopeTail, once per copy, so that each
// queue's copy can get its own tag. Header values follow AppendPyValue; one
// JSON cannot carry fails with an error wrapping transport.ErrNotSupported.
func AppendEnvelopeHead(b []byte, p *transport.Publishing) ([]byte, error) {
	b = append(b, `{"body": "`...)
	n := base64.StdEncoding.EncodedLen(len(p.Body))
	b = growBy(b, n)
	base64.StdEncoding.Encode(b[len(b):len(b)+n], p.Body)
	b = b[:len(b)+n]
	b = append(b, `", "content-encoding": `...)
	b = appendPyStringOrNull(b, p.ContentEncoding)
	b = append(b, `, "content-type": `...)
	b = appendPyStringOrNull(b, p.ContentType)
	b = append(b, `, "headers": `...)
	if len(p.Headers) == 0 {
		b = append(b, '{', '}')
	} else {
		var err error
		if b, err = appendPyMap(b, p.Headers); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
	}
	b = append(b, `, "properties": {`...)
	prop := func(name, v string) {
		if v != "" {
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, `": `...)
			b = AppendPyString(b, v)
			b = append(b, ',', ' ')
		}
	}
	prop("correlation_id", p.CorrelationID)
	prop("reply_to", p.ReplyTo)
	prop("message_id", p.MessageID)
	if !p.Timestamp.IsZero() {
		b = append(b, `"timestamp": `...)
		b = strconv.AppendInt(b, p.Timestamp.Unix(), 10)
		b = append(b, ',', ' ')
	}
	prop("type", p.Type)
	prop("user_id", p.UserID)
	prop("app_id", p.AppID)
	mode := p.DeliveryMode
	if mode == 0 {
		mode = transport.Persistent
	}
	b = append(b, `"delivery_mode": `...)
	b = strconv.AppendUint(b, uint64(mode), 10)
	if p.Expiration > 0 {
		b = append(b, `, "expiration": "`...)
		b = strconv.AppendInt(b, p.Expiration.Milliseconds(), 10)
		b = append(b, '"')
	}
	b = append(b, `, "delivery_info": {"exchange": `...)
	b = AppendPyString(b, p.Exchange)
	b = append(b, `, "routing_key": `...)
	b = AppendPyString(b, p.RoutingKey)
	b = append(b, `}, "priority": `...)
	b = strconv.AppendUint(b, uint64(p.Priority), 10)
	b = append(b, `, "body_encoding": "base64", "delivery_tag": "`...)
	return b, nil
}

// envelopeCap is about the length of p's finished envelope, so that its
// buffer is allocated once: the fixed text, the body in base64, the
// properties and headers with their names (escapes and other header types
// may still make it grow).
func envelopeCap(p *transport.Publishing) int {
	n := 300 + base64.StdEncoding.EncodedLen(len(p.Body)) + len(p.ContentEncoding) + len(p.ContentType) +
		len(p.Exchange) + len(p.RoutingKey)
	for _, s := range [...]string{p.CorrelationID, p.ReplyTo, p.MessageID, p.Type, p.UserID, p.AppID} {
		if s != "" {
			n += len(s) + 20
		}
	}
	for k, v := range p.Headers {
		n += len(k) + 6
		if s, ok := v.(string); ok {
			n += len(s) + 2
		} else {
			n += 24
		}
	}
	return n + n/8
}

// AppendEnvelopeTail finishes an envelope with its delivery tag (see
// NewDeliveryTag).
func AppendEnvelopeTail(b []byte, tag string) []byte {
	b = append(b, tag...)
	return append(b, `"}}`...)
}

func appendPyStringOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return AppendPyString(b, s)
}

func growBy(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b
}

// NewDeliveryTag returns a random (version 4) UUID in its usual text form,
// as Kombu's uuid() makes delivery tags.
func NewDeliveryTag() string {
	var s [36]byte
	return string(appendNewDeliveryTag(s[:0]))
}

// appendNewDeliveryTag appends a new delivery tag (NewDeliveryTag) without
// making a string of it first.
func appendNewDeliveryTag(b []byte) []byte {
	// A tag only has to be unique, as Kombu's uuid4() is: the runtime's
	// generator (ChaCha8, seeded by the system per thread) gives the
	// same 122 random bits without crypto/rand's system call per publish.
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[c>>4], hexDigits[c&0xF]
		j += 2
	}
	return append(b, s[:]...)
}

// appendEnvelopeTailNewTag is AppendEnvelopeTail with a new delivery tag.
func appendEnvelopeTailNewTag(b []byte) []byte {
	b = appendNewDeliveryTag(b)
	return append(b, `"}}`...)
}

// wireEnvelope is an envelope as decoded for delivery. Fields Python may
// write with other types than Kombu does are kept raw and converted
// leniently.
type wireEnvelope struct {
	Body            *string         `json:"body"`
	ContentEncoding *string         `json:"content-encoding"`
	ContentType     *string         `json:"content-type"`
	Headers         json.RawMessage `json:"headers"`
	Properties      *struct {
		BodyEncoding  *string         `json:"body_encoding"`
		DeliveryMode  json.RawMessage `json:"delivery_mode"`
		Priority      json.RawMessage `json:"priority"`
		CorrelationID json.RawMessage `json:"correlation_id"`
		ReplyTo       json.RawMessage `json:"reply_to"`
		Expiration    json.RawMessage `json:"expiration"`
		MessageID     json.RawMessage `json:"message_id"`
		Timestamp     json.RawMessage `json:"timestamp"`
		Type          json.RawMessage `json:"type"`
		UserID        json.RawMessage `json:"user_id"`
		AppID         json.RawMessage `json:"app_id"`
		DeliveryInfo  struct {
			Exchange    json.RawMessage `json:"exchange"`
			RoutingKey  json.RawMessage `json:"routing_key"`
			Redelivered json.RawMessage `json:"redelivered"`
		} `json:"delivery_info"`
	} `json:"properties"`
	Redelivered json.RawMessage `json:"redelivered"` // set by the virtual base _restore
}

// ErrEnvelope marks a stored message that is not a Kombu envelope.
var ErrEnvelope = errors.New("message is not a Kombu envelope")

// DecodeEnvelope turns a stored envelope into a delivery (without its
// queue, tags or acknowledger), reading it as leniently as Python Kombu
// 5.2 to 5.5 write it: properties of other JSON types than Kombu's are
// converted as Python would, header integers become int64 and other
// numbers float64, and x-death times become a time.Time (see DeathTimes).
// Redelivered is set from Kombu's marks (headers.redelivered,
// properties.delivery_info.redelivered, or a top-level "redelivered").
// What is not an envelope fails with ErrEnvelope.
func DecodeEnvelope(raw []byte) (*transport.Delivery, error) {
	if d, ok := decodeEnvelopeFast(raw); ok {
		return d, nil
	}
	return decodeEnvelopeSlow(raw)
}

// decodeEnvelopeSlow is DecodeEnvelope by reflection: the reference the
// fast decoder (envfast.go) is checked against, and what decides every
// envelope the fast one is not sure of.
func decodeEnvelopeSlow(raw []byte) (*transport.Delivery, error) {
	var w wireEnvelope
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	p := w.Properties
	if p == nil {
		// Kombu reads payload['properties'] first thing, and fails without.
		return nil, fmt.Errorf("%w: no \"properties\" object", ErrEnvelope)
	}
	d := &transport.Delivery{}
	if w.Body != nil && *w.Body != "" {
		if p.BodyEncoding != nil && *p.BodyEncoding == "base64" {
			body, err := base64.StdEncoding.DecodeString(*w.Body)
			if err != nil {
				// Python's b64decode skips characters outside the alphabet.
				body, err = base64.StdEncoding.DecodeString(base64Clean(*w.Body))
				if err != nil {
					return nil, fmt.Errorf("%w: body is not base64: %v", ErrEnvelope, err)
				}
			}
			d.Body = body
		} else {
			d.Body = []byte(*w.Body)
		}
	}
	if len(w.Headers) > 0 && string(w.Headers) != "null" {
		h, err := decodeHeaders(w.Headers)
		if err != nil {
			return nil, fmt.Errorf("%w: headers: %v", ErrEnvelope, err)
		}
		d.Headers = DeathTimes(h)
	}
	props := &d.Properties
	if w.ContentType != nil {
		props.ContentType = *w.ContentType
	}
	if w.ContentEncoding != nil {
		props.ContentEncoding = *w.ContentEncoding
	}
	props.DeliveryMode = uint8(min(max(rawInt(p.DeliveryMode), 0), math.MaxUint8))
	props.Priority = uint8(min(max(rawInt(p.Priority), 0), math.MaxUint8))
	props.CorrelationID = rawString(p.CorrelationID)
	props.ReplyTo = rawString(p.ReplyTo)
	props.MessageID = rawString(p.MessageID)
	props.Type = rawString(p.Type)
	props.UserID = rawString(p.UserID)
	props.AppID = rawString(p.AppID)
	if ms := rawInt(p.Expiration); ms > 0 {
		props.Expiration = time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	}
	if ts := rawFloat(p.Timestamp); ts > 0 && ts < 1e12 {
		sec, frac := math.Modf(ts)
		props.Timestamp = time.Unix(int64(sec), int64(frac*1e9))
	}
	d.Exchange = rawString(p.DeliveryInfo.Exchange)
	d.RoutingKey = rawString(p.DeliveryInfo.RoutingKey)
	d.Redelivered = rawTrue(p.DeliveryInfo.Redelivered) || rawTrue(w.Redelivered) || rawTrue(headerRaw(w.Headers, "redelivered"))
	return d, nil
}

// MaxPriority is the highest priority Kombu's virtual transports tell
// apart (virtual.Channel.max_priority).
const MaxPriority = 9

// Priority returns an envelope's priority as Kombu's _get_message_priority
// reads it: an integer clamped to 0..MaxPriority, 0 when missing or not a
// number.
func Priority(raw []byte) int {
	var w struct {
		Properties struct {
			Priority json.RawMessage `json:"priority"`
		} `json:"properties"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return 0
	}
	return int(min(max(rawInt(w.Properties.Priority), 0), MaxPriority))
}

// InvalidEnvelopeType labels a stored message that is not a Kombu
// envelope (see UndecodableDelivery).
const InvalidEnvelopeType = "application/x-kombu-invalid-envelope"

// UndecodableDelivery is the delivery of a stored message that is not a
// Kombu envelope: its raw bytes as the body, InvalidEnvelopeType as its
// content type and as its "compression" header, which no decompressor has,
// and the decoding error in "x-kombu-error". The runtime hands it to the
// consumer's decode-error handler and rejects it (dead-lettering it where
// the queue has a dead-letter exchange), rather than giving garbage to a
// handler or dropping it unseen.
func UndecodableDelivery(raw []byte, err error) *transport.Delivery {
	return &transport.Delivery{
		Body:       raw,
		Headers:    map[string]any{"compression": InvalidEnvelopeType, "x-kombu-error": err.Error()},
		Properties: transport.Properties{ContentType: InvalidEnvelopeType},
	}
}

func base64Clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=' {
			return r
		}
		return -1
	}, s)
}

// decodeHeaders decodes a JSON object into header values: integers as
// int64, other numbers as float64, objects as map[string]any.
func decodeHeaders(raw json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = convertNumbers(v)
	}
	return m, nil
}

func convertNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(v), ".eE") {
			if n, err := v.Int64(); err == nil {
				return n
			}
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = convertNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = convertNumbers(e)
		}
	}
	return v
}

func headerRaw(headers json.RawMessage, key string) json.RawMessage {
	if len(headers) == 0 || !bytes.Contains(headers, []byte(key)) {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(headers, &m) != nil {
		return nil
	}
	return m[key]
}

// rawString reads a property as Python would print it into an AMQP string
// field: strings as they are, numbers as written, null and others as "".
func rawString(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		if s, ok := plainString(raw); ok {
			return s
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw)
	}
	return ""
}

// rawInt reads a property as Python's int() would: integers, floats
// (truncated) and numeric strings; anything else is 0.
func rawInt(raw json.RawMessage) int64 {
	f := rawFloat(raw)
	if math.IsNaN(f) {
		return 0
	}
	return int64(max(min(f, math.MaxInt64/2), math.MinInt64/2))
}

func rawFloat(raw json.RawMessage) float64 {
	if len(raw) == 0 {
		return 0
	}
	if raw[0] != '"' {
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return 0
		}
		return f
	}
	s, ok := plainString(raw)
	if !ok && json.Unmarshal(raw, &s) != nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0
	}
	return f
}

// plainString returns the text of a JSON string that has no escapes and
// only ASCII, which is how Python's json.dumps writes most of them,
// without a JSON decoder's work; ok is false for any other.
func plainString(raw []byte) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
			return "", false
		}
	}
	return string(inner), true
}

func rawTrue(raw json.RawMessage) bool { return string(raw) == "true" }

// MarkRedelivered returns the envelope with headers.redelivered and
// properties.delivery_info.redelivered set to true, written as Kombu's
// _do_restore_message writes it (json.dumps after setting both keys): the
// rest keeps its key order and its values as Python reads and writes them.
// What is not JSON fails with ErrEnvelope.
func MarkRedelivered(raw []byte) ([]byte, error) {
	n, err := parsePy(string(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	if n.kind == '{' {
		// Kombu sets both inside one try block: a missing "headers" skips
		// both, a missing "delivery_info" skips only the second.
		if h := n.get("headers"); h != nil && h.kind == '{' {
			h.set("redelivered", pyTrue)
			if p := n.get("properties"); p != nil && p.kind == '{' {
				if di := p.get("delivery_info"); di != nil && di.kind == '{' {
					di.set("redelivered", pyTrue)
				}
			}
		}
	}
	return n.appendTo(make([]byte, 0, len(raw)+48)), nil
}
