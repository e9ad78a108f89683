package virtual

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Config configures a connection made by NewConn.
type Config struct {
	// Name names the transport in errors and logs: "filesystem".
	Name string
	// Logger receives what the connection has to say; nil discards it.
	Logger *slog.Logger
	// PollInterval is how long a consumer whose queues are empty waits
	// before it looks again (Kombu's polling_interval), or before it looks
	// anyway when the store is a Waker. 0: one second, Kombu's default.
	PollInterval time.Duration
	// Unroutable is transport.Config.Unroutable.
	Unroutable func(exchange, routingKey, reason string)
}

// DefaultPollInterval is Kombu's polling_interval for virtual transports.
const DefaultPollInterval = time.Second

// features are what the connection gives every store: Kombu's exchange
// types, publishes that return once stored, mandatory publishing (routing
// happens here, so an unroutable message is known at once) and
// dead-lettering as Redis's driver emulates it.
const features = transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout |
	transport.FeatureConfirms | transport.FeatureMandatory | transport.FeatureDeadLetter |
	transport.FeatureLivePrefetch

// opTimeout bounds what the connection does on its own behalf (settling,
// restoring, dead-lettering), which has no caller's context.
const opTimeout = 30 * time.Second

// queueDecl is a queue declared on this connection.
type queueDecl struct {
	exclusive bool
	dlx       *DeadLetter // nil: none
}

// conn is a transport.Conn over a Store.
type conn struct {
	store        Store
	waker        Waker       // nil: poll
	delayer      Delayer     // nil: no delayed delivery
	broadcaster  Broadcaster // nil: fanout stores a copy per queue
	quick        QuickAcker  // nil: Ack with a context and a timeout
	name         string
	log          *slog.Logger
	poll         time.Duration
	onUnroutable func(exchange, routingKey, reason string)

	exchanges *Exchanges

	mu       sync.Mutex
	closed   bool
	queues   map[string]queueDecl
	subs     map[*subscription]struct{}
	lastCtag uint64

	gets     *scope         // Get's deliveries
	settling sync.WaitGroup // settlements under way, which Close waits for
	done     chan struct{}  // closed by Close
	finished chan struct{}  // closed once Close has returned
}

var (
	_ transport.Conn           = (*conn)(nil)
	_ transport.BatchPublisher = (*conn)(nil)
)

