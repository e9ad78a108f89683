package kombu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Producer publishes messages. It is cheap, safe for concurrent use, and
// holds defaults (exchange, routing key, serializer, ...) that each Publish
// can override.
type Producer struct {
	conn     *Connection
	defaults publishConfig
	confirms bool
	declare  *declareSet // nil: nothing to declare but the exchange
}

// WithDeclare declares entities (exchanges, queues with their bindings,
// topologies), in the order given, before the producer's first publish on
// each broker connection, as Kombu's Producer(declare=[queue]) does: a
// message published before any consumer has declared its queue then waits
// in the queue instead of being dropped. The declarations are made again
// after the connection is lost and recovered, since the broker may have
// lost them. The producer's exchange (WithExchange) is declared first.
//
// Generated producers declare each route's named queue this way. A queue
// without a name, or an exclusive one, belongs to the consumer that
// declares it: Publish fails with ErrNotSupported for such a Queue, and a
// Topology's are skipped.
//
// Options accumulate: With(WithDeclare(q)) on a producer that declares
// something already declares both.
func WithDeclare(entities ...Entity) ProducerOption {
	return producerOption(func(p *Producer) {
		d := &declareSet{sem: make(chan struct{}, 1)}
		if p.declare != nil {
			d.entities = append(d.entities, p.declare.entities...)
		}
		d.entities = append(d.entities, entities...)
		p.declare = d
	})
}

// declareSet is what a producer declares before it publishes, and the
// session it last declared it on.
type declareSet struct {
	entities []Entity
	gen      atomic.Uint64 // the session the entities were declared on; 0: none
	sem      chan struct{} // held while declaring, so that one publish declares and the others wait
}

// ensure declares the entities unless they were declared on session s.
func (d *declareSet) ensure(ctx context.Context, conn *Connection, s *session) error {
	if d.gen.Load() == s.gen {
		return nil
	}
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	case <-ctx.Done():
		return fmt.Errorf("kombu: waiting for another publish to declare the producer's entities: %w", ctx.Err())
	}
	if d.gen.Load() == s.gen {
		return nil // declared while this publish waited
	}
	for _, e := range d.entities {
		if err := e.declareOn(ctx, conn); err != nil {
			return err
		}
	}
	d.gen.Store(s.gen)
	return nil
}

// WithConfirms turns publisher confirms on or off. They are on by default:
// Publish returns nil only once the broker has taken responsibility for the
// message. Off, Publish returns once the message is written to the network,
// which is faster and can lose messages when the broker fails. On a
// transport without publisher confirms (no transport.FeatureConfirms),
// whose drivers refuse them, there is nothing to turn on.
func WithConfirms(on bool) ProducerOption {
	return producerOption(func(p *Producer) { p.confirms = on })
}

type publishConfig struct {
	exchange     *Exchange // nil: the default exchange ""
	routingKey   string
	serializer   string // "": json, or raw/text for []byte/string bodies
	contentType  string // set: the body is sent as it is, with this type
	encoding     string
	compression  string
	mandatory    bool
	warnDropped  bool // WithUnroutableWarning
	headers      map[string]any
	sharedHeader bool // headers belongs to the producer's defaults: copy before writing
	props        transport.Properties
	batch        *Batch // set: queue the message there instead of sending it
	delay        delaySpec
}

// WithExchange publishes to ex, declaring it first unless it is the default
// exchange, an amq.* exchange, or marked NoDeclare. The declaration is made
// once per connection.
func WithExchange(ex Exchange) PublishOption {
	return publishOption(func(c *publishConfig) { c.exchange = &ex })
}

// WithRoutingKey sets the routing key.
func WithRoutingKey(key string) PublishOption {
	return publishOption(func(c *publishConfig) { c.routingKey = key })
}

// WithSerializer sets the serializer by name: "json" (the default for
// values), "protobuf", "raw", "text", or one added with WithCustomSerializers.
func WithSerializer(name string) PublishOption {
	return publishOption(func(c *publishConfig) { c.serializer = name })
}

// WithContentType sends a []byte or string body as it is, labelled with the
// given content type and encoding, as Kombu's publish(content_type=...)
// does.
func WithContentType(contentType, encoding string) PublishOption {
	return publishOption(func(c *publishConfig) { c.contentType, c.encoding = contentType, encoding })
}

