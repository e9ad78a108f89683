package kombu

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Handler handles messages for a consumer. What it returns decides what
// happens to the message, unless it settled the message itself:
//
//   - nil acks it;
//   - an error rejects it without requeue: it is dead-lettered where the
//     queue has a dead-letter exchange, dropped otherwise;
//   - Requeue(err) rejects it with requeue: the broker delivers it again;
//   - a panic is recovered, logged with its stack, and treated as an error.
//
// A handler that called msg.Ack, msg.Reject or msg.Requeue keeps its choice.
//
// The context ends only when the consumer shuts down: Run's context ended
// or Close was called, and the handler was still running as the shutdown
// timeout (WithShutdownTimeout) was running out. A handler should pass ctx to what
// it waits on and, when ctx ends, stop and return ctx.Err() (or whatever
// error the interrupted call returned). Once the shutdown has cancelled
// ctx, any error the handler returns puts the message back in its queue,
// for the next consumer, instead of rejecting it: being stopped is not a
// failure of the message. Returning nil still acks it (the work was done).
type Handler interface {
	HandleMessage(ctx context.Context, msg *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, msg *Message) error

// HandleMessage calls f.
func (f HandlerFunc) HandleMessage(ctx context.Context, msg *Message) error { return f(ctx, msg) }

// Typed returns a Handler that decodes each message into a new T and passes
// it to fn. A message that does not decode goes to the consumer's
// decode-error handler and is rejected, without reaching fn.
func Typed[T any, PT interface{ *T }](fn func(ctx context.Context, m PT, msg *Message) error) Handler {
	return HandlerFunc(func(ctx context.Context, msg *Message) error {
		v := PT(new(T))
		if err := msg.Decode(v); err != nil {
			return err
		}
		return fn(ctx, v, msg)
	})
}

// MatchTopic reports whether an AMQP topic binding key ("orders.*",
// "audit.#") matches a routing key.
func MatchTopic(pattern, routingKey string) bool { return transport.MatchTopic(pattern, routingKey) }

// Subscription pairs a queue with the handler for its messages.
type Subscription struct {
	Queue   Queue
	Handler Handler
}

type consumerConfig struct {
	topology    Topology
	concurrency int
	receiveConfig
	consumeConfig
	tag           string
	onDecodeError func(*Message, error)
	exclusive     bool
	arguments     map[string]any
	retry         *RetryPolicy
}

// WithTopology declares t (exchanges, named queues, bindings) before the
// consumer's own queues.
func WithTopology(t Topology) ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.topology = c.topology.Merge(t) })
}

// WithAccept limits the content types a consumer, or Queue.Get, decodes to
// the given serializer names or MIME types. Others are refused with
// ErrContentDisallowed: a consumer passes such a message to the
// decode-error handler and rejects it; Get rejects it and returns it with
// the error. application/data and application/text are always accepted, as
// in Kombu. Without WithAccept, what Kombu disables by default (pickle,
// yaml, msgpack) is refused and the rest accepted.
func WithAccept(names ...string) ReceiveOption {
	return receiveOption(func(c *receiveConfig) { c.accept = append(c.accept, names...) })
}