// NewConn returns a connection that keeps Kombu's virtual transport over
// the store, as Kombu's virtual Channel does over a transport's storage
// methods:
//
//   - Exchanges live in the connection's memory, with their types
//     (direct, topic, fanout; headers exchanges are refused); an exchange
//     it never declared is direct, as in Kombu. Bindings are the store's
//     tables, read at every publish through an exchange and matched as
//     Kombu matches them (Routes). The default exchange "" routes by queue
//     name, to a queue that need not exist (a virtual queue is made by its
//     messages).
//   - Every publish writes Kombu's envelope (AppendEnvelopeHead), with a
//     delivery tag of its own per queue, and returns once the store has
//     it: Publishing.Confirm is honoured by every publish, and Mandatory
//     fails at once with transport.ErrUnroutable when no queue matched.
//     Message priorities and expirations are refused with
//     transport.ErrNotSupported, as are TTL, max-length and priority queue
//     arguments.
//   - Consumers take from their queues in turn (round robin, as Kombu),
//     up to their prefetch of unsettled deliveries in all, and when the
//     queues are empty wait for the store's wake-up (Waker) or poll every
//     Config.PollInterval.
//   - Ack acks the message in the store; Reject with requeue restores it
//     marked redelivered; Reject without requeue dead-letters it, where
//     this connection declared its queue with x-dead-letter-exchange, as
//     RabbitMQ does (WithDeath, the dead letter routed like a publish),
//     and acks it otherwise. Close restores every unsettled message
//     (delivered ones marked redelivered) and deletes the exclusive queues
//     it declared; a process that dies leaves its taken messages to the
//     store's recovery.
//   - DeleteQueue with ifUnused is refused (the store does not know other
//     processes' consumers); DeleteQueue ends this connection's consumers
//     of the queue.
//
// The connection owns the store and closes it when it closes.
func NewConn(store Store, cfg Config) transport.Conn {
	c := &conn{
		store:        store,
		name:         cfg.Name,
		log:          cfg.Logger,
		poll:         cfg.PollInterval,
		onUnroutable: cfg.Unroutable,
		exchanges:    NewExchanges(),
		queues:       map[string]queueDecl{},
		subs:         map[*subscription]struct{}{},
		done:         make(chan struct{}),
		finished:     make(chan struct{}),
	}
	c.quick, _ = store.(QuickAcker)
	if c.name == "" {
		c.name = "virtual"
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.poll <= 0 {
		c.poll = DefaultPollInterval
	}
	if w, ok := store.(Waker); ok {
		c.waker = w
	}
	if d, ok := store.(Delayer); ok {
		c.delayer = d
	}
	if b, ok := store.(Broadcaster); ok {
		c.broadcaster = b
	}
	c.gets = &scope{c: c}
	return c
}

func (c *conn) Features() transport.Features {
	if c.delayer != nil {
		return features | transport.FeatureDelay
	}
	return features
}

// errorf formats an error with the transport's name in front.
func (c *conn) errorf(format string, args ...any) error {
	return fmt.Errorf(c.name+": "+format, args...)
}

// wrap adds the transport's name and the operation to a store's error.
func (c *conn) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %s: %w", c.name, op, err)
}

// check fails once the connection is closed, or ctx is done.
func (c *conn) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return transport.ErrClosed
	}
	return nil
}

// DeclareExchange records the exchange in this connection's memory, as
// Kombu's virtual transport does: nothing is stored. A passive declaration
// succeeds if this connection declared the exchange or the store holds
// bindings for it.
func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if !ex.Passive {
		if err := c.exchanges.Declare(ex); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		return nil
	}
	if c.exchanges.Known(ex.Name) {
		return nil
	}
	bs, err := c.store.Bindings(ctx, ex.Name)
	if err != nil {
		return c.wrap("declare exchange "+ex.Name, err)
	}
	if len(bs) == 0 {
		return c.errorf("exchange %q: not declared on this connection and has no bindings: %w", ex.Name, transport.ErrNotFound)
	}
	return nil
}

// DeleteExchange forgets the exchange and deletes its table.
func (c *conn) DeleteExchange(ctx context.Context, name string, ifUnused bool) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if ifUnused {
		bs, err := c.store.Bindings(ctx, name)
		if err != nil {
			return c.wrap("delete exchange "+name, err)
		}
		if len(bs) > 0 {
			return c.errorf("exchange %q has %d bindings: %w", name, len(bs), transport.ErrInUse)
		}
	}
	if err := c.store.DeleteExchange(ctx, name); err != nil {
		return c.wrap("delete exchange "+name, err)
	}
	c.exchanges.Forget(name)
	return nil
}

