package kombu

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	// The in-process broker is always available, so memory:// needs no
	// import. Every other transport is imported by the application.
	_ "github.com/kombu-go/kombu/transports/memory"
)

// Connection is a connection to a broker, made with Dial. It is safe for
// concurrent use by many producers and consumers.
type Connection struct {
	// state is the current session. Recovery swaps in a new one after the
	// broker connection is lost; everything else reads it per operation.
	state    atomic.Pointer[session]
	urls     []*transport.URL
	cfg      dialConfig
	features transport.Features
	logger   *slog.Logger
	codecs   *codecs

	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when the connection is closed for good
	finalErr  error         // why, when it was not Close; set before done closes

	reviveMu sync.Mutex
	revived  chan struct{} // closed, and replaced, at each new session

	// Sessions replaced after a loss are closed in the background (see
	// retire); Close waits for them.
	retireMu sync.Mutex
	retiring sync.WaitGroup
	noRetire bool // Close has begun waiting: retire closes in place

	// declareTimeout bounds declarations made by calls that take no
	// context, such as NewConsumer.
	declareTimeout time.Duration

	// declared caches the exchanges this connection has declared, as
	// Kombu's declared_entities does, so producers do not redeclare on every
	// publish.
	declared sync.Map // exchange name → struct{}

	// dropped holds the routes (exchange and routing key) on which a
	// WithUnroutableWarning message was dropped and a warning logged.
	droppedMu sync.Mutex
	dropped   map[[2]string]struct{}

	replies *Producer    // publishes Message.Reply answers
	replyMu sync.Mutex   // guards router
	router  *replyRouter // set up by the first Call

	intercept *interceptors // nil without WithInterceptors: nothing to wrap
}

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
	retry          *RetryPolicy // nil: one round over the URLs at Dial
	failover       FailoverStrategy
	noRecovery     bool
	interceptors   []Interceptor
}

// session is one transport connection. gen numbers sessions from 1, so that
// what came from an earlier one (a delivery tag, above all) is known stale.
type session struct {
	tc     transport.Conn
	gen    uint64
	url    string // masked
	scheme string
	idx    int // which of the connection's URLs it is on
}

// WithLogger sets where the connection and everything made from it log.
// The default discards log records.
func WithLogger(l *slog.Logger) DialOption { return dialOption(func(c *dialConfig) { c.logger = l }) }

// WithHeartbeat sets the heartbeat interval on transports that have one.
func WithHeartbeat(d time.Duration) DialOption {
	return dialOption(func(c *dialConfig) { c.heartbeat = d })
}

// WithConnectTimeout bounds each connection attempt.
func WithConnectTimeout(d time.Duration) DialOption {
	return dialOption(func(c *dialConfig) { c.connectTimeout = d })
}

// WithTLSConfig sets the TLS configuration for amqps:// and rediss:// URLs.
// Without it those schemes verify the server against the system roots.
func WithTLSConfig(cfg *tls.Config) DialOption {
	return dialOption(func(c *dialConfig) { c.tls = cfg })
}

// WithConnectionName names the connection in the broker's management UI.
func WithConnectionName(name string) DialOption {
	return dialOption(func(c *dialConfig) { c.name = name })
}

// WithCustomSerializers adds serializers to the connection's registry, next to the
// built-in json, protojson, protobuf, msgpack, yaml, raw and text. A
// serializer with a built-in's name or content type replaces it on this
// connection.
func WithCustomSerializers(s ...Serializer) DialOption {
	return dialOption(func(c *dialConfig) { c.serializers = append(c.serializers, s...) })
}

// WithCustomCompressors adds compressors to the connection's registry, next to
// the built-in zlib (gzip), bzip2, lzma (xz), brotli and zstd.
func WithCustomCompressors(z ...Compressor) DialOption {
	return dialOption(func(c *dialConfig) { c.compressors = append(c.compressors, z...) })
}

