package kombu

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Interceptors wrap a connection's publishes and handler calls, as
// connect-go's interceptors wrap its RPCs: tracing, metrics, logging and
// header policies plug in here, and the runtime itself imports no
// telemetry library (otelkombu, a module of its own, is one).
//
// An Interceptor is given to Dial with WithInterceptors and applies to
// everything made from that connection: generated and hand-written
// producers and consumers, Producer.Call and Message.Reply
// (request/reply), WithMessageRetry's republishing, batches (InBatch: the
// interceptor sees each message as it joins the batch; Send sends what it
// let through) and SimpleQueue.Put. A shovel moves messages unchanged and
// is not intercepted, and Queue.Get and SimpleQueue.Get hand out messages
// without a handler, so there is no handler call to wrap.
//
// Order: the first interceptor given is the outermost. A publish passes
// through interceptors[0], then [1], ..., then the driver; a handler call
// enters interceptors[0] first, and interceptors[0] sees the result last,
// after every other interceptor has seen (and perhaps changed) it. An
// interceptor that does not call next stops the publish or the handler
// call there.
type Interceptor interface {
	// WrapPublish returns a PublishFunc that does what it must and calls
	// next to go on publishing. It is called once per connection, at Dial.
	//
	// The returned function may read the Publishing and change its headers
	// (SetHeader) and properties (Properties) before calling next. An error
	// it returns without having called next fails the publish with
	// ErrInterceptor (wrapping it), and nothing is sent. A panic is
	// recovered and fails the publish the same way.
	WrapPublish(next PublishFunc) PublishFunc
	// WrapHandle returns a HandlerFunc that calls next to run the handler:
	// it sees the message before, the handler's result after, and may time
	// the call. It is called once per subscription, when the consumer
	// declares its queues. What the returned function returns is the
	// handler's result as far as the consumer is concerned: an error
	// rejects (or retries, or requeues) the message as a handler's error
	// would, and a panic is recovered and logged as a handler's panic is.
	WrapHandle(next HandlerFunc) HandlerFunc
}

// PublishFunc publishes one message: the driver's publish, at the end of
// an interceptor chain.
type PublishFunc func(ctx context.Context, pub *Publishing) error

// PublishInterceptorFunc is an Interceptor that wraps publishes only.
type PublishInterceptorFunc func(next PublishFunc) PublishFunc

// WrapPublish calls f.
func (f PublishInterceptorFunc) WrapPublish(next PublishFunc) PublishFunc { return f(next) }

// WrapHandle returns next: handler calls pass through.
func (f PublishInterceptorFunc) WrapHandle(next HandlerFunc) HandlerFunc { return next }

// HandleInterceptorFunc is an Interceptor that wraps handler calls only.
type HandleInterceptorFunc func(next HandlerFunc) HandlerFunc

// WrapPublish returns next: publishes pass through.
func (f HandleInterceptorFunc) WrapPublish(next PublishFunc) PublishFunc { return next }

// WrapHandle calls f.
func (f HandleInterceptorFunc) WrapHandle(next HandlerFunc) HandlerFunc { return f(next) }

// ErrInterceptor is what a publish fails with when an interceptor refused
// it (returned an error without passing the publish on) or panicked: the
// message was not sent. errors.Is finds the interceptor's own error too.
var ErrInterceptor = errors.New("kombu: interceptor stopped the publish")

// WithInterceptors wraps every publish and every handler call made
// through the connection with the interceptors, the first given outermost
// (see Interceptor). Several WithInterceptors append. Without any, a
// publish and a handler call cost nothing more than they would without
// this option: not one allocation (TestInterceptorOverheadAllocs).
func WithInterceptors(interceptors ...Interceptor) DialOption {
	return dialOption(func(c *dialConfig) { c.interceptors = append(c.interceptors, interceptors...) })
}

// Publishing is a message on its way to the broker, as an interceptor
// sees it. It is valid only until the PublishFunc it was passed to
// returns: keep nothing that points into it.
type Publishing struct {
	pub           *transport.Publishing
	producer      *Producer
	cfg           *publishConfig // nil for a retry
	via           publishPath
	ownHeaders    bool // pub.Headers is this publish's own map: SetHeader may write to it
	reachedDriver bool // the chain's end was reached: an error from there on is not the interceptors'
}

// publishPath is where the end of the chain sends a publish.
type publishPath uint8

const (
	viaProducer publishPath = iota // Producer.Publish, with its reconnecting loop
	viaBatch                       // InBatch: add it to the batch
	viaRetry                       // WithMessageRetry: republish on the current session
)

// Exchange returns the name of the exchange the message is published to
// ("" for the default exchange).
func (p *Publishing) Exchange() string { return p.pub.Exchange }

// RoutingKey returns the message's routing key (the queue's name, through
// the default exchange).
func (p *Publishing) RoutingKey() string { return p.pub.RoutingKey }

// Body returns the encoded (and compressed) body. It must not be changed.
func (p *Publishing) Body() []byte { return p.pub.Body }