// DeclareQueue declares the queue in the store. A passive declaration
// succeeds if the store says it exists or this connection declared it.
func (c *conn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	if err := c.check(ctx); err != nil {
		return transport.QueueInfo{}, err
	}
	if q.Passive {
		if q.Name == "" {
			return transport.QueueInfo{}, c.errorf("passive declaration of a queue without a name: %w", transport.ErrNotFound)
		}
		n, exists, err := c.store.Size(ctx, q.Name)
		if err != nil {
			return transport.QueueInfo{}, c.wrap("declare queue "+q.Name, err)
		}
		c.mu.Lock()
		_, declared := c.queues[q.Name]
		c.mu.Unlock()
		if !exists && !declared {
			return transport.QueueInfo{}, c.errorf("queue %q: does not exist and was not declared on this connection: %w", q.Name, transport.ErrNotFound)
		}
		return transport.QueueInfo{Name: q.Name, Messages: n}, nil
	}
	dlx, err := QueueArguments(q)
	if err != nil {
		return transport.QueueInfo{}, fmt.Errorf("%s: %w", c.name, err)
	}
	if q.Name == "" {
		q.Name = "amq.gen-" + NewDeliveryTag()
	}
	if err := c.store.DeclareQueue(ctx, q.Name); err != nil {
		return transport.QueueInfo{}, c.wrap("declare queue "+q.Name, err)
	}
	n, _, err := c.store.Size(ctx, q.Name)
	if err != nil {
		return transport.QueueInfo{}, c.wrap("declare queue "+q.Name, err)
	}
	c.mu.Lock()
	c.queues[q.Name] = queueDecl{exclusive: q.Exclusive, dlx: dlx}
	c.mu.Unlock()
	return transport.QueueInfo{Name: q.Name, Messages: n}, nil
}

// deadLetterFor returns the dead-letter configuration this connection
// declared the queue with, or nil.
func (c *conn) deadLetterFor(queue string) *DeadLetter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queues[queue].dlx
}

// DeleteQueue ends this connection's consumers of the queue and deletes it
// from the store. The store does not know the consumers of other
// processes, so ifUnused cannot be honoured and is refused.
func (c *conn) DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error) {
	if err := c.check(ctx); err != nil {
		return 0, err
	}
	if ifUnused {
		return 0, c.errorf("delete queue %q if unused: the store does not know a queue's consumers: %w", name, transport.ErrNotSupported)
	}
	if ifEmpty {
		n, _, err := c.store.Size(ctx, name)
		if err != nil {
			return 0, c.wrap("delete queue "+name, err)
		}
		if n > 0 {
			return 0, c.errorf("queue %q has %d messages: %w", name, n, transport.ErrInUse)
		}
	}
	if err := c.endConsumers(ctx, name); err != nil {
		return 0, err
	}
	n, err := c.store.DeleteQueue(ctx, name)
	if err != nil {
		return n, c.wrap("delete queue "+name, err)
	}
	c.mu.Lock()
	delete(c.queues, name)
	c.mu.Unlock()
	return n, nil
}

// endConsumers ends this connection's subscriptions to the queue, as a
// broker that knows its consumers cancels them when their queue goes, and
// waits until they have put back what they took but did not hand over, so
// that it is deleted with the rest.
func (c *conn) endConsumers(ctx context.Context, queue string) error {
	gone := c.errorf("queue %q was deleted: %w", queue, transport.ErrNotFound)
	var ended []*subscription
	c.mu.Lock()
	for s := range c.subs {
		if _, ok := s.tags[queue]; ok {
			s.end(gone)
			ended = append(ended, s)
		}
	}
	c.mu.Unlock()
	for _, s := range ended {
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// PurgeQueue removes the queue's ready messages from the store.
func (c *conn) PurgeQueue(ctx context.Context, name string) (int, error) {
	if err := c.check(ctx); err != nil {
		return 0, err
	}
	n, err := c.store.Purge(ctx, name)
	return n, c.wrap("purge queue "+name, err)
}

// Bind adds Kombu's binding row to the exchange's table: the routing key,
// the Python regular expression Kombu matches topic keys with (empty for
// other types) and the queue. The exchange's type is the one this
// connection declared it with (direct if it did not, as in Kombu).
func (c *conn) Bind(ctx context.Context, b transport.Binding) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if b.DestinationIsExchange {
		return c.errorf("exchange-to-exchange bindings: %w", transport.ErrNotSupported)
	}
	if len(b.Arguments) > 0 {
		return c.errorf("binding arguments %v: %w", slices.Sorted(maps.Keys(b.Arguments)), transport.ErrNotSupported)
	}
	if b.Destination == "" {
		return c.errorf("bind: no queue given")
	}
	source := b.Source
	if source == "" {
		source = "amq.direct" // as Kombu's queue_bind
	}
	typ := c.exchanges.Type(source)
	row := BindingFor(typ, b.RoutingKey, b.Destination)
	if err := c.store.Bind(ctx, source, row); err != nil {
		return c.wrap("bind "+b.Destination+" to "+source, err)
	}
	if c.broadcaster != nil && typ == transport.ExchangeFanout {
		return c.wrap("bind "+b.Destination+" to "+source, c.broadcaster.FanoutBound(ctx, source, b.Destination, true))
	}
	return nil
}

// Unbind removes the binding's rows, whatever pattern they were written
// with.
func (c *conn) Unbind(ctx context.Context, b transport.Binding) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if b.DestinationIsExchange {
		return c.errorf("exchange-to-exchange bindings: %w", transport.ErrNotSupported)
	}
	source := b.Source
	if source == "" {
		source = "amq.direct"
	}
	row := Binding{RoutingKey: b.RoutingKey, Queue: b.Destination}
	if err := c.store.Unbind(ctx, source, row); err != nil {
		return c.wrap("unbind "+b.Destination+" from "+source, err)
	}
	if c.broadcaster != nil && c.exchanges.Type(source) == transport.ExchangeFanout {
		return c.wrap("unbind "+b.Destination+" from "+source, c.broadcaster.FanoutBound(ctx, source, b.Destination, false))
	}
	return nil
}