// WithMaxBodySize bounds the size of a message body, as published and as
// received (after decompression), DefaultMaxBodySize by default;
// math.MaxInt64 means no bound. A larger body fails with ErrLimitExceeded:
// Publish refuses it before sending, and a consumer rejects it.
func WithMaxBodySize(n int64) DialOption {
	return dialOption(func(c *dialConfig) { c.maxBodySize = n })
}

// WithDeclareTimeout bounds declarations made by calls that take no
// context, such as NewConsumer (30 seconds by default).
func WithDeclareTimeout(d time.Duration) DialOption {
	return dialOption(func(c *dialConfig) { c.declareTimeout = d })
}

// WithReconnectPolicy makes Dial, and reconnection after a lost connection,
// retry as policy says (see RetryPolicy; its zero value is Kombu's default,
// retrying until the context ends). Without it Dial tries each URL once, and
// reconnection retries with the zero policy until the connection is closed.
func WithReconnectPolicy(policy RetryPolicy) DialOption {
	return dialOption(func(c *dialConfig) { c.retry = &policy })
}

// WithFailoverStrategy sets the order in which a ";"-separated URL list is
// tried: RoundRobin (the default) or Shuffle.
func WithFailoverStrategy(s FailoverStrategy) DialOption {
	return dialOption(func(c *dialConfig) { c.failover = s })
}

// WithoutRecovery turns automatic recovery off: when the broker connection
// is lost, the Connection is done (Done closes, Err says why) and every
// operation fails with ErrClosed.
func WithoutRecovery() DialOption { return dialOption(func(c *dialConfig) { c.noRecovery = true }) }

