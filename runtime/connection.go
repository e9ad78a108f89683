package kombu

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	// The in-process broker is always available, so memory:// needs no
	// import. Every other transport is imported by the application.
	_ "github.com/kombu-go/kombu/transports/memory"
)

// Connection is a connection to a broker, made with Dial. It is safe for
// concurrent use by many producers and consumers.
type Connection struct {
	tc       transport.Conn
	url      string // masked
	features transport.Features
	logger   *slog.Logger
	codecs   *codecs

	// declareTimeout bounds declarations made by calls that take no
	// context, such as NewConsumer.
	declareTimeout time.Duration

	// declared caches the exchanges this connection has declared, as
	// Kombu's declared_entities does, so producers do not redeclare on every
	// publish.
	declared sync.Map // exchange name → struct{}

	replies *Producer    // publishes Message.Reply answers
	replyMu sync.Mutex   // guards router
	router  *replyRouter // set up by the first Call
}

// DialOption configures Dial.
type DialOption func(*dialConfig)

type dialConfig struct {
	logger         *slog.Logger
	heartbeat      time.Duration
	connectTimeout time.Duration
	tls            *tls.Config
	name           string
	serializers    []Serializer
	compressors    []Compressor
	maxBodySize    int64
	declareTimeout time.Duration
}

// WithLogger sets where the connection and everything made from it log.
// The default discards log records.
func WithLogger(l *slog.Logger) DialOption { return func(c *dialConfig) { c.logger = l } }

// WithHeartbeat sets the heartbeat interval on transports that have one.
func WithHeartbeat(d time.Duration) DialOption { return func(c *dialConfig) { c.heartbeat = d } }

// WithConnectTimeout bounds each connection attempt.
func WithConnectTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.connectTimeout = d }
}

// WithTLSConfig sets the TLS configuration for amqps:// and rediss:// URLs.
// Without it those schemes verify the server against the system roots.
func WithTLSConfig(cfg *tls.Config) DialOption { return func(c *dialConfig) { c.tls = cfg } }

// WithConnectionName names the connection in the broker's management UI.
func WithConnectionName(name string) DialOption { return func(c *dialConfig) { c.name = name } }

// WithSerializers adds serializers to the connection's registry, next to the
// built-in json, protobuf, raw and text. A serializer with a built-in's name
// or content type replaces it on this connection.
func WithSerializers(s ...Serializer) DialOption {
	return func(c *dialConfig) { c.serializers = append(c.serializers, s...) }
}

// WithCompressors adds compressors to the connection's registry.
func WithCompressors(z ...Compressor) DialOption {
	return func(c *dialConfig) { c.compressors = append(c.compressors, z...) }
}

// WithMaxBodySize bounds the size of a decompressed message body
// (DefaultMaxBodySize by default); math.MaxInt64 means no bound. A larger
// body fails with ErrLimitExceeded.
func WithMaxBodySize(n int64) DialOption { return func(c *dialConfig) { c.maxBodySize = n } }

// WithDeclareTimeout bounds declarations made by calls that take no
// context, such as NewConsumer (30 seconds by default).
func WithDeclareTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.declareTimeout = d }
}

// Dial connects to the broker at url. The URL takes Kombu's forms:
//
//	memory://                          the in-process broker (always available)
//	amqp://user:pass@host:5672//vhost  RabbitMQ (import transports/amqp)
//
// A ";"-separated list names alternates, tried in order until one connects.
func Dial(ctx context.Context, url string, opts ...DialOption) (*Connection, error) {
	cfg := dialConfig{maxBodySize: DefaultMaxBodySize, declareTimeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.maxBodySize <= 0 {
		return nil, fmt.Errorf("kombu: WithMaxBodySize(%d): the limit must be positive (math.MaxInt64 for none)", cfg.maxBodySize)
	}
	urls, err := transport.ParseList(url)
	if err != nil {
		return nil, err
	}
	codecs, err := newCodecs(cfg.serializers, cfg.compressors, cfg.maxBodySize)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, u := range urls {
		drv, err := lookupDriver(u.Scheme)
		if err != nil {
			return nil, err
		}
		tc, err := drv.Open(ctx, u, transport.Config{
			Logger:         cfg.logger,
			Heartbeat:      cfg.heartbeat,
			ConnectTimeout: cfg.connectTimeout,
			TLS:            cfg.tls,
			ConnectionName: cfg.name,
		})
		if err != nil {
			cfg.logger.Warn("kombu: connect failed", "url", u.String(), "error", err)
			errs = append(errs, &OperationalError{Op: "connect", URL: u.String(), Err: err})
			if ctx.Err() != nil {
				break
			}
			continue
		}
		cfg.logger.Debug("kombu: connected", "url", u.String())
		c := &Connection{
			tc:             tc,
			url:            u.String(),
			features:       tc.Features(),
			logger:         cfg.logger,
			codecs:         codecs,
			declareTimeout: cfg.declareTimeout,
		}
		c.replies = NewProducer(c)
		return c, nil
	}
	return nil, errors.Join(errs...)
}

func lookupDriver(scheme string) (transport.Driver, error) {
	if d, ok := transport.Lookup(scheme); ok {
		return d, nil
	}
	registered := strings.Join(transport.Schemes(), ", ")
	if pkg, ok := transport.DriverPackage(scheme); ok {
		return nil, fmt.Errorf("%w %q: import _ %q to register it (registered: %s)",
			ErrUnknownScheme, scheme, pkg, registered)
	}
	return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownScheme, scheme, registered)
}

