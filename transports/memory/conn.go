package memory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/kombu-go/kombu/runtime/transport"
)

// directReplyTo is RabbitMQ's pseudo-queue for direct reply-to, which this
// broker does not have (no FeatureDirectReplyTo).
const directReplyTo = "amq.rabbitmq.reply-to"

const features = transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout |
	transport.FeatureHeaders | transport.FeatureExchangeBindings | transport.FeaturePriority |
	transport.FeatureTTL | transport.FeatureDeadLetter | transport.FeatureMaxLength |
	transport.FeatureConfirms | transport.FeatureMandatory | transport.FeatureDelay | transport.FeatureLivePrefetch

// conn is a connection to a broker. Its state is guarded by the broker's
// lock like everything else.
type conn struct {
	b         *broker
	log       *slog.Logger
	closed    bool
	done      chan struct{}
	subs      map[*subscription]struct{} // running, or ended with deliveries unsettled
	gets      ackScope                   // settles Get deliveries
	exclusive map[*queue]struct{}        // exclusive queues it declared

	unroutable func(exchange, routingKey, reason string) // transport.Config.Unroutable; set once
	props      propsCache                                // the properties of its last message
	consumed   atomic.Bool                               // its last message's first queue had consumers
}

var (
	_ transport.Conn           = (*conn)(nil)
	_ transport.BatchPublisher = (*conn)(nil)
)

func newConn(b *broker, cfg transport.Config) *conn {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &conn{b: b, log: log, done: make(chan struct{}), subs: map[*subscription]struct{}{}, exclusive: map[*queue]struct{}{},
		unroutable: cfg.Unroutable}
	c.gets.conn = c
	b.mu.Lock()
	b.open++
	b.mu.Unlock()
	return c
}

// begin checks ctx, takes the broker lock and checks c is open. On success
// the caller releases the lock with c.b.unlock().
func (c *conn) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.b.mu.Lock()
	if c.closed {
		c.b.mu.Unlock()
		return transport.ErrClosed
	}
	return nil
}

func (c *conn) Features() transport.Features { return features }

func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.b.unlock()
	return c.b.declareExchange(ex)
}

func (c *conn) DeleteExchange(ctx context.Context, name string, ifUnused bool) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.b.unlock()
	return c.b.deleteExchangeNamed(name, ifUnused)
}

func (c *conn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	if err := c.begin(ctx); err != nil {
		return transport.QueueInfo{}, err
	}
	defer c.b.unlock()
	return c.b.declareQueue(c, q)
}

// DeleteQueue deletes a queue and returns how many ready messages it held.
// Deleting a missing queue succeeds with 0, as on RabbitMQ.
func (c *conn) DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error) {
	if err := c.begin(ctx); err != nil {
		return 0, err
	}
	defer c.b.unlock()
	q := c.b.queues[name]
	switch {
	case q == nil:
		return 0, nil
	case q.lockedTo(c):
		return 0, lockedError(name)
	case ifUnused && len(q.consumers) > 0:
		return 0, fmt.Errorf("memory: queue %q has %d consumers: %w", name, len(q.consumers), transport.ErrInUse)
	case ifEmpty && q.ready.count > 0:
		return 0, fmt.Errorf("memory: queue %q has %d messages: %w", name, q.ready.count, transport.ErrInUse)
	}
	n := q.ready.count
	c.b.deleteQueue(q)
	return n, nil
}

// PurgeQueue removes the ready messages; unsettled ones stay.
func (c *conn) PurgeQueue(ctx context.Context, name string) (int, error) {
	if err := c.begin(ctx); err != nil {
		return 0, err
	}
	defer c.b.unlock()
	q, err := c.b.queueFor(c, name)
	if err != nil {
		return 0, err
	}
	n := q.ready.count
	q.ready.clear()
	return n, nil
}

func (c *conn) Bind(ctx context.Context, b transport.Binding) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.b.unlock()
	return c.b.bind(c, b)
}

func (c *conn) Unbind(ctx context.Context, b transport.Binding) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.b.unlock()
	return c.b.unbind(c, b)
}

// Publish routes the message to its queues before returning, so it is
// always confirmed.
func (c *conn) Publish(ctx context.Context, p *transport.Publishing) error {
	env, err := c.ready(p)
	if err != nil {
		return err
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	unroutable, consumed, err := c.b.publish(p, env)
	c.b.unlock()
	c.consumed.Store(consumed)
	if unroutable {
		c.notifyUnroutable(p)
	}
	return err
}

// ready makes p into what the broker keeps, before the broker lock is
// taken: the copies and the allocation hold up nobody else. Whether its
// delivery is made ready too follows the connection's last message (see
// newEnvelope): a producer publishes to the same place over and over.
func (c *conn) ready(p *transport.Publishing) (*envelope, error) {
	headers, err := cloneHeaders(p.Headers)
	if err != nil {
		return nil, fmt.Errorf("memory: publish to exchange %q: %w", p.Exchange, err)
	}
	return newEnvelope(p, headers, c.props.props(p), c.consumed.Load()), nil
}

// PublishBatch publishes in order under one lock. A message that fails
// fails alone: the others are published, and a *transport.BatchError says
// which failed.
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(ps))
		}
		errs[i] = err
	}
	envs := make([]*envelope, len(ps))
	for i, p := range ps {
		env, err := c.ready(p)
		if err != nil {
			fail(i, err)
			continue
		}
		envs[i] = env
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	var unroutable []*transport.Publishing
	consumed := c.consumed.Load()
	for i, p := range ps {
		if envs[i] == nil {
			continue // refused already
		}
		dropped, toConsumer, err := c.b.publish(p, envs[i])
		if err != nil {
			fail(i, err)
			continue
		}
		consumed = toConsumer
		if dropped {
			unroutable = append(unroutable, p)
		}
	}
	c.b.unlock()
	c.consumed.Store(consumed)
	for _, p := range unroutable {
		c.notifyUnroutable(p)
	}
	if len(ps) == 1 && errs != nil {
		return errs[0]
	}
	if err := transport.NewBatchError(errs); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	return nil
}