// Dial connects to the broker at url. The URL takes Kombu's forms:
//
//	memory://                          the in-process broker (always available)
//	amqp://user:pass@host:5672//vhost  RabbitMQ (import transports/amqp)
//	redis://host:6379/0                Redis (import transports/redis)
//
// A ";"-separated list names alternates, tried in order until one connects
// (the nodes of a RabbitMQ cluster, say); after a loss, reconnecting starts
// with the URL after the one lost.
func Dial(ctx context.Context, url string, opts ...DialOption) (*Connection, error) {
	cfg := dialConfig{maxBodySize: DefaultMaxBodySize, declareTimeout: 30 * time.Second}
	for _, o := range opts {
		o.applyDial(&cfg)
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
	urls = mergeSentinels(urls)
	codecs, err := newCodecs(cfg.serializers, cfg.compressors, cfg.maxBodySize)
	if err != nil {
		return nil, err
	}
	c := &Connection{
		urls:           urls,
		cfg:            cfg,
		logger:         cfg.logger,
		codecs:         codecs,
		declareTimeout: cfg.declareTimeout,
		closing:        make(chan struct{}),
		done:           make(chan struct{}),
		revived:        make(chan struct{}),
		intercept:      newInterceptors(cfg.interceptors),
	}
	policy := NoRetry()
	if len(urls) > 1 {
		policy = RetryPolicy{MaxRetries: len(urls) - 1} // one round over the URLs
	}
	if cfg.retry != nil {
		policy = *cfg.retry
	}
	s, err := c.connect(ctx, policy, 1, 0)
	if err != nil {
		return nil, err
	}
	c.state.Store(s)
	c.features = s.tc.Features()
	c.replies = NewProducer(c)
	go c.supervise()
	return c, nil
}

// mergeSentinels turns Kombu's "sentinel://h1:26379;sentinel://h2:26379"
// into one URL: the list names the Sentinels of one Redis deployment, which
// the driver's failover client asks in turn, not alternate brokers. The
// other hosts go to the "sentinel" query option; query options merge.
func mergeSentinels(urls []*transport.URL) []*transport.URL {
	if len(urls) < 2 {
		return urls
	}
	for _, u := range urls {
		if u.Scheme != "sentinel" {
			return urls
		}
	}
	first := *urls[0]
	first.Query = maps.Clone(first.Query)
	for _, u := range urls[1:] {
		first.Query.Add("sentinel", u.HostPort("localhost", 26379))
		for k, vs := range u.Query {
			if _, set := first.Query[k]; !set {
				first.Query[k] = vs
			}
		}
	}
	return []*transport.URL{&first}
}

// connect opens a session on one of the URLs, retrying with policy. The
// round starts at URL first: reconnecting starts at the one after the URL
// just lost, as Kombu's round-robin failover does, so that a node that is
// cut off (which answers nothing, and costs a whole connect timeout to
// find out) is tried last rather than first.
func (c *Connection) connect(ctx context.Context, policy RetryPolicy, gen uint64, first int) (*session, error) {
	var s *session
	at := func(i int) int { return (i + first) % len(c.urls) }
	var refusedAt time.Time // first access refusal while reconnecting
	err := retry(ctx, policy, len(c.urls), c.cfg.failover, func(ctx context.Context, i int) error {
		i = at(i)
		u := c.urls[i]
		drv, err := lookupDriver(u.Scheme)
		if err != nil {
			return err
		}
		tc, err := drv.Open(ctx, u, transport.Config{
			Logger:         c.cfg.logger,
			Heartbeat:      c.cfg.heartbeat,
			ConnectTimeout: c.cfg.connectTimeout,
			TLS:            c.cfg.tls,
			ConnectionName: c.cfg.name,
			Unroutable:     c.unroutable,
		})
		if err != nil {
			oe := &OperationalError{Op: "connect", URL: u.String(), Err: err}
			if gen > 1 && errors.Is(err, transport.ErrAccessRefused) {
				// Reconnecting with credentials that were accepted before:
				// a RabbitMQ node that is starting (a restarted cluster)
				// takes connections before its user database is ready and
				// refuses them (403, seen in chaos test 17c). Such a
				// refusal is retried under the reconnect policy for
				// refusedGrace after the first one; past that it is final.
				if refusedAt.IsZero() {
					refusedAt = time.Now()
				}
				if time.Since(refusedAt) < refusedGrace {
					return retryAnyway{oe}
				}
			}
			return oe
		}
		s = &session{tc: tc, gen: gen, url: u.String(), scheme: u.Scheme, idx: i}
		c.logger.Info("kombu: connected", "url", s.url)
		return nil
	}, func(err error, next int, wait time.Duration) {
		c.logger.Warn("kombu: connect failed; retrying", "error", err, "next_url", c.urls[at(next)].String(), "wait", wait)
	})
	return s, err
}

// refusedGrace is how long reconnecting retries access refusals (see
// connect): long enough for a RabbitMQ node to finish starting.
const refusedGrace = time.Minute

// retryAnyway marks an error that retry retries although Recoverable says
// no; it still unwraps to its cause for the caller.
type retryAnyway struct{ error }

func (e retryAnyway) Unwrap() error { return e.error }

// supervise replaces a lost session with a new one, until the connection
// is closed or reconnecting fails for good.
func (c *Connection) supervise() {
	for {
		s := c.state.Load()
		select {
		case <-c.closing:
			return
		case <-s.tc.Done():
		}
		select {
		case <-c.closing:
			return // the session ended because Close closed it
		default:
		}
		lost := s.tc.Err()
		if lost == nil {
			lost = ErrClosed
		}
		if c.cfg.noRecovery {
			c.finish(fmt.Errorf("kombu: connection to %s lost: %w", s.url, lost))
			return
		}
		c.logger.Warn("kombu: connection lost; reconnecting", "url", s.url, "error", lost)
		// Everything declared on the old session may be gone (auto-delete,
		// exclusive, a restarted broker): declare again on first use.
		c.declared.Clear()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-c.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		policy := RetryPolicy{}
		if c.cfg.retry != nil {
			policy = *c.cfg.retry
		}
		next, err := c.connect(ctx, policy, s.gen+1, s.idx+1)
		cancel()
		if err != nil {
			c.finish(fmt.Errorf("kombu: reconnecting after %v: %w", lost, err))
			return
		}
		c.state.Store(next)
		select {
		case <-c.closing:
			// Close came while connecting, and may have closed the
			// session it found, the lost one, rather than this one.
			_ = next.tc.Close()
			c.retire(s)
			return
		default:
		}
		c.reviveMu.Lock()
		close(c.revived)
		c.revived = make(chan struct{})
		c.reviveMu.Unlock()
		c.logger.Info("kombu: connection revived", "url", next.url, "session", next.gen)
		c.retire(s)
	}
}

// retire closes a lost session's transport connection once a new session
// has replaced it. Most drivers have nothing left to do there; one that
// keeps state past a loss does: Redis sends the acknowledgements made
// while it was unreachable and puts back in their queues at once the
// messages still unsettled, which would otherwise wait for the visibility
// timeout.
func (c *Connection) retire(s *session) {
	closeIt := func() {
		if err := s.tc.Close(); err != nil && !errors.Is(err, ErrClosed) {
			c.logger.Warn("kombu: closing the lost connection", "url", s.url, "error", err)
		}
	}
	c.retireMu.Lock()
	defer c.retireMu.Unlock()
	if c.noRetire {
		closeIt()
		return
	}
	c.retiring.Add(1)
	go func() {
		defer c.retiring.Done()
		closeIt()
	}()
}

// finish marks the connection done for good.
func (c *Connection) finish(err error) {
	c.closeOnce.Do(func() {
		c.finalErr = err
		if err != nil {
			c.logger.Error("kombu: connection closed", "error", err)
		}
		close(c.closing)
		close(c.done)
	})
}

// session returns the current session.
func (c *Connection) session() *session { return c.state.Load() }

// transport returns the current transport connection.
func (c *Connection) transport() transport.Conn { return c.state.Load().tc }

// nextSession waits until the connection has a session newer than old, ctx
// ends or the connection is closed for good.
func (c *Connection) nextSession(ctx context.Context, old *session) (*session, error) {
	for {
		c.reviveMu.Lock()
		revived := c.revived
		c.reviveMu.Unlock()
		if s := c.state.Load(); s != old {
			return s, nil
		}
		select {
		case <-revived:
		case <-c.done:
			return nil, c.Err()
		case <-ctx.Done():
			return nil, fmt.Errorf("kombu: waiting for the connection to come back: %w", ctx.Err())
		}
	}
}

// lostConnection reports whether err means the session's connection is gone,
// so that the operation may be made again on the next session.
func (c *Connection) lostConnection(s *session, err error) bool {
	if c.cfg.noRecovery || !errors.Is(err, ErrClosed) {
		return false
	}
	// The driver may report the failure a moment before it marks the
	// connection dead: give it that moment.
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.closing:
		return false // closed by the application: nothing to wait for
	case <-s.tc.Done():
		return true
	case <-t.C:
		return false // a channel closed, not the connection
	}
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
	if guess, ok := transport.SuggestScheme(scheme); ok {
		hint := ""
		if _, registered := transport.Lookup(guess); !registered {
			if pkg, ok := transport.DriverPackage(guess); ok {
				hint = fmt.Sprintf(", with import _ %q to register it", pkg)
			}
		}
		return nil, fmt.Errorf("%w %q: did you mean %q%s? (registered: %s)",
			ErrUnknownScheme, scheme, guess, hint, registered)
	}
	return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownScheme, scheme, registered)
}

