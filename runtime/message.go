package kombu

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Properties are a message's AMQP basic properties: content type and
// encoding, delivery mode, priority, correlation id, reply-to, expiration,
// message id, timestamp, type, user id and app id.
type Properties = transport.Properties

// DeliveryInfo says where a message came from.
type DeliveryInfo struct {
	Exchange    string
	RoutingKey  string
	Queue       string
	ConsumerTag string
	DeliveryTag uint64
	Redelivered bool // delivered before and not settled
}

// MessageState is where a message is in its life: unsettled until it is
// acked, rejected or requeued, exactly once.
type MessageState uint32

const (
	StateUnsettled MessageState = iota
	StateAcked
	StateRejected
	StateRequeued
)

func (s MessageState) String() string {
	switch s {
	case StateAcked:
		return "acked"
	case StateRejected:
		return "rejected"
	case StateRequeued:
		return "requeued"
	}
	return "unsettled"
}

// Message is a message delivered to a consumer or fetched with Queue.Get.
// Body is already decompressed; Decode deserializes it according to its
// content type.
//
// A message that was not auto-acked must be settled exactly once, with Ack,
// Reject or Requeue. A consumer's handler usually leaves that to the
// consumer, which settles according to what the handler returns.
type Message struct {
	Body         []byte
	Headers      map[string]any
	Properties   Properties
	DeliveryInfo DeliveryInfo

	conn   *Connection // nil for a message built outside a connection
	codecs *codecs
	accept *acceptList
	acker  transport.Acknowledger // nil when auto-acked
	gen    uint64                 // the session it was delivered on
	state  atomic.Uint32
}

// newMessage turns a delivery into a Message, decompressing its body. On a
// decompression failure it still returns the message, so that the caller
// can reject it rather than lose it.
func (c *Connection) newMessage(d *transport.Delivery, accept *acceptList, gen uint64) (*Message, error) {
	m := &Message{
		Body:       d.Body,
		Headers:    d.Headers,
		Properties: d.Properties,
		DeliveryInfo: DeliveryInfo{
			Exchange:    d.Exchange,
			RoutingKey:  d.RoutingKey,
			Queue:       d.Queue,
			ConsumerTag: d.ConsumerTag,
			DeliveryTag: d.Tag,
			Redelivered: d.Redelivered,
		},
		conn:   c,
		codecs: c.codecs,
		accept: accept,
		acker:  d.Acknowledger,
		gen:    gen,
	}
	if m.acker == nil {
		m.state.Store(uint32(StateAcked))
	}
	if ct := m.contentType(); !accept.allows(ct) {
		return m, m.disallowed(ct)
	}
	if int64(len(m.Body)) > c.codecs.maxBodySize {
		return m, fmt.Errorf("%w: %w: a body of %d bytes exceeds the connection's limit of %d (WithMaxBodySize)",
			ErrDecode, ErrLimitExceeded, len(m.Body), c.codecs.maxBodySize)
	}
	if err := m.decompress(c.codecs); err != nil {
		return m, err
	}
	return m, nil
}

// Redelivered reports whether the broker delivered this message before.
func (m *Message) Redelivered() bool { return m.DeliveryInfo.Redelivered }

// State returns whether the message is settled, and how.
func (m *Message) State() MessageState { return MessageState(m.state.Load()) }

// Decode deserializes the body into v with the serializer its content type
// names. A content type outside the consumer's accept list fails with
// ErrContentDisallowed; a body that does not decode fails with ErrDecode.
// A content type no serializer handles decodes, as in Kombu, into *[]byte,
// *string or *any: as bytes when its content encoding is binary, as text
// when it is utf-8 (other encodings fail with ErrDecode).
func (m *Message) Decode(v any) error {
	ct := m.contentType()
	if !m.accept.allows(ct) {
		return m.disallowed(ct)
	}
	codecs := m.codecs
	if codecs == nil {
		codecs = defaultCodecs
	}
	s, ok := codecs.byContentType[ct]
	if !ok {
		// Kombu hands over a body it has no decoder for as text in its
		// content encoding, or as bytes.
		if err := decodeUnregistered(m.Body, m.Properties.ContentEncoding, v); err != nil {
			return fmt.Errorf("%w: no serializer for content type %q: %v", ErrDecode, ct, err)
		}
		return nil
	}
	if err := s.Unmarshal(m.Body, v); err != nil {
		return fmt.Errorf("%w: %s body into %T: %v", ErrDecode, ct, v, err)
	}
	return nil
}