// WithPrefetch sets how many unsettled messages the broker may hand the
// consumer at once (AMQP basic.qos), and keeps it there.
//
// Without it (or with 0), the consumer fits its prefetch to its handlers
// as they run: one message per handler goroutine (WithConcurrency), plus
// a buffer of at most 100 ms of their handling and at most 100 messages.
// It starts at one per handler goroutine, times the handlers (the mean
// over about a second of handling, one message counting for a quarter of
// a second at most), and changes the prefetch of the running
// subscription when the fit moves by a quarter or reaches a bound (up at
// once, down every half second at most). So:
//
//   - fast handlers get a buffer of 100, the prefetch of a client tuned
//     for throughput: a consumer with no options keeps up with amqp091-go
//     at basic.qos 100 on RabbitMQ and with go-redis on Redis;
//   - slow ones hold little more than they work on (a handler of 40 ms, 3
//     messages; one of 2 ms, 51; one of a second or more, 1), so that
//     consumers sharing a queue share its work, and none takes what
//     another, idle, would handle sooner: what a consumer holds beyond
//     its handlers' messages waits 100 ms at most, on average, for them.
//
// A consumer whose handlers turn slow keeps what it took while they were
// fast, and its prefetch comes down over some seconds; on RabbitMQ, which
// applies a basic.qos only to consumers started after it, a change
// replaces the consumer on its channel (see transport.PrefetchSetter).
// Where no other consumer can take from its queues (WithExclusiveConsumer,
// an exclusive or server-named queue, a stream, a single-active-consumer
// queue), the consumer takes the full buffer at once. On a transport that
// cannot change a prefetch while it consumes (without
// transport.FeatureLivePrefetch) the default is Celery's: four per
// handler goroutine.
//
// How the default was chosen (make bench, RabbitMQ 3.10 and Redis 7.0 on
// a shared 2-core machine, consuming a backlog and acking each message):
// at Celery's four per handler goroutine, the default before, a consumer
// with no options reached 0.39 to 0.53 of amqp091-go with basic.qos 100,
// and 0.45 of go-redis; at prefetch 100 it reached 0.98 to 1.01. Fitted as
// above it reaches 0.94 (rounds 0.93 to 0.97) on RabbitMQ, where the SDK
// at prefetch 100 reached 0.99 in the same run, and 1.55 of go-redis
// popping one message at a time (rounds 1.43 to 1.87) on Redis. In a run
// with both, the fitted default reached 0.86 and 1.45 where a consumer at
// Celery's four reached 0.71 and 0.70 (rounds 0.54 to 0.75, 0.67 to 0.70).
// A buffer of 100 ms keeps consumers of a shared queue within a tenth of
// a second of fair; more buys no measurable speed.
//
// To trade throughput for fairness, pin the prefetch: WithPrefetch(n)
// with n equal to the concurrency hands a consumer only what its handlers
// work on (Celery's -O fair, worker_prefetch_multiplier 1), the fairest,
// at the cost of a round trip to the broker between one message and the
// next, which suits handlers that take long compared with that; a few
// times the concurrency (Celery's default) is in between; 100 or more is
// the fastest for quick handlers, and holds what other consumers of the
// queue would wait for.
//
// Given to NewShovel, it bounds what the shovel holds (twice its batch
// size by default).
func WithPrefetch(n int) ConsumeOption {
	return consumeOption(func(c *consumeConfig) { c.prefetch = n })
}

// WithConcurrency sets how many messages are handled at once (1 by default:
// in order, one at a time).
func WithConcurrency(n int) ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.concurrency = n })
}

// WithAutoAck has the broker consider each message settled as soon as it
// hands it over, to a consumer or to Queue.Get. Faster, and a message is
// lost if its handler fails or the process dies; a consumer's handler
// results are then only logged.
func WithAutoAck() ReceiveOption { return receiveOption(func(c *receiveConfig) { c.autoAck = true }) }

// WithConsumerArguments passes arguments to the broker's basic.consume for
// every queue of the consumer (RabbitMQ: "x-priority", or "x-stream-offset"
// on streams). A transport that cannot honour one fails with
// ErrNotSupported.
func WithConsumerArguments(args map[string]any) ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.arguments = args })
}

// WithExclusiveConsumer asks the broker to make this the only consumer of
// its queues; a second one is refused with ErrResourceLocked.
func WithExclusiveConsumer() ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.exclusive = true })
}

// WithConsumerTag sets the prefix of the consumer's tags.
func WithConsumerTag(prefix string) ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.tag = prefix })
}