// WithCompression compresses the body with the compression of that name,
// alias or content type, as Kombu names them: "zlib" (alias "gzip"),
// "bzip2" ("bzip"), "lzma" ("xz"), "brotli" or "zstd" ("zstandard"), or one
// added with WithCustomCompressors (see Compressor). The message carries the
// compression's content type in its "compression" header, and consumers
// decompress it, within their WithMaxBodySize. An unknown name fails the
// publish with ErrUnknownCompression.
func WithCompression(name string) PublishOption {
	return publishOption(func(c *publishConfig) { c.compression = name })
}

// WithHeaders adds application headers. Several WithHeaders merge; a later
// value for the same key wins.
func WithHeaders(h map[string]any) PublishOption {
	return publishOption(func(c *publishConfig) { c.addHeaders(h) })
}

func (c *publishConfig) addHeaders(h map[string]any) {
	if c.headers == nil || c.sharedHeader {
		c.headers = maps.Clone(c.headers)
		if c.headers == nil {
			c.headers = make(map[string]any, len(h))
		}
		c.sharedHeader = false
	}
	maps.Copy(c.headers, h)
}

// WithPriority sets the message priority (0 to 255; the queue needs
// MaxPriority, and the broker caps the priority at it). On AMQP a higher
// number is served first. On Redis, as in Kombu, priorities fall in buckets
// 0, 3, 6 and 9 and a LOWER number is served first: the opposite order.
func WithPriority(p uint8) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.Priority = p })
}

// WithExpiration makes the broker drop (or dead-letter) the message if it is
// not consumed within d. It travels as integer milliseconds, as Kombu sends it.
func WithExpiration(d time.Duration) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.Expiration = d })
}

// WithDeliveryMode sets Persistent (the default) or Transient delivery.
func WithDeliveryMode(m DeliveryMode) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.DeliveryMode = uint8(m) })
}

// WithMandatory makes Publish fail with ErrUnroutable when no queue is bound
// to receive the message, instead of the broker dropping it.
func WithMandatory() PublishOption {
	return publishOption(func(c *publishConfig) { c.mandatory = true })
}

// WithUnroutableWarning logs a warning when a message reaches no queue and
// the broker drops it, once per exchange and routing key on the connection,
// without making Publish wait or fail (WithMandatory makes it fail
// instead, and takes precedence). Publishing costs nothing more: the
// in-process broker and Redis know where a message went as they route it,
// and RabbitMQ returns the message, which the connection reads in the
// background. Transports without mandatory publishing cannot tell, and do
// not warn. Generated producers set it.
func WithUnroutableWarning() PublishOption {
	return publishOption(func(c *publishConfig) { c.warnDropped = true })
}

// WithReplyTo sets the reply_to property: where a reply should be sent.
func WithReplyTo(queue string) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.ReplyTo = queue })
}

// WithCorrelationID sets the correlation_id property.
func WithCorrelationID(id string) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.CorrelationID = id })
}

// WithMessageID sets the message_id property.
func WithMessageID(id string) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.MessageID = id })
}

// WithTimestamp sets the timestamp property.
func WithTimestamp(t time.Time) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.Timestamp = t })
}

// WithType sets the type property. Generated producers set it to the rpc
// method's full name.
func WithType(t string) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.Type = t })
}

// WithAppID sets the app_id property.
func WithAppID(id string) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.AppID = id })
}

// WithUserID sets the user_id property. RabbitMQ checks it against the
// connection's user.
func WithUserID(id string) PublishOption {
	return publishOption(func(c *publishConfig) { c.props.UserID = id })
}

// NewProducer returns a producer on conn. Options set its defaults.
func NewProducer(conn *Connection, opts ...ProducerOption) *Producer {
	return (&Producer{conn: conn, confirms: true}).With(opts...)
}

// With returns a producer with p's defaults and connection, and opts
// applied on top. p is unchanged. Generated producers keep one per route,
// with the route's options, so that publishing through them does no option
// processing at all.
func (p *Producer) With(opts ...ProducerOption) *Producer {
	q := *p
	for _, o := range opts {
		o.applyProducer(&q)
	}
	// Publish copies the defaults per call; the headers map stays shared and
	// is copied before any write.
	q.defaults.sharedHeader = q.defaults.headers != nil
	return &q
}

