package kombu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// ErrorHeader is the header of a reply that carries a request handler's
// error instead of a result: its value is the error's text, and Call
// returns it as a *RemoteError. A Python service answering a kombu-go
// request reports a failure the same way.
const ErrorHeader = "kombu_error"

// Call publishes req as a request and waits for the reply, which it
// decodes into reply. The request carries a reply_to address and a fresh
// correlation_id (overriding any given in opts); the consumer's handler
// answers with Message.Reply, as generated request/reply handlers do.
//
// Call returns ctx's error when ctx ends first, and a *RemoteError when the
// handler failed. Many calls may be in flight on one producer; each gets
// its own reply. A reply that arrives after its caller gave up is dropped
// and counted in Connection.LateReplies.
//
// ctx's deadline goes with the request, so that no consumer works for a
// caller that is gone: in the "expires" header (see Message.Deadline) on
// every transport, where a consumer drops the request unhandled once the
// deadline has passed and otherwise gives its handler a context that ends
// then; and, on a transport with TTL (RabbitMQ, memory://), as the
// request's expiration, so that the broker drops it from its queue at the
// deadline (or dead-letters it, reason "expired") if no consumer took it.
// An expiration given in opts is kept when it is shorter. On Redis, which
// has no TTL, a stale request stays in its queue until a consumer takes
// and drops it.
func (p *Producer) Call(ctx context.Context, req, reply any, opts ...PublishOption) error {
	r, err := p.conn.replyRouter(ctx)
	if err != nil {
		return err
	}
	id := newCorrelationID()
	ch := r.expect(id)
	defer r.forget(id)

	opts = append(opts[:len(opts):len(opts)], WithReplyTo(r.address), WithCorrelationID(id))
	if deadline, ok := ctx.Deadline(); ok {
		if err := ctx.Err(); err != nil {
			return err // gave up already: a request nobody waits for is not sent
		}
		opts = append(opts, p.expiringAt(deadline))
	}
	if err := p.Publish(ctx, req, opts...); err != nil {
		return err
	}
	select {
	case msg := <-ch:
		if text, failed := msg.Headers[ErrorHeader]; failed {
			return &RemoteError{Message: fmt.Sprint(text)}
		}
		return msg.Decode(reply)
	case <-r.done:
		return fmt.Errorf("kombu: waiting for a reply: %w", r.err())
	case <-ctx.Done():
		return fmt.Errorf("kombu: waiting for a reply: %w", ctx.Err())
	}
}

// Reply answers a request message: it publishes result to the request's
// reply_to address with its correlation_id, serialized with the serializer
// the request came in (so a JSON caller gets JSON back). A handler error is
// answered with ReplyError instead.
func (m *Message) Reply(ctx context.Context, result any, opts ...PublishOption) error {
	p, err := m.replyProducer()
	if err != nil {
		return err
	}
	return p.Publish(ctx, result, opts...)
}

// ReplyError answers a request message with a failure: the caller's Call
// returns a *RemoteError with err's text.
func (m *Message) ReplyError(ctx context.Context, err error) error {
	p, perr := m.replyProducer()
	if perr != nil {
		return perr
	}
	return p.Publish(ctx, []byte{}, WithContentType(ContentTypeData, "binary"),
		WithHeaders(map[string]any{ErrorHeader: err.Error()}))
}

// expiringAt returns a PublishOption that carries deadline in the request:
// as its "expires" header, and as its expiration where the transport has
// TTL, unless the options already set a shorter one. It is applied after
// the caller's options, and reads the clock then.
func (p *Producer) expiringAt(deadline time.Time) PublishOption {
	ttl := p.conn.features.Has(transport.FeatureTTL)
	return publishOption(func(c *publishConfig) {
		c.addHeaders(map[string]any{ExpiresHeader: float64(deadline.UnixNano()) / 1e9})
		if !ttl {
			return
		}
		// Expirations travel in whole milliseconds: round up, so that the
		// broker never drops a request its caller still waits for.
		left := max(time.Until(deadline).Truncate(time.Millisecond)+time.Millisecond, time.Millisecond)
		if c.props.Expiration == 0 || left < c.props.Expiration {
			c.props.Expiration = left
		}
	})
}

func (m *Message) replyProducer() (*Producer, error) {
	if m.conn == nil || m.Properties.ReplyTo == "" {
		return nil, fmt.Errorf("kombu: the message has no reply_to: it is not a request")
	}
	serializer := "raw"
	if s, ok := m.conn.codecs.byContentType[m.contentType()]; ok {
		serializer = s.Name()
	}
	return m.conn.replies.With(
		WithRoutingKey(m.Properties.ReplyTo),
		WithCorrelationID(m.Properties.CorrelationID),
		WithSerializer(serializer),
		WithDeliveryMode(Transient), // a reply is worthless once its caller is gone
	), nil
}