// Get takes one message from the store (Kombu's basic_get).
func (c *conn) Get(ctx context.Context, queue string, autoAck bool) (*transport.Delivery, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	h, d, err := c.take(ctx, queue)
	if errors.Is(err, transport.ErrEmpty) {
		return nil, c.errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	if err != nil {
		return nil, c.wrap("get from "+queue, err)
	}
	if autoAck {
		if err := c.ack(h); err != nil {
			c.log.Warn(c.name+": an auto-acked message could not be removed from the store; it will be delivered again", "queue", queue, "error", err)
		}
		return d, nil
	}
	if !c.gets.track(h, d) {
		// Closed while taking: put it back as it was.
		c.restore([]*held{h})
		return nil, transport.ErrClosed
	}
	d.Acknowledger = c.gets
	return d, nil
}

// Done is closed when the connection is closed.
func (c *conn) Done() <-chan struct{} { return c.done }

// Err is nil: a virtual connection is never lost, its store's failures
// fail the operations that meet them.
func (c *conn) Err() error { return nil }

// Close ends the subscriptions, restores every unsettled message (those
// delivered marked redelivered), deletes the exclusive queues this
// connection declared, and closes the store.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.finished
		return nil
	}
	c.closed = true
	subs := slices.Collect(maps.Keys(c.subs))
	var doomed []string
	for name, q := range c.queues {
		if q.exclusive {
			doomed = append(doomed, name)
		}
	}
	c.mu.Unlock()

	for _, s := range subs {
		s.end(c.errorf("connection closed while consuming: %w", transport.ErrClosed))
	}
	for _, s := range subs {
		<-s.done
	}
	// Close the acknowledgers first: a settlement either started before
	// (and Close waits for it) or fails with ErrClosed, its message
	// restored below.
	var unsettled []*held
	for _, s := range subs {
		unsettled = append(unsettled, s.acks.takeAll()...)
	}
	unsettled = append(unsettled, c.gets.takeAll()...)
	c.settling.Wait()
	errs := []error{c.restore(unsettled)}

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, name := range doomed {
		if _, err := c.store.DeleteQueue(ctx, name); err != nil {
			errs = append(errs, c.wrap("delete exclusive queue "+name, err))
		}
	}
	if err := c.store.Close(); err != nil {
		errs = append(errs, c.wrap("close", err))
	}
	close(c.done)
	close(c.finished)
	return errors.Join(errs...)
}