// Publish serializes body, compresses it if asked, and publishes it. With
// confirms on (the default) it returns nil only once the broker has the
// message.
//
// A body is serialized with the serializer the options name; without one,
// []byte is sent raw (application/data), a string as text/plain, and any
// other value as JSON.
func (p *Producer) Publish(ctx context.Context, body any, opts ...PublishOption) error {
	// Without options the defaults are used in place: nothing writes to
	// them, and copying them would cost an allocation on every publish.
	cfg := &p.defaults
	if len(opts) > 0 {
		cfg = p.withOptions(opts)
		defer releaseConfig(cfg)
	}
	if cfg.batch != nil {
		pub := new(transport.Publishing)
		if err := p.prepare(pub, cfg, body); err != nil {
			return err
		}
		if err := p.declareOn(ctx, p.conn.session(), cfg.exchange); err != nil {
			return err
		}
		// A raw body is the caller's slice, which the caller may reuse as soon
		// as Publish returns; the batch holds it until Send, so it keeps a copy.
		if !pub.BodyOwned && aliases(body, pub.Body) {
			pub.Body, pub.BodyOwned = bytes.Clone(pub.Body), true
		}
		if p.conn.intercept != nil {
			return p.conn.interceptPublish(ctx, p, cfg, pub, viaBatch, false)
		}
		return cfg.batch.add(p.conn, pub)
	}
	// Drivers do not keep a Publishing once Publish has returned, so one
	// serves many publishes.
	pub := publishingPool.Get().(*transport.Publishing)
	defer func() {
		*pub = transport.Publishing{}
		publishingPool.Put(pub)
	}()
	if err := p.prepare(pub, cfg, body); err != nil {
		return err
	}
	if p.conn.intercept != nil {
		return p.conn.interceptPublish(ctx, p, cfg, pub, viaProducer, false)
	}
	return p.send(ctx, cfg, pub)
}

// send publishes a prepared message. A publish that meets a lost
// connection waits for the next one (bounded by ctx) and is made again: at
// least once, never silently dropped. Without confirms the broker may hold
// a first copy already.
func (p *Producer) send(ctx context.Context, cfg *publishConfig, pub *transport.Publishing) error {
	for {
		s := p.conn.session()
		err := p.publishOn(ctx, s, cfg.exchange, pub)
		if err == nil || !p.conn.lostConnection(s, err) {
			return err
		}
		p.conn.logger.Warn("kombu: publish met a lost connection; waiting to publish again", "error", err)
		if _, werr := p.conn.nextSession(ctx, s); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// publishOn declares what the producer publishes to (once per session) and
// publishes pub on session s.
func (p *Producer) publishOn(ctx context.Context, s *session, ex *Exchange, pub *transport.Publishing) error {
	if err := p.declareOn(ctx, s, ex); err != nil {
		return err
	}
	if err := s.tc.Publish(ctx, pub); err != nil {
		return p.conn.op(describePublish(pub), err)
	}
	return nil
}

// declareOn declares ex, then the producer's WithDeclare entities, unless
// they were declared on session s; both are cached, so a publish costs a
// map lookup and an atomic load.
func (p *Producer) declareOn(ctx context.Context, s *session, ex *Exchange) error {
	if ex != nil {
		if err := p.conn.declareExchange(ctx, *ex); err != nil {
			return err
		}
	}
	if p.declare != nil {
		return p.declare.ensure(ctx, p.conn, s)
	}
	return nil
}

// publishConfigPool holds the configurations of publishes made with
// options: a publishConfig is a few hundred bytes, and allocating and
// clearing one on every such publish (the generated producers pass a
// routing key) was a tenth of a memory:// publish. Nothing keeps one past
// Publish: PublishOption's method is unexported, so every option is one
// of ours, and interceptors see it only while their chain runs.
var publishConfigPool = sync.Pool{New: func() any { return new(publishConfig) }}

func releaseConfig(cfg *publishConfig) {
	*cfg = publishConfig{}
	publishConfigPool.Put(cfg)
}

func (p *Producer) withOptions(opts []PublishOption) *publishConfig {
	cfg := publishConfigPool.Get().(*publishConfig)
	*cfg = p.defaults
	for _, o := range opts {
		o.applyPublish(cfg)
	}
	return cfg
}

var publishingPool = sync.Pool{New: func() any { return new(transport.Publishing) }}

// prepare encodes the body into pub and fills in the properties Kombu
// always sets.
func (p *Producer) prepare(pub *transport.Publishing, cfg *publishConfig, body any) error {
	if cfg.mandatory {
		if err := p.conn.require(transport.FeatureMandatory, "mandatory publishing"); err != nil {
			return err
		}
	}
	if cfg.props.Priority > 0 {
		if err := p.conn.require(transport.FeaturePriority, "message priority"); err != nil {
			return err
		}
	}
	if cfg.props.Expiration < 0 {
		return fmt.Errorf("%w: negative expiration %v", ErrEncode, cfg.props.Expiration)
	}
	if cfg.props.Expiration > 0 {
		if err := p.conn.require(transport.FeatureTTL, "message expiration"); err != nil {
			return err
		}
	}
	data, ct, enc, owned, err := p.conn.codecs.encode(cfg, body)
	if err != nil {
		return err
	}
	if int64(len(data)) > p.conn.codecs.maxBodySize {
		// Refused here rather than by every consumer: they bound bodies the same way.
		return fmt.Errorf("%w: %w: a body of %d bytes exceeds the connection's limit of %d (WithMaxBodySize)",
			ErrEncode, ErrLimitExceeded, len(data), p.conn.codecs.maxBodySize)
	}
	headers := cfg.headers
	if cfg.compression != "" {
		z, err := p.conn.codecs.compressor(cfg.compression)
		if err != nil {
			return err
		}
		if data, err = z.Compress(data); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrEncode, z.Name(), err)
		}
		owned = isBuiltinCompressor(z)
		headers = maps.Clone(headers)
		if headers == nil {
			headers = make(map[string]any, 1)
		}
		headers["compression"] = z.ContentType()
	}
	*pub = transport.Publishing{
		RoutingKey:       cfg.routingKey,
		Mandatory:        cfg.mandatory,
		NotifyUnroutable: cfg.warnDropped && !cfg.mandatory,
		Confirm:          p.confirms && p.conn.features.Has(transport.FeatureConfirms),
		Body:             data,
		BodyOwned:        owned,
		Headers:          headers,
		Properties:       cfg.props,
	}
	pub.ContentType, pub.ContentEncoding = ct, enc
	if cfg.exchange != nil {
		pub.Exchange = cfg.exchange.Name
		if pub.DeliveryMode == 0 {
			pub.DeliveryMode = uint8(cfg.exchange.DeliveryMode)
		}
	}
	if pub.DeliveryMode == 0 {
		pub.DeliveryMode = transport.Persistent
	}
	return p.applyDelay(pub, cfg)
}