// URL returns the broker URL this connection uses, with the password masked
// as "**", as Kombu's as_uri() does.
func (c *Connection) URL() string { return c.url }

// Close closes the connection. Messages its consumers hold unsettled go back
// to their queues. Closing twice is not an error.
func (c *Connection) Close() error {
	err := c.tc.Close()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return c.op("close", err)
}

// Done is closed when the connection is closed or lost.
func (c *Connection) Done() <-chan struct{} { return c.tc.Done() }

// op wraps a transport error with the operation and the masked URL.
func (c *Connection) op(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("kombu: %s: %w", what, err)
	}
	return &OperationalError{Op: what, URL: c.url, Err: err}
}

// declareExchange declares ex unless the broker owns it, it is marked
// NoDeclare, or this connection declared it before.
func (c *Connection) declareExchange(ctx context.Context, ex Exchange) error {
	if ex.isBuiltin() || ex.NoDeclare {
		return nil
	}
	if _, done := c.declared.Load(ex.Name); done {
		return nil
	}
	if err := c.require(exchangeFeature(ex.kind()), "exchange type "+string(ex.kind())); err != nil {
		return err
	}
	if err := c.tc.DeclareExchange(ctx, ex.toTransport()); err != nil {
		return c.op("declare exchange "+ex.Name, err)
	}
	// An auto-delete exchange can vanish behind our back, so only durable
	// lifetimes are cached, as Kombu's can_cache_declaration says.
	if !ex.AutoDelete {
		c.declared.Store(ex.Name, struct{}{})
	}
	return nil
}

// forget drops an exchange from the declared cache, after it was deleted.
func (c *Connection) forget(exchange string) { c.declared.Delete(exchange) }

func (c *Connection) bind(ctx context.Context, dest string, destIsExchange bool, b Binding) error {
	if destIsExchange {
		if err := c.require(transport.FeatureExchangeBindings, "exchange-to-exchange bindings"); err != nil {
			return err
		}
	}
	err := c.tc.Bind(ctx, transport.Binding{
		Source: b.Exchange, Destination: dest, DestinationIsExchange: destIsExchange,
		RoutingKey: b.RoutingKey, Arguments: b.Arguments,
	})
	return c.op(fmt.Sprintf("bind %s to exchange %s with key %q", dest, b.Exchange, b.RoutingKey), err)
}

func (c *Connection) unbind(ctx context.Context, dest string, destIsExchange bool, b Binding) error {
	err := c.tc.Unbind(ctx, transport.Binding{
		Source: b.Exchange, Destination: dest, DestinationIsExchange: destIsExchange,
		RoutingKey: b.RoutingKey, Arguments: b.Arguments,
	})
	return c.op(fmt.Sprintf("unbind %s from exchange %s", dest, b.Exchange), err)
}

// require returns ErrNotSupported, naming what, unless the transport has f.
func (c *Connection) require(f transport.Features, what string) error {
	if c.features.Has(f) {
		return nil
	}
	return fmt.Errorf("%w: %s on %s", ErrNotSupported, what, c.url)
}

func exchangeFeature(t ExchangeType) transport.Features {
	switch t {
	case ExchangeTopic:
		return transport.FeatureTopic
	case ExchangeFanout:
		return transport.FeatureFanout
	case ExchangeHeaders:
		return transport.FeatureHeaders
	}
	return transport.FeatureDirect
}

// checkQueueFeatures refuses queue options the transport cannot honour,
// rather than letting them be ignored.
func (c *Connection) checkQueueFeatures(q Queue) error {
	checks := []struct {
		used bool
		f    transport.Features
		what string
	}{
		{q.MaxPriority > 0, transport.FeaturePriority, "queue priorities (MaxPriority)"},
		{q.MessageTTL > 0 || q.Expires > 0, transport.FeatureTTL, "queue TTLs (MessageTTL, Expires)"},
		{q.DeadLetterExchange != "", transport.FeatureDeadLetter, "dead-letter exchanges"},
		{q.MaxLength > 0 || q.MaxLengthBytes > 0, transport.FeatureMaxLength, "queue length limits"},
		{q.Type == QueueQuorum || q.Type == QueueStream || q.DeliveryLimit > 0, transport.FeatureQueueTypes, "queue type " + string(q.Type)},
	}
	for _, ch := range checks {
		if ch.used {
			if err := c.require(ch.f, ch.what); err != nil {
				return fmt.Errorf("queue %s: %w", q.describe(), err)
			}
		}
	}
	return nil
}

// declareContext bounds declarations made on behalf of calls that take no
// context.
func (c *Connection) declareContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.declareTimeout)
}