// Replying returns a Handler for request messages: it decodes each request
// into a new T, calls fn, and replies with its result or, when fn fails,
// with its error (see Message.Reply and ReplyError). The request itself is
// acked once the reply is sent, and rejected when the reply cannot be.
// A request without reply_to is handled, its result discarded, and logged.
// fn's context ends at the caller's deadline (see Message.Deadline); when
// fn returns after it, no reply is sent, since the caller has stopped
// waiting, and the request is acked, or rejected if fn failed.
func Replying[T any, PT interface{ *T }, R any](fn func(ctx context.Context, m PT, msg *Message) (R, error)) Handler {
	return HandlerFunc(func(ctx context.Context, msg *Message) error {
		v := PT(new(T))
		if err := msg.Decode(v); err != nil {
			return err
		}
		result, err := fn(ctx, v, msg)
		if deadline, ok := msg.Deadline(); ok && !time.Now().Before(deadline) {
			// The caller's Call returned at its deadline: nobody reads a
			// reply now. The request is settled by err alone.
			msg.conn.logger.Debug("kombu: request finished past its caller's deadline; no reply sent", msgLog(msg, "error", err)...)
			return err
		}
		if msg.Properties.ReplyTo == "" {
			if err == nil {
				err = errors.New("kombu: request without reply_to: result discarded")
			}
			return err
		}
		if err != nil {
			return msg.ReplyError(ctx, err)
		}
		return msg.Reply(ctx, result)
	})
}

// LateReplies returns how many replies arrived for calls that had already
// given up (their context ended), and were dropped.
func (c *Connection) LateReplies() int64 {
	c.replyMu.Lock()
	r := c.router
	c.replyMu.Unlock()
	if r == nil {
		return 0
	}
	return r.late.Load()
}

// replyRouter owns a connection's reply address and hands each reply to
// the call waiting for its correlation id.
type replyRouter struct {
	address string
	sub     transport.Subscription
	conn    *Connection

	mu      sync.Mutex
	waiting map[string]chan *Message
	late    atomic.Int64
	done    chan struct{} // closed when replies stop arriving
}

// DirectReplyTo is RabbitMQ's pseudo-queue for replies: consuming it
// needs no queue at all, and the broker routes each reply straight to the
// channel that made the request.
const DirectReplyTo = "amq.rabbitmq.reply-to"

// replyRouter returns the connection's reply router, setting it up on first
// use: RabbitMQ's direct reply-to where the transport has it, and elsewhere
// a server-named, exclusive, auto-delete queue. Replies are consumed
// without acks: one that is lost is a call that times out.
func (c *Connection) replyRouter(ctx context.Context) (*replyRouter, error) {
	c.replyMu.Lock()
	defer c.replyMu.Unlock()
	if c.router != nil {
		return c.router, nil
	}
	address := DirectReplyTo
	if !c.features.Has(transport.FeatureDirectReplyTo) {
		info, err := Queue{Exclusive: true, AutoDelete: true}.Declare(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("kombu: declare the reply queue: %w", err)
		}
		address = info.Name
	}
	sub, err := c.transport().Consume(ctx, transport.ConsumeSpec{Queues: []string{address}, Tag: "kombu-go.replies", AutoAck: true})
	if err != nil {
		return nil, c.op("consume replies", err)
	}
	r := &replyRouter{address: address, sub: sub, conn: c, waiting: map[string]chan *Message{}, done: make(chan struct{})}
	go r.route()
	c.router = r
	return r, nil
}

func (r *replyRouter) route() {
	defer close(r.done)
	for d := range r.sub.Deliveries() {
		msg, err := r.conn.newMessage(d, nil, 0)
		if err != nil {
			r.conn.logger.Error("kombu: undecodable reply dropped", deliveryLog(d, "error", err)...)
			continue
		}
		r.mu.Lock()
		ch, ok := r.waiting[msg.Properties.CorrelationID]
		delete(r.waiting, msg.Properties.CorrelationID)
		r.mu.Unlock()
		if !ok {
			r.late.Add(1)
			r.conn.logger.Debug("kombu: late reply dropped", msgLog(msg)...)
			continue
		}
		ch <- msg // buffered: never blocks
	}
}

func (r *replyRouter) expect(id string) <-chan *Message {
	ch := make(chan *Message, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	return ch
}

func (r *replyRouter) forget(id string) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

func (r *replyRouter) err() error {
	if err := r.sub.Err(); err != nil {
		return err
	}
	return ErrClosed
}

func newCorrelationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