// encode serializes a body as cfg says and returns it with its content type
// and encoding, and whether the bytes are new, made for this message alone
// (see transport.Publishing.BodyOwned): what the built-in serializers
// return is, unless it is the caller's own []byte passed through; what a
// custom serializer returns may be a buffer it reuses.
func (c *codecs) encode(cfg *publishConfig, body any) (data []byte, contentType, encoding string, owned bool, err error) {
	if cfg.contentType != "" {
		if data, err = (codec.Raw{}).Marshal(body); err != nil {
			return nil, "", "", false, fmt.Errorf("%w: %v", ErrEncode, err)
		}
		encoding = cfg.encoding
		if encoding == "" {
			encoding = "binary"
		}
		return data, cfg.contentType, encoding, !aliases(body, data), nil
	}
	name := cfg.serializer
	if name == "" {
		switch body.(type) {
		case []byte:
			name = "raw"
		case string:
			name = "text"
		default:
			name = "json"
		}
	}
	s, err := c.serializer(name)
	if err != nil {
		return nil, "", "", false, err
	}
	if data, err = s.Marshal(body); err != nil {
		return nil, "", "", false, fmt.Errorf("%w: %s: %v", ErrEncode, name, err)
	}
	return data, s.ContentType(), s.ContentEncoding(), isBuiltinSerializer(s) && !aliases(body, data), nil
}

// isBuiltinSerializer reports whether s is one of kombu-go's serializers,
// each of which returns a new slice from Marshal (or, raw and text, the
// caller's own []byte, which aliases tells).
func isBuiltinSerializer(s Serializer) bool {
	switch s.(type) {
	case codec.JSON, codec.Protobuf, codec.ProtoJSON, codec.Msgpack, codec.YAML, codec.Raw, codec.Text:
		return true
	}
	return false
}

// isBuiltinCompressor reports whether z is one of kombu-go's compressors,
// each of which returns a new slice from Compress.
func isBuiltinCompressor(z Compressor) bool {
	switch z.(type) {
	case *codec.Zlib, *codec.Bzip2, *codec.LZMA, *codec.Brotli, *codec.Zstd:
		return true
	}
	return false
}

// aliases reports whether data is the caller's []byte body (raw and text
// pass it through).
func aliases(body any, data []byte) bool {
	b, ok := body.([]byte)
	return ok && len(b) > 0 && len(data) > 0 && &b[0] == &data[0]
}

func describePublish(p *transport.Publishing) string {
	ex := p.Exchange
	if ex == "" {
		ex = "(default)"
	}
	return fmt.Sprintf("publish to exchange %s with key %q", ex, p.RoutingKey)
}