// WithDecodeErrorHandler is called with a message that cannot be decoded
// (refused content type, bad compression, malformed body) and the error.
// The message is rejected afterwards unless the function settled it. The
// default logs the error.
func WithDecodeErrorHandler(fn func(msg *Message, err error)) ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.onDecodeError = fn })
}

// WithShutdownTimeout bounds how long Run waits for running handlers when
// it stops (30 seconds by default). Handlers still running near its end (a
// tenth of it before, at most a second) have their context cancelled, and
// Run returns when they have returned or the timeout has run out. A handler
// that returns an error once its context is cancelled (ctx.Err(),
// typically) has its message put back in its queue, not rejected; one that
// returns nil has it acked; either way before Run returns, if it returns
// within that last tenth. A message whose handler is still running when
// Run returns stays unsettled until the handler returns, or until the
// connection closes, which puts it back in its queue.
//
// Given to NewShovel, it bounds how long Run lets the batch in flight
// finish (its confirms come, or a lost destination comes back) before it
// returns the batch's messages to the source queue.
func WithShutdownTimeout(d time.Duration) ConsumeOption {
	return consumeOption(func(c *consumeConfig) { c.shutdownTimeout = d })
}

// Consumer consumes from one or more queues and hands each message to the
// handler of its queue. Create it with NewConsumer, then call Run.
type Consumer struct {
	conn    *Connection
	cfg     consumerConfig
	accept  *acceptList
	retrier *retrier    // nil without WithMessageRetry
	fit     *prefetcher // nil unless the prefetch follows the handlers (the default)
	subs    []Subscription
	routes  atomic.Pointer[routes] // what the current session's declarations named

	running  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by Close
	started  chan struct{} // closed when Run starts
	done     chan struct{} // closed when Run returns
}

// routes are the declared names of a consumer's queues, in subscription
// order, and the handler of each. A server-named queue gets a new name each
// time it is declared, after a reconnect too.
type routes struct {
	gen      uint64 // the session they were declared on
	queues   []string
	handlers map[string]Handler
}