// decompress replaces the body by its decompressed form when the
// "compression" header names a compression. An unknown compression, a
// corrupt body or one larger than the connection's limit is an error
// wrapping ErrDecode and, respectively, ErrUnknownCompression or
// ErrLimitExceeded.
func (m *Message) decompress(c *codecs) error {
	raw, present := m.Headers["compression"]
	if !present || raw == nil {
		return nil
	}
	var name string
	switch v := raw.(type) {
	case string:
		name = v
	case []byte: // a header that came as an AMQP byte array
		name = string(v)
	default:
		return fmt.Errorf("%w: %w: compression header is a %T, not a string", ErrDecode, ErrUnknownCompression, raw)
	}
	if name == "" {
		return nil
	}
	z, err := c.compressor(name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	body, err := z.Decompress(m.Body, c.maxBodySize)
	if err != nil {
		return fmt.Errorf("%w: %s body: %w", ErrDecode, z.Name(), err)
	}
	m.Body = body
	return nil
}

// contentType is the message's content type; none means raw bytes, as in
// Kombu.
func (m *Message) contentType() string {
	if m.Properties.ContentType == "" {
		return ContentTypeData
	}
	return m.Properties.ContentType
}

func (m *Message) disallowed(ct string) error {
	return fmt.Errorf("%w: %s", ErrContentDisallowed, m.accept.refusal(ct))
}

// Ack acknowledges the message: the broker forgets it. On an auto-acked
// message it does nothing, as in Kombu.
func (m *Message) Ack() error {
	if m.acker == nil {
		return nil
	}
	if err := m.settle(StateAcked); err != nil {
		return err
	}
	return m.acker.Ack(m.DeliveryInfo.DeliveryTag, false)
}

// Reject refuses the message. With requeue the broker delivers it again;
// without, it is dead-lettered where its queue has a dead-letter exchange,
// and dropped otherwise.
func (m *Message) Reject(requeue bool) error {
	state := StateRejected
	if requeue {
		state = StateRequeued
	}
	if err := m.settle(state); err != nil {
		return err
	}
	return m.acker.Reject(m.DeliveryInfo.DeliveryTag, requeue)
}

// Requeue rejects the message with requeue: the broker delivers it again.
func (m *Message) Requeue() error { return m.Reject(true) }

// rejectFailed rejects the message without requeue for the reason err,
// which the dead-lettered copy carries in ErrorHeader where the transport
// writes that copy itself.
func (m *Message) rejectFailed(err error) error {
	rr, ok := m.acker.(transport.ReasonRejecter)
	if !ok {
		return m.Reject(false)
	}
	if err := m.settle(StateRejected); err != nil {
		return err
	}
	return rr.RejectWithReason(m.DeliveryInfo.DeliveryTag, errorText(err))
}

// maxErrorText bounds the error text a message carries in ErrorHeader:
// enough to say why, not a stack to copy into every dead letter.
const maxErrorText = 1024

// errorText is err's text for ErrorHeader, cut to maxErrorText bytes.
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = strings.ToValidUTF8(s[:maxErrorText], "") + "…"
	}
	return s
}