// URL returns the broker URL this connection uses, with the password masked
// as "**", as Kombu's as_uri() does.
func (c *Connection) URL() string { return c.session().url }

// Close closes the connection. Messages its consumers hold unsettled go back
// to their queues. Closing twice is not an error.
func (c *Connection) Close() error {
	c.finish(nil)
	err := c.transport().Close()
	c.retireMu.Lock()
	c.noRetire = true
	c.retireMu.Unlock()
	c.retiring.Wait()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return c.op("close", err)
}

// Done is closed when the connection is closed for good: by Close, or, when
// recovery is off or gives up, by the loss of the broker connection.
func (c *Connection) Done() <-chan struct{} { return c.done }

// Lost returns a channel closed when the current broker connection is lost
// (or closed). With recovery on, Revived says when a new one replaces it.
func (c *Connection) Lost() <-chan struct{} { return c.session().tc.Done() }

// Revived returns a channel closed when a new broker connection replaces
// the current one after a loss.
func (c *Connection) Revived() <-chan struct{} {
	c.reviveMu.Lock()
	defer c.reviveMu.Unlock()
	return c.revived
}

// Err says why the connection is done: nil while it is open, ErrClosed after
// Close, and why it was lost when recovery gave up or was turned off.
func (c *Connection) Err() error {
	select {
	case <-c.done:
		if c.finalErr == nil {
			return ErrClosed
		}
		return c.finalErr
	default:
		return nil
	}
}