// NewConsumer declares the topology given with WithTopology, then each
// subscription's queue and bindings, and returns a consumer ready to Run.
// Once it returns, messages published to the subscribed queues are kept for
// the consumer.
//
// With no options a consumer handles one message at a time and fits its
// prefetch to its handler: as fast as a client tuned for throughput when
// the handler is quick, holding little more than it handles when the
// handler is slow (see WithPrefetch for how, the figures, and how to
// trade one for the other).
func NewConsumer(conn *Connection, subs []Subscription, opts ...ConsumerOption) (*Consumer, error) {
	cfg := consumerConfig{concurrency: 1, consumeConfig: consumeConfig{shutdownTimeout: 30 * time.Second}}
	for _, o := range opts {
		o.applyConsumer(&cfg)
	}
	if len(subs) == 0 {
		return nil, errors.New("kombu: NewConsumer needs at least one subscription")
	}
	if cfg.concurrency < 1 {
		return nil, fmt.Errorf("kombu: concurrency must be at least 1, got %d", cfg.concurrency)
	}
	for _, s := range subs {
		if s.Handler == nil {
			return nil, fmt.Errorf("kombu: subscription to queue %s has no handler", s.Queue.describe())
		}
	}
	accept, err := conn.codecs.accept(cfg.accept)
	if err != nil {
		return nil, err
	}
	var r *retrier
	if cfg.retry != nil {
		if r, err = newRetrier(conn, *cfg.retry); err != nil {
			return nil, err
		}
	}
	c := &Consumer{
		retrier: r,
		conn:    conn,
		cfg:     cfg,
		accept:  accept,
		subs:    subs,
		stop:    make(chan struct{}),
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if c.cfg.prefetch == 0 && !c.cfg.autoAck {
		// The default: see WithPrefetch.
		switch {
		case !c.sharesQueues():
			c.cfg.prefetch = c.cfg.concurrency + prefetchBuffer
		case conn.features.Has(transport.FeatureLivePrefetch):
			c.fit = newPrefetcher(c.cfg.concurrency, conn.logger)
		default:
			c.cfg.prefetch = fixedPrefetchPerHandler * c.cfg.concurrency
		}
	}
	ctx, cancel := conn.declareContext()
	defer cancel()
	if err := c.declare(ctx, conn.session()); err != nil {
		return nil, err
	}
	return c, nil
}

// declare declares the consumer's topology and queues on session s and
// records the names the broker gave them.
func (c *Consumer) declare(ctx context.Context, s *session) error {
	if err := c.cfg.topology.without(c.subs).Declare(ctx, c.conn); err != nil {
		return err
	}
	r := &routes{gen: s.gen, handlers: make(map[string]Handler, len(c.subs))}
	for _, sub := range c.subs {
		info, err := sub.Queue.Declare(ctx, c.conn)
		if err != nil {
			return err
		}
		if _, dup := r.handlers[info.Name]; dup {
			return fmt.Errorf("kombu: queue %s is subscribed twice", info.Name)
		}
		r.handlers[info.Name] = c.conn.wrapHandler(sub.Handler)
		r.queues = append(r.queues, info.Name)
	}
	c.routes.Store(r)
	return nil
}

// without returns t less the queues that subs declare themselves, so that
// each queue is declared once.
func (t Topology) without(subs []Subscription) Topology {
	out := Topology{Exchanges: t.Exchanges}
	for _, q := range t.Queues {
		if !slices.ContainsFunc(subs, func(s Subscription) bool { return s.Queue.Name == q.Name && q.Name != "" }) {
			out.Queues = append(out.Queues, q)
		}
	}
	return out
}

// Queues returns the names of the queues the consumer reads, including the
// names the broker chose for server-named queues.
func (c *Consumer) Queues() []string { return append([]string(nil), c.routes.Load().queues...) }

// Run consumes until ctx ends or Close is called, then shuts down
// gracefully: it stops taking deliveries, lets running handlers finish
// (bounded by WithShutdownTimeout), and returns every message it took but
// did not handle to its queue. It returns nil after such a shutdown, and an
// error when the broker ended the consumer: one of its queues was deleted,
// or the connection was lost. Run may be called once.
//
// To stop the consumer from inside a handler, cancel Run's context rather
// than calling Close, which waits for the handlers, the caller included.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("kombu: Consumer.Run called twice")
	}
	close(c.started)
	defer close(c.done)
	select {
	case <-c.stop:
		return nil
	default:
	}
	if ctx.Err() != nil {
		return nil // stopped before it started: a clean shutdown all the same
	}

	// Handlers get a context that outlives ctx by the shutdown timeout, so
	// that stopping the consumer does not cut short the work in flight.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	hs := &handlers{ctx: handlerCtx, slots: make(chan struct{}, c.cfg.concurrency)}
	var endShutdown context.CancelFunc
	hs.stopping = sync.OnceValue(func() context.Context {
		// One deadline for the whole shutdown, from the moment it starts:
		// cancelling the subscription, returning what it holds, and the
		// handlers at work all fit within the shutdown timeout.
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.shutdownTimeout)
		// Handlers are told to stop a little before the deadline, so that
		// one that returns when told has its message settled before Run
		// returns, rather than racing the program's Close.
		early := time.AfterFunc(c.cfg.shutdownTimeout-shutdownGrace(c.cfg.shutdownTimeout), cancelHandlers)
		endShutdown = func() {
			early.Stop()
			cancel()
		}
		context.AfterFunc(shutdownCtx, cancelHandlers)
		return shutdownCtx
	})
	runErr := c.consume(ctx, hs)
	if !waitGroup(hs.stopping(), &hs.running) {
		c.conn.logger.Warn("kombu: handlers still running after the shutdown timeout, their context cancelled; each one's message goes back to its queue when it returns an error, or when the connection closes",
			"timeout", c.cfg.shutdownTimeout)
	}
	endShutdown()
	return runErr
}