// Properties returns the message's properties, which the interceptor may
// change: what they hold when the chain reaches the driver is sent.
func (p *Publishing) Properties() *Properties { return &p.pub.Properties }

// Header returns the value of an application header, and whether it is
// set.
func (p *Publishing) Header(key string) (any, bool) {
	v, ok := p.pub.Headers[key]
	return v, ok
}

// SetHeader sets an application header. The headers the caller gave (or
// the producer's defaults) are copied on the first change, never written
// to.
func (p *Publishing) SetHeader(key string, value any) {
	p.ownHeaderMap()
	p.pub.Headers[key] = value
}

// DeleteHeader removes an application header.
func (p *Publishing) DeleteHeader(key string) {
	if _, ok := p.pub.Headers[key]; !ok {
		return
	}
	p.ownHeaderMap()
	delete(p.pub.Headers, key)
}

func (p *Publishing) ownHeaderMap() {
	if p.ownHeaders {
		return
	}
	h := make(map[string]any, len(p.pub.Headers)+2)
	maps.Copy(h, p.pub.Headers)
	p.pub.Headers, p.ownHeaders = h, true
}

// HeaderKeys returns the names of the application headers, sorted.
func (p *Publishing) HeaderKeys() []string { return slices.Sorted(maps.Keys(p.pub.Headers)) }

// Transport returns the scheme of the connection's current broker URL:
// "amqp", "amqps", "redis", "memory", ...
func (p *Publishing) Transport() string { return p.producer.conn.Transport() }

// Retry reports whether this publish is WithMessageRetry's republishing of
// a failed message (whose headers carry what the original message's did).
func (p *Publishing) Retry() bool { return p.via == viaRetry }

// Transport returns the scheme of the connection's current broker URL:
// "amqp", "amqps", "redis", "memory", ... For a message made outside a
// connection it returns "".
func (m *Message) Transport() string {
	if m.conn == nil {
		return ""
	}
	return m.conn.Transport()
}

// Transport returns the scheme of the URL of the broker the connection is
// connected to (or was last): "amqp", "amqps", "redis", "rediss",
// "sentinel", "memory", ...
func (c *Connection) Transport() string { return c.session().scheme }

// interceptors is a connection's chain, built once at Dial.
type interceptors struct {
	list    []Interceptor
	publish PublishFunc
}

func newInterceptors(list []Interceptor) *interceptors {
	if len(list) == 0 {
		return nil
	}
	ic := &interceptors{list: list}
	next := PublishFunc(sendIntercepted)
	for _, in := range slices.Backward(list) {
		next = in.WrapPublish(next)
	}
	ic.publish = next
	return ic
}

// wrapHandler returns h wrapped by the connection's interceptors, or h
// itself without any.
func (c *Connection) wrapHandler(h Handler) Handler {
	if c.intercept == nil {
		return h
	}
	next := HandlerFunc(h.HandleMessage)
	for _, in := range slices.Backward(c.intercept.list) {
		next = in.WrapHandle(next)
	}
	return next
}

var publishingViewPool = sync.Pool{New: func() any { return new(Publishing) }}

// interceptPublish runs the connection's publish chain on pub. Its
// Publishing comes from a pool, so that interceptors that allocate
// nothing cost nothing.
func (c *Connection) interceptPublish(ctx context.Context, p *Producer, cfg *publishConfig, pub *transport.Publishing, via publishPath, ownHeaders bool) (err error) {
	view := publishingViewPool.Get().(*Publishing)
	*view = Publishing{pub: pub, producer: p, cfg: cfg, via: via, ownHeaders: ownHeaders}
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("kombu: publish interceptor panicked", "exchange", pub.Exchange, "routing_key", pub.RoutingKey,
				"message_id", pub.MessageID, "panic", r, "stack", string(debug.Stack()))
			if !view.reachedDriver {
				err = fmt.Errorf("%w: %s: panic: %v", ErrInterceptor, describePublish(pub), r)
			} else {
				// The message went to the broker; the panic came after.
				err = fmt.Errorf("kombu: publish interceptor panicked after the publish: %v", r)
			}
		}
		*view = Publishing{}
		publishingViewPool.Put(view)
	}()
	err = c.intercept.publish(ctx, view)
	if err != nil && !view.reachedDriver && !errors.Is(err, ErrInterceptor) {
		err = fmt.Errorf("%w: %s: %w", ErrInterceptor, describePublish(pub), err)
	}
	return err
}

// sendIntercepted is the end of every publish chain: it publishes the
// message as the runtime would have without interceptors.
func sendIntercepted(ctx context.Context, view *Publishing) error {
	view.reachedDriver = true
	p := view.producer
	switch view.via {
	case viaBatch:
		return view.cfg.batch.add(p.conn, view.pub)
	case viaRetry:
		s := p.conn.session()
		if err := s.tc.Publish(ctx, view.pub); err != nil {
			return p.conn.op(describePublish(view.pub), err)
		}
		return nil
	default:
		return p.send(ctx, view.cfg, view.pub)
	}
}