// op wraps a transport error with the operation and the masked URL.
func (c *Connection) op(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("kombu: %s: %w", what, err)
	}
	return &OperationalError{Op: what, URL: c.URL(), Err: err}
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
	if err := c.transport().DeclareExchange(ctx, ex.toTransport()); err != nil {
		return c.op("declare exchange "+ex.Name, err)
	}
	// An auto-delete exchange can vanish behind our back, so only durable
	// lifetimes are cached, as Kombu's can_cache_declaration says.
	if !ex.AutoDelete {
		c.declared.Store(ex.Name, struct{}{})
	}
	return nil
}

// maxDropped bounds the routes remembered as warned about. Past it they are
// forgotten, and warned about again.
const maxDropped = 1024

// unroutable logs that a message published with WithUnroutableWarning
// reached no queue, once per exchange and routing key. The driver calls it
// (transport.Config.Unroutable), perhaps from its reading goroutine.
func (c *Connection) unroutable(exchange, routingKey, reason string) {
	route := [2]string{exchange, routingKey}
	c.droppedMu.Lock()
	_, warned := c.dropped[route]
	if !warned {
		if c.dropped == nil || len(c.dropped) >= maxDropped {
			c.dropped = make(map[[2]string]struct{})
		}
		c.dropped[route] = struct{}{}
	}
	c.droppedMu.Unlock()
	if warned {
		return
	}
	c.logger.Warn("kombu: a published message reached no queue, so the broker dropped it; "+
		"further messages dropped on this route are not logged (WithMandatory makes such a publish fail instead)",
		"exchange", exchange, "routing_key", routingKey, "reason", reason)
}

// forget drops an exchange from the declared cache, after it was deleted.
func (c *Connection) forget(exchange string) { c.declared.Delete(exchange) }

func (c *Connection) bind(ctx context.Context, dest string, destIsExchange bool, b Binding) error {
	if destIsExchange {
		if err := c.require(transport.FeatureExchangeBindings, "exchange-to-exchange bindings"); err != nil {
			return err
		}
	}
	err := c.transport().Bind(ctx, transport.Binding{
		Source: b.Exchange, Destination: dest, DestinationIsExchange: destIsExchange,
		RoutingKey: b.RoutingKey, Arguments: b.Arguments,
	})
	return c.op(fmt.Sprintf("bind %s to exchange %s with key %q", dest, b.Exchange, b.RoutingKey), err)
}

func (c *Connection) unbind(ctx context.Context, dest string, destIsExchange bool, b Binding) error {
	err := c.transport().Unbind(ctx, transport.Binding{
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
	return fmt.Errorf("%w: %s on %s", ErrNotSupported, what, c.URL())
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