// settle moves the message from unsettled to s, once. A message delivered
// on an earlier session than the connection's current one is not settled:
// its delivery tag could name another message on the new session, and the
// broker has already put it back in its queue.
func (m *Message) settle(s MessageState) error {
	if m.conn != nil && m.acker != nil {
		if cur := m.conn.session(); cur != nil && cur.gen != m.gen {
			return fmt.Errorf("%w: delivered on connection session %d, now %d", ErrStaleDelivery, m.gen, cur.gen)
		}
	}
	if m.state.CompareAndSwap(uint32(StateUnsettled), uint32(s)) {
		return nil
	}
	if m.acker == nil {
		return fmt.Errorf("%w: the message was auto-acknowledged", ErrMessageState)
	}
	return fmt.Errorf("%w: already %s", ErrMessageState, m.State())
}

// defaultCodecs serves messages built outside a connection, in tests.
var defaultCodecs, _ = newCodecs(nil, nil, DefaultMaxBodySize)

// ExpiresHeader is the header that carries the time after which a
// message's sender no longer wants it handled. Call sets it from its
// context's deadline, in seconds since the Unix epoch as a float, as Kombu's
// pidbox (Celery's remote control) writes it; Celery task messages carry
// an ISO 8601 date under the same name, which is read too. 0 means none.
const ExpiresHeader = "expires"

// Deadline returns the time after which the message's sender no longer
// wants it handled, from its "expires" header (see ExpiresHeader), and
// whether it has one. A consumer does not hand a message past its deadline
// to its handler, and the handler's context ends at the deadline.
//
// A message's Expiration property alone gives no deadline: it bounds the
// time the message waits in its queue (where the transport has TTL), as on
// RabbitMQ, and the broker does not say when the wait began.
func (m *Message) Deadline() (time.Time, bool) {
	switch v := m.Headers[ExpiresHeader].(type) {
	case float64:
		return epochDeadline(v)
	case float32:
		return epochDeadline(float64(v))
	case int64:
		return epochDeadline(float64(v))
	case int:
		return epochDeadline(float64(v))
	case int32:
		return epochDeadline(float64(v))
	case uint64:
		return epochDeadline(float64(v))
	case time.Time: // an AMQP timestamp field
		return v, !v.IsZero()
	case string:
		return isoDeadline(v)
	case []byte:
		return isoDeadline(string(v))
	}
	return time.Time{}, false
}

func epochDeadline(seconds float64) (time.Time, bool) {
	if !(seconds > 0) || seconds > math.MaxInt64/1e9 { // 0 (Kombu's "none"), negative, NaN or beyond time.Time's nanoseconds
		return time.Time{}, false
	}
	// A float64 of today's epoch seconds resolves a quarter microsecond:
	// rounded to the microsecond, it reads back what Python's time() wrote.
	sec, frac := math.Modf(seconds)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3), true
}

// isoDeadline reads Celery's "expires": an ISO 8601 date from Python's
// isoformat(), with or without a UTC offset (UTC when without, as Celery
// sends it with its default timezone).
func isoDeadline(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// callBeforeDeadline runs h with a context that ends at the message's
// deadline, if it has one. A message already past its deadline does not
// reach h: it is rejected without requeue (dead-lettered where its queue
// has a dead-letter exchange, as RabbitMQ does with a message whose TTL
// ran out in the queue), logged, and nil is returned with the message
// settled, so the consumer neither retries it nor logs a handler failure.
// This is how a request whose caller gave up is dropped on a transport
// without TTL, such as Redis, or when it reached a consumer just in time.
func (c *Consumer) callBeforeDeadline(ctx context.Context, h Handler, msg *Message) error {
	deadline, ok := msg.Deadline()
	if !ok {
		return c.call(ctx, h, msg)
	}
	if late := time.Since(deadline); late >= 0 {
		c.conn.logger.Warn("kombu: message past its deadline dropped unhandled", msgLog(msg, "deadline", deadline, "late", late)...)
		if msg.State() == StateUnsettled {
			if err := msg.Reject(false); err != nil {
				c.conn.logger.Error("kombu: settle message", msgLog(msg, "error", err)...)
			}
		}
		return nil
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return c.call(ctx, h, msg)
}