// shutdownGrace is how long before the shutdown deadline handlers still
// running have their context cancelled: a tenth of the shutdown timeout,
// at most a second.
func shutdownGrace(timeout time.Duration) time.Duration { return min(timeout/10, time.Second) }

// errSubscriptionEnded is why a subscription that ended without a reason
// ended: with its connection, as far as the consumer can tell.
var errSubscriptionEnded = fmt.Errorf("kombu: the subscription ended unasked: %w", ErrClosed)

// inbound is a delivery and the session it came on.
type inbound struct {
	d   *transport.Delivery
	gen uint64
}

// handlers are a consumer's handler goroutines, across its sessions.
type handlers struct {
	ctx     context.Context // what handlers run with: it outlives Run's by the shutdown timeout
	running sync.WaitGroup
	// slots holds a token for each handler goroutine at work: a session's
	// goroutines start as the last session's finish their messages, so that
	// no more than the consumer's concurrency run at once.
	slots chan struct{}
	// stopping starts the shutdown clock, once, and returns a context that
	// ends at its deadline (handlers' ctx is cancelled then too).
	stopping func() context.Context
}

// consume subscribes on the current session and serves its deliveries until
// the consumer stops or the subscription ends. When the connection is lost
// and comes back, it declares the queues again and resumes on the new
// session.
func (c *Consumer) consume(ctx context.Context, hs *handlers) error {
	// stopCtx ends when ctx does or Close is called: waiting for a new
	// session must end with the consumer.
	stopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-stopCtx.Done():
		}
	}()
	for {
		s := c.conn.session()
		sub, err := c.subscribe(stopCtx, s)
		if err == nil {
			err = c.serve(stopCtx, s, sub, hs)
			if err == nil {
				c.drain(s, sub, hs)
				return nil
			}
		}
		if stopCtx.Err() != nil {
			return nil // stopped while subscribing or waiting
		}
		if !c.conn.lostConnection(s, err) {
			return err
		}
		// The old session's deliveries are gone with it: the broker puts
		// them back, and their tags mean nothing on the next session.
		c.conn.logger.Warn("kombu: consumer lost its connection; resuming when it is back", "error", err)
		if _, err := c.conn.nextSession(stopCtx, s); err != nil {
			if stopCtx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// subscribe declares the consumer's queues on s if they were declared on
// an earlier session, and starts consuming them.
func (c *Consumer) subscribe(ctx context.Context, s *session) (transport.Subscription, error) {
	if c.routes.Load().gen != s.gen {
		dctx, cancel := context.WithTimeout(ctx, c.conn.declareTimeout)
		err := c.declare(dctx, s)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	prefetch := c.cfg.prefetch
	if c.fit != nil {
		prefetch = c.fit.prefetch()
	}
	sub, err := s.tc.Consume(ctx, transport.ConsumeSpec{
		Queues:    c.routes.Load().queues,
		Tag:       c.cfg.tag,
		AutoAck:   c.cfg.autoAck,
		Prefetch:  prefetch,
		Exclusive: c.cfg.exclusive,
		Arguments: c.cfg.arguments,
	})
	if err != nil {
		return nil, c.conn.op("consume", err)
	}
	if c.fit != nil {
		c.fit.attach(sub)
	}
	return sub, nil
}

// serve starts the consumer's handler goroutines on sub and waits until ctx
// ends (ctx also ends with Close), returning nil, or the subscription ends,
// returning why. Each goroutine takes its next delivery from the
// subscription itself: handing deliveries through a dispatching goroutine
// would cost a goroutine switch per message, a tenth of what consuming costs.
func (c *Consumer) serve(ctx context.Context, s *session, sub transport.Subscription, hs *handlers) error {
	for range c.cfg.concurrency {
		hs.running.Add(1)
		go func() {
			defer hs.running.Done()
			select {
			case hs.slots <- struct{}{}:
				defer func() { <-hs.slots }()
			case <-ctx.Done():
				return
			case <-sub.Done():
				return
			}
			// The handlers' pace, for the default prefetch: a message's
			// handling starts when the last one's ended, if the next was
			// there already (the clock is read once per message then).
			var m meter
			var ended time.Duration // 0: this goroutine waited for its message
			for ctx.Err() == nil {
				var d *transport.Delivery
				var ok bool
				select {
				case d, ok = <-sub.Deliveries():
				default:
					ended = 0
					select {
					case <-ctx.Done():
						return
					case d, ok = <-sub.Deliveries():
					}
				}
				if !ok {
					return // serve learns why from sub.Done
				}
				if ctx.Err() != nil {
					// Taken as the consumer stopped: the handler never
					// saw it. This goroutine holds a slot.
					c.unseen(s, d, hs)
					return
				}
				if c.fit == nil {
					c.handle(hs.ctx, inbound{d, s.gen})
					continue
				}
				began := ended
				if began == 0 {
					began = monotonic()
				}
				c.handle(hs.ctx, inbound{d, s.gen})
				ended = monotonic()
				m.add(c.fit, ended-began)
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case <-s.tc.Done():
		// The connection is gone, and the subscription with it: noticed
		// here, not by a handler goroutine that may be busy for a while.
		return c.conn.op("consume", connectionEnded(s.tc.Err()))
	case <-sub.Done():
		// Likewise when only the subscription ended (its queue deleted,
		// its channel closed by the broker).
	}
	if err := sub.Err(); err != nil {
		return c.conn.op("consume", err)
	}
	// Nobody asked it to stop: the broker or the connection ended it,
	// whatever the driver says.
	return c.conn.op("consume", errSubscriptionEnded)
}

// connectionEnded is why a consumer's connection ended, as an error that
// is ErrClosed.
func connectionEnded(why error) error {
	switch {
	case why == nil:
		return fmt.Errorf("kombu: the connection ended under the consumer: %w", ErrClosed)
	case errors.Is(why, ErrClosed):
		return why
	default:
		return fmt.Errorf("%w: %w", ErrClosed, why)
	}
}

// drain cancels the subscription and deals with the deliveries no handler
// has seen, still buffered in it, within the shutdown deadline.
func (c *Consumer) drain(s *session, sub transport.Subscription, hs *handlers) {
	ctx := hs.stopping()
	if err := sub.Cancel(ctx); err != nil && !errors.Is(err, ErrClosed) {
		c.conn.logger.Warn("kombu: cancel consumer", "error", err)
	}
	for {
		select {
		case d, ok := <-sub.Deliveries():
			if !ok {
				return
			}
			if d.Acknowledger == nil {
				// Auto-acked: it takes a handler's slot like any delivery.
				select {
				case hs.slots <- struct{}{}:
				case <-ctx.Done():
					c.conn.logger.Error("kombu: auto-acked message dropped: no handler free before the shutdown timeout", deliveryLog(d)...)
					continue
				}
				c.unseen(s, d, hs)
				<-hs.slots
				continue
			}
			c.unseen(s, d, hs)
		case <-ctx.Done():
			return
		}
	}
}

// unseen deals with a delivery taken as the consumer stopped: it goes back
// to its queue, or, auto-acked and so already forgotten by the broker, is
// handled all the same, so that none is lost (the caller then holds a
// handler's slot; the handler's context ends at the shutdown deadline).
func (c *Consumer) unseen(s *session, d *transport.Delivery, hs *handlers) {
	if d.Acknowledger == nil {
		c.handle(hs.ctx, inbound{d, s.gen})
		return
	}
	if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
		c.conn.logger.Warn("kombu: requeue at shutdown", deliveryLog(d, "error", err)...)
	}
}

// handle runs the handler for one delivery and settles the message by what
// it returned.
func (c *Consumer) handle(ctx context.Context, in inbound) {
	d := in.d
	msg, err := c.conn.newMessage(d, c.accept, in.gen)
	if err == nil {
		err = c.callBeforeDeadline(ctx, c.handlerFor(d.Queue), msg)
	}
	decodeErr := errors.Is(err, ErrDecode) || errors.Is(err, ErrContentDisallowed)
	// ctx ends only with the consumer's shutdown: a handler it interrupted
	// failed for that reason, not for the message's, which goes back to its
	// queue for the next consumer. A message that does not decode never
	// will, and is rejected all the same.
	stopped := err != nil && !decodeErr && ctx.Err() != nil
	switch {
	case decodeErr:
		c.decodeFailed(msg, err)
	case stopped && msg.State() == StateUnsettled:
		c.conn.logger.Info("kombu: handler stopped by the shutdown; message returned to its queue", deliveryLog(d, "error", err)...)
	case err != nil:
		c.conn.logger.Error("kombu: handler failed", deliveryLog(d, "error", err)...)
	}
	if msg.State() != StateUnsettled {
		return // auto-acked, or the handler settled it itself
	}
	var settleErr error
	switch {
	case err == nil:
		settleErr = msg.Ack()
	case isRequeue(err), stopped:
		settleErr = msg.Reject(true)
	case c.retrier != nil && !decodeErr && !errors.Is(err, ErrUnimplemented): // retrying cannot make it implemented
		retried, rerr := c.retrier.retry(ctx, msg, err)
		if rerr != nil {
			c.conn.logger.Error("kombu: retry failed; message rejected", deliveryLog(d, "error", rerr)...)
		}
		if retried {
			settleErr = msg.Ack() // the retry copy is confirmed
		} else {
			settleErr = msg.rejectFailed(err)
		}
	default:
		settleErr = msg.rejectFailed(err)
	}
	if settleErr != nil {
		c.conn.logger.Error("kombu: settle message", deliveryLog(d, "error", settleErr)...)
	}
}

// handlerFor returns the handler of a queue. A queue the current routes do
// not name (a server-named queue of an earlier session) has none, and its
// message fails as it would with an unknown route.
func (c *Consumer) handlerFor(queue string) Handler {
	if h, ok := c.routes.Load().handlers[queue]; ok {
		return h
	}
	return HandlerFunc(func(context.Context, *Message) error {
		return fmt.Errorf("%w: no subscription reads queue %q", ErrNoRoute, queue)
	})
}

// call runs h, turning a panic into an error.
func (c *Consumer) call(ctx context.Context, h Handler, msg *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.conn.logger.Error("kombu: handler panicked", msgLog(msg, "panic", r, "stack", string(debug.Stack()))...)
			err = fmt.Errorf("kombu: handler panicked: %v", r)
		}
	}()
	return h.HandleMessage(ctx, msg)
}

// decodeFailed passes a message that cannot be decoded to the decode-error
// handler, or logs it; the caller then rejects it unless the handler
// settled it.
func (c *Consumer) decodeFailed(msg *Message, err error) {
	if c.cfg.onDecodeError == nil {
		c.conn.logger.Error("kombu: cannot decode message; rejected", msgLog(msg, "content_type", msg.Properties.ContentType, "error", err)...)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.conn.logger.Error("kombu: decode-error handler panicked", msgLog(msg, "panic", r)...)
		}
	}()
	c.cfg.onDecodeError(msg, err)
}

// Close stops the consumer as Run does when its context ends, and waits for
// Run to return. It is safe to call more than once, and before Run. Called
// from a handler, it waits for the shutdown timeout; cancel Run's context
// there instead.
func (c *Consumer) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	select {
	case <-c.started:
		<-c.done
	default:
	}
	return nil
}

// waitGroup waits for wg or ctx, and reports whether wg finished.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) bool {
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return true
	case <-ctx.Done():
		return false
	}
}