// notifyUnroutable tells the runtime that p, published with
// NotifyUnroutable, reached no queue.
func (c *conn) notifyUnroutable(p *transport.Publishing) {
	if c.unroutable != nil {
		c.unroutable(p.Exchange, p.RoutingKey, "no queue is bound to the exchange with a matching key")
	}
}

func (c *conn) Get(ctx context.Context, queue string, autoAck bool) (*transport.Delivery, error) {
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.b.unlock()
	q, err := c.b.queueFor(c, queue)
	if err != nil {
		return nil, err
	}
	q.touch()
	e := q.take()
	if e == nil {
		return nil, fmt.Errorf("memory: queue %q: %w", queue, transport.ErrEmpty)
	}
	d := e.delivery(q, "", c.gets.nextTag())
	if !autoAck {
		c.gets.track(d.Tag, q, e)
		d.Acknowledger = &c.gets
	}
	return d, nil
}

func (c *conn) Consume(ctx context.Context, spec transport.ConsumeSpec) (transport.Subscription, error) {
	if len(spec.Queues) == 0 {
		return nil, fmt.Errorf("memory: consume: no queue given")
	}
	if spec.Prefetch < 0 {
		return nil, fmt.Errorf("memory: consume: negative prefetch %d", spec.Prefetch)
	}
	for name, v := range spec.Arguments {
		if name != "x-cancel-on-ha-failover" { // advisory: there is no failover here
			return nil, fmt.Errorf("memory: consume: argument %s=%#v: %w", name, v, transport.ErrNotSupported)
		}
	}
	if slices.Contains(spec.Queues, directReplyTo) {
		return nil, fmt.Errorf("memory: consume: %s (RabbitMQ's direct reply-to): %w", directReplyTo, transport.ErrNotSupported)
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.b.unlock()
	queues := make([]*queue, 0, len(spec.Queues))
	for _, name := range spec.Queues {
		q, err := c.b.queueFor(c, name)
		if err != nil {
			return nil, err
		}
		if q.exclusiveConsumer {
			return nil, fmt.Errorf("memory: queue %q has an exclusive consumer: %w", name, transport.ErrResourceLocked)
		}
		if spec.Exclusive && (len(q.consumers) > 0 || slices.Contains(queues, q)) {
			return nil, fmt.Errorf("memory: queue %q has consumers, so it cannot be consumed exclusively: %w", name, transport.ErrResourceLocked)
		}
		queues = append(queues, q)
	}
	return c.subscribe(spec, queues), nil
}

func (c *conn) Done() <-chan struct{} { return c.done }

// Err is always nil: a memory connection is never lost, only closed.
func (c *conn) Err() error { return nil }

// Close ends c's subscriptions, returns every unsettled delivery to its
// queue marked redelivered, deletes c's exclusive queues and closes Done.
func (c *conn) Close() error {
	b := c.b
	b.mu.Lock()
	if c.closed {
		b.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	subs := make([]*subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
		s.end(fmt.Errorf("memory: connection closed while consuming: %w", transport.ErrClosed))
	}
	b.unlock()
	// Wait for each run goroutine, which settles the message it was handing
	// over: delivered (so unsettled, and requeued below) or taken back.
	for _, s := range subs {
		<-s.done
	}
	b.mu.Lock()
	for _, s := range subs {
		s.acks.requeueAll()
	}
	c.gets.requeueAll()
	c.subs = nil
	for q := range c.exclusive {
		b.deleteQueue(q)
	}
	b.open--
	last := b.open == 0
	n, queues := b.held()
	close(c.done)
	b.unlock()
	if last && n > 0 {
		// The broker lives in this process: what its queues hold, the
		// unsettled messages just put back included, is gone when the
		// process exits. A program that stops with work in a memory://
		// queue loses it, whatever its consumers did to return it, and
		// that must not pass unnoticed.
		c.log.Warn("memory: the last connection to the in-process broker closed with messages in its queues; they are lost when this process exits",
			"broker", b.url, "messages", n, "queues", queues)
	}
	return nil
}

// held returns how many ready messages the broker's queues hold, and the
// names of (the first ten of) the queues that hold them.
func (b *broker) held() (int, []string) {
	n := 0
	var queues []string
	for _, q := range b.queues {
		if q.ready.count > 0 {
			n += q.ready.count
			queues = append(queues, q.name)
		}
	}
	slices.Sort(queues)
	if len(queues) > 10 {
		queues = append(queues[:10], "...")
	}
	return n, queues
}

// forgetIfDone drops a subscription that can no longer matter to Close.
func (c *conn) forgetIfDone(s *subscription) {
	if s.exited && len(s.acks.unacked) == 0 {
		delete(c.subs, s)
	}
}
