package kombu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Shovel moves messages from a queue on one connection to an exchange on
// another, as RabbitMQ's shovel plugin does, over any transports: from a
// dead-letter queue back to the exchange its messages failed from, from a
// database outbox to RabbitMQ or Redis, from one broker to another during
// a migration.
//
//	shovel, err := kombu.NewShovel(db, kombu.Queue{Name: "outbox"}, rabbit, shop,
//		kombu.WithShovelDeclare(kombu.ShovelDestination, shopv1.ShopTopology()))
//	if err != nil { ... }
//	err = shovel.Run(ctx) // until ctx ends
//
// # What it guarantees
//
// At least once, nothing lost when either side dies. The shovel
// acknowledges a message at the source only after the destination
// confirmed its copy: a publisher confirm on RabbitMQ, a write that
// returned on Redis, the filesystem or the memory broker. Until then the
// source holds the message unacknowledged, so:
//
//   - when the destination's connection is lost, the shovel keeps what it
//     had not had confirmed, waits for the connection to come back, and
//     publishes those messages again (a message whose confirm was lost on
//     the way is then there twice);
//   - when the source's connection is lost, or the process dies, every
//     message not yet acknowledged goes back to the source queue, to be
//     moved again once the shovel is back (a message moved but not yet
//     acknowledged is then moved twice).
//
// A message may thus reach the destination more than once, never zero
// times: give messages ids (WithMessageID) where consumers must not act
// twice. Stats counts what a lost acknowledgement may have duplicated.
//
// # What it moves
//
// Each message as it is: its body bytes, never decoded, still compressed
// if they were; its headers and properties (content type and encoding,
// delivery mode, message and correlation ids, reply-to, priority,
// expiration, timestamp, type, app id) untouched. The routing key is the
// one the message was published with, unless WithShovelRoutingKey sets
// another. Three things differ, none a Kombu consumer minds:
//
//   - a property the destination cannot honour is dropped rather than
//     refused: a priority where it has no priorities, an expiration where
//     it has no TTL (Redis, as Kombu, would store both and enforce
//     neither); an expiration, where it is kept, counts again from the
//     move, as with RabbitMQ's shovel;
//   - the "redelivered" header Kombu's virtual transports (Redis, SQL,
//     the filesystem) write into a message they return to its queue is
//     removed: it marks the source's delivery, and the copy is a first
//     delivery;
//   - on RabbitMQ, a message without a message id is given one
//     ("kombu-go-…"), as every mandatory publish of kombu-go's AMQP
//     transport is, so that a return names the message it returns.
//
// Messages are moved in the order the source delivers them, except that
// a message moved again after a failure may follow those behind it.
//
// # Batches
//
// The shovel takes what the source has ready, up to a batch
// (WithShovelBatchSize, 100 by default), publishes it as one batch where
// the destination's transport pipelines publishes and their confirms
// (RabbitMQ, Redis, memory, and every virtual transport), and settles each
// source message by its own copy's fate. It never waits for a batch to
// fill: a message alone goes alone, at once. The source lends the shovel
// up to WithPrefetch messages (twice the batch size by default), so that
// the next batch is on its way while the broker confirms this one.
//
// # When the destination refuses a message
//
// Every message is published mandatory where the destination can tell
// that a message reached no queue (all of kombu-go's transports can). An
// unroutable message is never acknowledged at the source silently: by
// default (ShovelStop) it goes back to the source queue and Run returns an
// error wrapping ErrUnroutable that names the exchange and routing key;
// WithShovelOnUnroutable can dead-letter it at the source instead, or
// return it there and keep going. A refusal that waiting does not cure
// (the exchange does not exist, access refused, a declaration that
// conflicts, something the destination does not support) returns the
// messages to the source queue and ends Run with the error. Any other (a
// nack, a broker still loading its data after a restart, a channel closed
// under the publish) is waited out: the shovel holds the messages and
// publishes them again after a back-off (WithShovelBackoff).
//
// What it does about failures, it logs through the source connection's
// logger (WithLogger), each record with a "shovel" attribute naming the
// queue and the exchange.
type Shovel struct {
	src, dst *Connection
	queue    Queue
	exchange Exchange
	cfg      shovelConfig
	logger   *slog.Logger

	srcDeclare, dstDeclare *declareSet
	srcGen                 atomic.Uint64 // the source session the queue was declared on

	stats shovelCounters

	running  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by Close
	started  chan struct{} // closed when Run starts
	done     chan struct{} // closed when Run returns
}

// ShovelEnd names one end of a shovel, for WithShovelDeclare.
type ShovelEnd int

const (
	// ShovelSource is the connection messages are taken from.
	ShovelSource ShovelEnd = iota
	// ShovelDestination is the connection messages are published to.
	ShovelDestination
)

// ShovelAction is what a shovel does with a message the destination
// reached no queue with (WithShovelOnUnroutable).
type ShovelAction int

const (
	// ShovelStop returns the message to the source queue and ends Run with
	// an error wrapping ErrUnroutable: the default, since an unroutable
	// message usually means a topology is missing at the destination, and
	// moving on would only return (or lose) every message after it.
	ShovelStop ShovelAction = iota
	// ShovelRequeue returns the message to the source queue, logs an
	// error, and keeps going after a back-off (WithShovelBackoff): the
	// message is tried again when the source delivers it again, and moves
	// once its route exists. Until then it comes back, round after round.
	ShovelRequeue
	// ShovelDeadLetter rejects the message at the source without requeue,
	// which dead-letters it through the source queue's dead-letter
	// exchange, with the error in its ErrorHeader where the source
	// transport writes dead letters itself (memory, Redis). NewShovel
	// requires the queue to have one (Queue.DeadLetterExchange), unless it
	// is only inspected (WithShovelPassiveSource): without one the broker
	// would drop the message.
	ShovelDeadLetter
)

func (a ShovelAction) String() string {
	switch a {
	case ShovelStop:
		return "stop"
	case ShovelRequeue:
		return "requeue"
	case ShovelDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("ShovelAction(%d)", int(a))
}

// ShovelStats counts what a shovel did since it was made.
type ShovelStats struct {
	// Moved counts messages the destination confirmed and the source was
	// then sent the acknowledgement of. A source connection lost at that
	// moment may not have received it: the source then delivers the
	// message again, and it is moved, and counted, twice.
	Moved uint64
	// Batches counts publishes to the destination: each batch, or each
	// message where the batch size is 1; a batch published again counts
	// again.
	Batches uint64
	// Republished counts messages published again after a failure: the
	// destination's connection was lost, or it refused them for a reason
	// that passed.
	Republished uint64
	// Requeued counts messages returned to the source queue unmoved: a
	// refusal at the destination, or a shutdown with them in flight.
	Requeued uint64
	// DeadLettered counts messages rejected at the source
	// (ShovelDeadLetter).
	DeadLettered uint64
	// AckLost counts messages the destination confirmed but the source did
	// not take the acknowledgement of (its connection was lost): the
	// source delivers them again, and the destination gets them twice.
	AckLost uint64
}

type shovelCounters struct {
	moved, batches, republished, requeued, deadLettered, ackLost atomic.Uint64
}

type shovelConfig struct {
	consumeConfig
	routingKey   *string
	keepExchange bool
	batchSize    int
	passive      bool
	onUnroutable ShovelAction
	backoff      RetryPolicy
	limit        int
	drain        bool
	progress     func(ShovelStats)
	srcDeclare   []Entity
	dstDeclare   []Entity
}

// WithShovelDeclare declares entities (exchanges, queues with their
// bindings, topologies), in the order given, at one end of the shovel:
// when NewShovel is called and again after that end's connection is lost
// and recovered. At the destination, declare the queues that are to
// receive what the shovel moves, so that nothing reaches it before they
// exist (an unroutable message stops the shovel, see ShovelStop); at the
// source, declare what the source queue is bound to.
func WithShovelDeclare(end ShovelEnd, entities ...Entity) ShovelOption {
	return shovelOption(func(c *shovelConfig) {
		if end == ShovelSource {
			c.srcDeclare = append(c.srcDeclare, entities...)
		} else {
			c.dstDeclare = append(c.dstDeclare, entities...)
		}
	})
}

// WithShovelRoutingKey publishes every message with key instead of the
// routing key it was published with at the source.
func WithShovelRoutingKey(key string) ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.routingKey = &key })
}

// WithShovelKeepExchange publishes each message to the exchange it was
// published to at the source (an exchange of that name at the
// destination), as RabbitMQ's shovel does when it names no destination
// exchange: one shovel relays an outbox that several services' exchanges
// route into. NewShovel's exchange must then be the default exchange,
// Exchange{}; declare the destination's exchanges with WithShovelDeclare.
// Not for a dead-letter queue, whose messages name the dead-letter
// exchange they came through.
func WithShovelKeepExchange() ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.keepExchange = true })
}

// WithShovelBatchSize sets how many messages the shovel publishes at once,
// at most (100 by default). 1 publishes each message alone and waits for
// its confirm before the next, as RabbitMQ's shovel does.
func WithShovelBatchSize(n int) ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.batchSize = n })
}

// WithShovelPassiveSource only checks that the source queue exists instead
// of declaring it: for a queue that someone else declares, with arguments
// (a dead-letter exchange, a TTL) the shovel would have to repeat exactly,
// as RabbitMQ refuses a declaration that differs. A missing queue fails
// NewShovel with ErrNotFound.
func WithShovelPassiveSource() ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.passive = true })
}

// WithShovelOnUnroutable sets what the shovel does with a message that
// reached no queue at the destination: ShovelStop (the default),
// ShovelRequeue or ShovelDeadLetter.
func WithShovelOnUnroutable(a ShovelAction) ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.onUnroutable = a })
}

// WithShovelBackoff sets how long the shovel waits before publishing again
// what the destination refused for a reason that may pass (a nack, a
// broker still loading its data, a channel closed under the publish),
// holding the messages unacknowledged at the
// source meanwhile. The default waits 200ms, 600ms, 1s, ... up to 5.2s,
// then 5.2s again, for as long as it takes; past policy.MaxRetries, if
// set, Run returns the messages to the source and ends with the error.
// A lost connection needs no back-off: the shovel publishes again once the
// connection is back.
func WithShovelBackoff(policy RetryPolicy) ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.backoff = policy })
}

// WithShovelLimit ends Run, returning nil, once n messages are moved (or
// dead-lettered), as RabbitMQ's shovel with src-delete-after does.
func WithShovelLimit(n int) ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.limit = n })
}

// WithShovelDrain ends Run, returning nil, once it has moved as many
// messages as the source queue held ready when Run began (RabbitMQ's
// src-delete-after "queue-length"): what arrives meanwhile, or comes back
// to the queue, waits for the next Run. Replaying a dead-letter queue so,
// a message that fails again and is dead-lettered anew is not replayed in
// a loop.
func WithShovelDrain() ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.drain = true })
}

// WithShovelProgress calls fn after each batch is settled, from Run's
// goroutine, with the shovel's stats so far: for a progress display, or
// metrics. fn must return quickly: the shovel waits for it.
func WithShovelProgress(fn func(ShovelStats)) ShovelOption {
	return shovelOption(func(c *shovelConfig) { c.progress = fn })
}

// NewShovel returns a shovel that moves the messages of queue, on src, to
// exchange on dst (the default exchange, Exchange{}, routes each by its
// routing key to the queue of that name). src and dst may be the same
// connection, or connections to different brokers of any transports.
//
// It declares what WithShovelDeclare gives at each end, the queue at the
// source (or, with WithShovelPassiveSource, checks that it exists) and the
// exchange at the destination, so that a mistake in either shows here, not
// in Run. The queue must have a name: a server-named queue dies with its
// connection, and the messages in it.
func NewShovel(src *Connection, queue Queue, dst *Connection, exchange Exchange, opts ...ShovelOption) (*Shovel, error) {
	cfg := shovelConfig{
		consumeConfig: consumeConfig{shutdownTimeout: 30 * time.Second},
		batchSize:     100,
		backoff:       RetryPolicy{IntervalStart: 200 * time.Millisecond, IntervalStep: 400 * time.Millisecond, IntervalMax: 5 * time.Second},
	}
	for _, o := range opts {
		o.applyShovel(&cfg)
	}
	switch {
	case src == nil || dst == nil:
		return nil, fmt.Errorf("%w: NewShovel needs a source and a destination connection", ErrInvalidArgument)
	case queue.Name == "":
		return nil, fmt.Errorf("%w: NewShovel: the source queue has no name; a server-named queue is its connection's, and dies with it, messages and all", ErrInvalidArgument)
	case cfg.batchSize < 1:
		return nil, fmt.Errorf("%w: WithShovelBatchSize(%d): at least 1", ErrInvalidArgument, cfg.batchSize)
	case cfg.prefetch < 0:
		return nil, fmt.Errorf("%w: WithPrefetch(%d): not negative", ErrInvalidArgument, cfg.prefetch)
	case cfg.limit < 0:
		return nil, fmt.Errorf("%w: WithShovelLimit(%d): not negative", ErrInvalidArgument, cfg.limit)
	case cfg.onUnroutable < ShovelStop || cfg.onUnroutable > ShovelDeadLetter:
		return nil, fmt.Errorf("%w: WithShovelOnUnroutable(%v)", ErrInvalidArgument, cfg.onUnroutable)
	case cfg.keepExchange && exchange.Name != "":
		return nil, fmt.Errorf("%w: WithShovelKeepExchange publishes to each message's own exchange: pass Exchange{}, not %q", ErrInvalidArgument, exchange.Name)
	}
	if cfg.onUnroutable == ShovelDeadLetter {
		if err := src.require(transport.FeatureDeadLetter, "dead-lettering unroutable messages at the shovel's source"); err != nil {
			return nil, err
		}
		if !cfg.passive && queue.DeadLetterExchange == "" && queue.Arguments["x-dead-letter-exchange"] == nil {
			return nil, fmt.Errorf("%w: ShovelDeadLetter: queue %s has no dead-letter exchange, so a message rejected there would be dropped; set Queue.DeadLetterExchange",
				ErrInvalidArgument, queue.Name)
		}
	}
	if cfg.prefetch == 0 {
		cfg.prefetch = 2 * cfg.batchSize
	}
	s := &Shovel{
		src:        src,
		dst:        dst,
		queue:      queue,
		exchange:   exchange,
		cfg:        cfg,
		logger:     src.logger.With("shovel", queue.Name+" → "+exchangeName(exchange, cfg.keepExchange)),
		srcDeclare: &declareSet{entities: cfg.srcDeclare, sem: make(chan struct{}, 1)},
		dstDeclare: &declareSet{entities: cfg.dstDeclare, sem: make(chan struct{}, 1)},
		stop:       make(chan struct{}),
		started:    make(chan struct{}),
		done:       make(chan struct{}),
	}
	ctx, cancel := src.declareContext()
	defer cancel()
	if err := s.declareSource(ctx, src.session()); err != nil {
		return nil, err
	}
	if err := s.declareDestination(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func exchangeName(ex Exchange, keep bool) string {
	switch {
	case keep:
		return "(each message's exchange)"
	case ex.Name == "":
		return "(default exchange)"
	}
	return ex.Name
}

// declareSource declares the source's entities and queue (or, passive,
// checks that the queue exists) on session ss, unless that was done there
// already.
func (s *Shovel) declareSource(ctx context.Context, ss *session) error {
	if s.srcGen.Load() == ss.gen {
		return nil
	}
	if err := s.srcDeclare.ensure(ctx, s.src, ss); err != nil {
		return err
	}
	var err error
	if s.cfg.passive {
		_, err = s.queue.Inspect(ctx, s.src)
	} else {
		_, err = s.queue.Declare(ctx, s.src)
	}
	if err != nil {
		return err
	}
	s.srcGen.Store(ss.gen)
	return nil
}

// declareDestination declares the exchange and the destination's
// entities, once per destination session.
func (s *Shovel) declareDestination(ctx context.Context) error {
	if err := s.dst.declareExchange(ctx, s.exchange); err != nil {
		return err
	}
	return s.dstDeclare.ensure(ctx, s.dst, s.dst.session())
}

// Stats returns what the shovel did so far. It is safe to call while Run
// runs.
func (s *Shovel) Stats() ShovelStats {
	return ShovelStats{
		Moved:        s.stats.moved.Load(),
		Batches:      s.stats.batches.Load(),
		Republished:  s.stats.republished.Load(),
		Requeued:     s.stats.requeued.Load(),
		DeadLettered: s.stats.deadLettered.Load(),
		AckLost:      s.stats.ackLost.Load(),
	}
}

// errShovelDone ends serving when the shovel's limit is reached.
var errShovelDone = errors.New("kombu: shovel limit reached")

// shovelFailure is an error that ends Run: not a lost source connection,
// which Run waits out.
type shovelFailure struct{ err error }

func (e *shovelFailure) Error() string { return e.err.Error() }
func (e *shovelFailure) Unwrap() error { return e.err }

// Run moves messages until ctx ends or Close is called, then stops: it
// lets the batch in flight finish (bounded by WithShutdownTimeout),
// returns the messages it held but did not move to the source queue, and
// returns nil. It also returns nil once WithShovelLimit or WithShovelDrain
// is met. A lost connection, at either end, is waited out (see Dial's
// recovery); Run returns an error when a connection is closed for good,
// the source queue is deleted, or the destination refuses a message for
// good (see Shovel). Run may be called once.
func (s *Shovel) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kombu: Shovel.Run called twice")
	}
	close(s.started)
	defer close(s.done)
	select {
	case <-s.stop:
		return nil // closed before it started
	default:
	}

	// stopCtx ends when ctx does or Close is called; the batch in flight
	// gets pubCtx, which outlives it by the shutdown timeout.
	stopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-stopCtx.Done():
		}
	}()
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	context.AfterFunc(stopCtx, func() {
		t := time.AfterFunc(s.cfg.shutdownTimeout, cancelPub)
		context.AfterFunc(pubCtx, func() { t.Stop() })
	})
	if stopCtx.Err() != nil {
		return nil
	}

	budget := -1 // messages left to move; -1: no bound
	if s.cfg.limit > 0 {
		budget = s.cfg.limit
	}
	if s.cfg.drain {
		info, err := s.queue.Inspect(stopCtx, s.src)
		if err != nil {
			if stopCtx.Err() != nil {
				return nil
			}
			return err
		}
		if budget < 0 || info.Messages < budget {
			budget = info.Messages
		}
		s.logger.Info("kombu: shovel draining the queue", "messages", info.Messages)
	}
	if budget == 0 {
		return nil
	}
	for {
		ss := s.src.session()
		sub, err := s.subscribe(stopCtx, ss)
		if err == nil {
			err = s.serve(stopCtx, pubCtx, ss, sub, &budget)
			if err == nil || errors.Is(err, errShovelDone) {
				return nil
			}
		}
		var failure *shovelFailure
		if errors.As(err, &failure) {
			return failure.err
		}
		if stopCtx.Err() != nil {
			return nil
		}
		if !s.src.lostConnection(ss, err) {
			return err
		}
		s.logger.Warn("kombu: shovel lost its source connection; resuming when it is back", "error", err)
		if _, err := s.src.nextSession(stopCtx, ss); err != nil {
			if stopCtx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// subscribe declares the source queue on ss if it was declared on an
// earlier session, and consumes it.
func (s *Shovel) subscribe(ctx context.Context, ss *session) (transport.Subscription, error) {
	dctx, cancel := context.WithTimeout(ctx, s.src.declareTimeout)
	err := s.declareSource(dctx, ss)
	cancel()
	if err != nil {
		return nil, err
	}
	sub, err := ss.tc.Consume(ctx, transport.ConsumeSpec{
		Queues:   []string{s.queue.Name},
		Tag:      "kombu-shovel",
		Prefetch: s.cfg.prefetch,
	})
	if err != nil {
		return nil, s.src.op("consume "+s.queue.Name, err)
	}
	return sub, nil
}

// serve moves batches from sub until stopCtx ends (nil), the budget is
// spent (errShovelDone), the subscription ends (why), or a batch fails for
// good (a *shovelFailure).
func (s *Shovel) serve(stopCtx, pubCtx context.Context, ss *session, sub transport.Subscription, budget *int) error {
	r := s.read(sub)
	defer r.release()
	batch := make([]*transport.Delivery, 0, s.cfg.batchSize)
	m := newMover(s, s.cfg.batchSize)
	stalled := 0 // batches in a row that moved nothing, all their messages unroutable and returned
	for {
		var first *transport.Delivery
		select {
		case <-stopCtx.Done():
			return nil
		case d, ok := <-r.buf:
			if !ok {
				return s.ended(ss, sub)
			}
			first = d
		case <-ss.tc.Done():
			return s.src.op("consume "+s.queue.Name, connectionEnded(ss.tc.Err()))
		}
		size := s.cfg.batchSize
		if *budget >= 0 && *budget < size {
			size = *budget
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < size {
			select {
			case d, ok := <-r.buf:
				if !ok {
					break fill
				}
				batch = append(batch, d)
			default:
				break fill
			}
		}
		settled, returned, err := m.move(pubCtx, ss, batch)
		clear(batch)
		if s.cfg.progress != nil {
			s.cfg.progress(s.Stats())
		}
		if err != nil {
			return &shovelFailure{err}
		}
		if *budget >= 0 {
			if *budget -= settled; *budget <= 0 {
				return errShovelDone
			}
		}
		if settled > 0 || returned == 0 {
			stalled = 0
			continue
		}
		// Nothing moved, and what was taken is back in the queue
		// (ShovelRequeue): the source hands it straight back, so pause
		// rather than spin until its route exists.
		wait := s.cfg.backoff.Interval(stalled)
		stalled++
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-stopCtx.Done():
			t.Stop()
		}
	}
}

// ended says why the subscription ended unasked.
func (s *Shovel) ended(ss *session, sub transport.Subscription) error {
	if err := sub.Err(); err != nil {
		return s.src.op("consume "+s.queue.Name, err)
	}
	select {
	case <-ss.tc.Done():
		return s.src.op("consume "+s.queue.Name, connectionEnded(ss.tc.Err()))
	default:
	}
	return s.src.op("consume "+s.queue.Name, errSubscriptionEnded)
}

// reader takes deliveries from a subscription into a buffer as they come,
// while the batch before is being published: the next batch is then what
// the buffer holds. (A subscription hands deliveries over one at a time,
// each when its reader asks: taking them only between batches, a batch
// would find one ready, not the many that arrived meanwhile.)
type reader struct {
	s    *Shovel
	sub  transport.Subscription
	buf  chan *transport.Delivery // closed when the subscription ends
	quit chan struct{}
	done chan struct{}
}

func (s *Shovel) read(sub transport.Subscription) *reader {
	// The source lends at most prefetch messages, so the buffer never
	// fills on a broker that honours it; quit ends a wait on one that does
	// not.
	r := &reader{s: s, sub: sub, buf: make(chan *transport.Delivery, s.cfg.prefetch),
		quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer close(r.buf)
		for {
			select {
			case d, ok := <-sub.Deliveries():
				if !ok {
					return
				}
				select {
				case r.buf <- d:
				case <-r.quit:
					s.requeue(d)
					return
				}
			case <-r.quit:
				return
			}
		}
	}()
	return r
}

// release cancels the subscription and returns to the source queue what
// it delivered and the shovel did not take, within the shutdown timeout.
func (r *reader) release() {
	ctx, cancel := context.WithTimeout(context.Background(), r.s.cfg.shutdownTimeout)
	defer cancel()
	if err := r.sub.Cancel(ctx); err != nil && !errors.Is(err, ErrClosed) {
		r.s.logger.Warn("kombu: shovel: cancel consuming the source", "error", err)
	}
	close(r.quit)
	<-r.done
	for d := range r.buf {
		r.s.requeue(d)
	}
	for {
		select {
		case d, ok := <-r.sub.Deliveries():
			if !ok {
				return
			}
			r.s.requeue(d)
		case <-ctx.Done():
			return
		}
	}
}

// requeue returns d to the source queue.
func (s *Shovel) requeue(d *transport.Delivery) {
	if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
		// After a lost connection (ErrClosed) the message is back in its
		// queue already: nothing to say.
		if !errors.Is(err, ErrClosed) {
			s.logger.Warn("kombu: shovel: return a message to the source queue", "error", err)
		}
		return
	}
	s.stats.requeued.Add(1)
}

// mover publishes batches and settles their source messages. Its buffers
// serve every batch of one serve.
type mover struct {
	s       *Shovel
	pubs    []transport.Publishing
	ptrs    []*transport.Publishing
	pending []int // indices in the batch not yet settled
	retry   []int
	acks    []int
	errs    []error
}

func newMover(s *Shovel, n int) *mover {
	return &mover{
		s:       s,
		pubs:    make([]transport.Publishing, n),
		ptrs:    make([]*transport.Publishing, 0, n),
		pending: make([]int, 0, n),
		retry:   make([]int, 0, n),
		acks:    make([]int, 0, n),
		errs:    make([]error, n),
	}
}

// move publishes the batch to the destination and settles each message at
// the source by its copy's fate. It returns how many messages it moved or
// dead-lettered, how many unroutable ones it returned to the source
// queue, and an error when Run must end: the messages not moved are back
// in the source queue then.
func (m *mover) move(ctx context.Context, ss *session, batch []*transport.Delivery) (settled, returned int, failure error) {
	s := m.s
	features := s.dst.features
	for i, d := range batch {
		p := &m.pubs[i]
		*p = transport.Publishing{
			Exchange:   s.exchange.Name,
			RoutingKey: d.RoutingKey,
			Mandatory:  features.Has(transport.FeatureMandatory),
			Confirm:    features.Has(transport.FeatureConfirms),
			Body:       d.Body,
			Headers:    d.Headers,
			Properties: d.Properties,
		}
		if d.Redelivered && d.Headers["redelivered"] == true {
			// Kombu's virtual transports mark a message they return to its
			// queue in its headers: a mark of the source's delivery, not
			// the producer's, and the copy is a first delivery.
			delete(d.Headers, "redelivered")
		}
		if s.cfg.keepExchange {
			p.Exchange = d.Exchange
		}
		if s.cfg.routingKey != nil {
			p.RoutingKey = *s.cfg.routingKey
		}
		if !features.Has(transport.FeaturePriority) {
			p.Priority = 0
		}
		if !features.Has(transport.FeatureTTL) {
			p.Expiration = 0
		}
	}
	defer clear(m.pubs[:len(batch)]) // the bodies are the source's: hold none past the batch
	m.pending = m.pending[:0]
	for i := range batch {
		m.pending = append(m.pending, i)
	}
	for attempt := 0; ; attempt++ {
		ds := s.dst.session()
		errs := m.publish(ctx, ds)
		s.stats.batches.Add(1)
		m.retry, m.acks = m.retry[:0], m.acks[:0]
		var lost, passing error // the last failure of each kind, for the log
		for j, i := range m.pending {
			err := errs[j]
			switch {
			case err == nil:
				m.acks = append(m.acks, i)
			case errors.Is(err, ErrUnroutable):
				if m.unroutable(batch[i], err) {
					settled++
					break
				}
				returned++
				if failure == nil && s.cfg.onUnroutable == ShovelStop {
					failure = fmt.Errorf("kombu: shovel from queue %s: the destination routed a message to no queue, so it went back to the source queue and the shovel stopped (declare the destination's queues with WithShovelDeclare, or see WithShovelOnUnroutable): %w",
						s.queue.Name, err)
				}
			case ctx.Err() != nil:
				// Shutting down, and the shutdown timeout has run out: its
				// fate is unknown, so it goes back (a copy may have gone).
				s.requeue(batch[i])
			case lasting(err):
				s.requeue(batch[i])
				if failure == nil {
					failure = fmt.Errorf("kombu: shovel from queue %s: the destination refused a message, which went back to the source queue: %w", s.queue.Name, err)
				}
			case errors.Is(err, ErrClosed):
				m.retry = append(m.retry, i)
				lost = err
			default:
				// A nack, a broker still loading its data after a restart,
				// a timeout: it may pass.
				m.retry = append(m.retry, i)
				passing = err
			}
		}
		settled += m.ack(batch)
		if len(m.retry) == 0 {
			return settled, returned, failure
		}
		if failure != nil {
			m.requeueAll(batch, m.retry)
			return settled, returned, failure
		}
		m.pending = append(m.pending[:0], m.retry...)
		if err := m.wait(ctx, ds, attempt, lost, passing); err != nil {
			m.requeueAll(batch, m.pending)
			var f *shovelFailure
			if errors.As(err, &f) {
				return settled, returned, f.err
			}
			return settled, returned, nil // shutting down
		}
		select {
		case <-ss.tc.Done():
			// The source's connection went while the shovel waited: the
			// messages held are back in the source queue already, and
			// publishing them now would only make copies.
			s.logger.Warn("kombu: shovel: the source connection was lost while the destination was away; its messages are moved again when the source delivers them again",
				"messages", len(m.pending))
			return settled, returned, nil
		default:
		}
		s.stats.republished.Add(uint64(len(m.pending)))
	}
}

// lasting reports whether a publish failed for a reason that waiting does
// not cure: the exchange does not exist, access is refused, a declaration
// conflicts, the destination cannot do what was asked, the message is too
// large.
func lasting(err error) bool {
	for _, target := range []error{ErrNotFound, ErrAccessRefused, ErrPrecondition, ErrNotSupported,
		ErrResourceLocked, ErrInvalidArgument, ErrEncode, ErrLimitExceeded} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// publish publishes the pending messages on the destination's session ds
// and returns each one's error (nil when all were confirmed).
func (m *mover) publish(ctx context.Context, ds *session) []error {
	s := m.s
	errs := m.errs[:len(m.pending)]
	clear(errs)
	all := func(err error) []error {
		for j := range errs {
			errs[j] = err
		}
		return errs
	}
	if err := s.declareDestination(ctx); err != nil {
		return all(err)
	}
	m.ptrs = m.ptrs[:0]
	for _, i := range m.pending {
		m.ptrs = append(m.ptrs, &m.pubs[i])
	}
	if bp, ok := ds.tc.(transport.BatchPublisher); ok && len(m.ptrs) > 1 {
		err := bp.PublishBatch(ctx, m.ptrs)
		if err == nil {
			return errs
		}
		var be *transport.BatchError
		if errors.As(err, &be) && len(be.Errs) == len(errs) {
			for j, e := range be.Errs {
				if e != nil {
					errs[j] = s.dst.op(describePublish(m.ptrs[j]), e)
				}
			}
			return errs
		}
		return all(s.dst.op(fmt.Sprintf("publish a batch of %d", len(m.ptrs)), err))
	}
	for j, p := range m.ptrs {
		if err := ds.tc.Publish(ctx, p); err != nil {
			errs[j] = s.dst.op(describePublish(p), err)
		}
	}
	return errs
}

// unroutable deals with a message the destination routed nowhere, as
// WithShovelOnUnroutable says, and reports whether it was settled for good
// (dead-lettered).
func (m *mover) unroutable(d *transport.Delivery, err error) bool {
	s := m.s
	if s.cfg.onUnroutable == ShovelDeadLetter {
		var rerr error
		if rr, ok := d.Acknowledger.(transport.ReasonRejecter); ok {
			rerr = rr.RejectWithReason(d.Tag, errorText(err))
		} else {
			rerr = d.Acknowledger.Reject(d.Tag, false)
		}
		if rerr != nil {
			s.logger.Warn("kombu: shovel: dead-letter an unroutable message at the source", "error", rerr)
			return false
		}
		s.stats.deadLettered.Add(1)
		s.logger.Error("kombu: shovel: a message reached no queue at the destination; dead-lettered at the source",
			"routing_key", d.RoutingKey, "error", err)
		return true
	}
	s.requeue(d)
	s.logger.Error("kombu: shovel: a message reached no queue at the destination; returned to the source queue",
		"routing_key", d.RoutingKey, "action", s.cfg.onUnroutable, "error", err)
	return false
}

// ack acknowledges at the source the messages the destination confirmed,
// and returns how many acknowledgements the source took.
func (m *mover) ack(batch []*transport.Delivery) int {
	s := m.s
	var lost error
	n := 0
	for _, i := range m.acks {
		d := batch[i]
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			s.stats.ackLost.Add(1)
			lost = err
			continue
		}
		n++
	}
	s.stats.moved.Add(uint64(n))
	if lost != nil {
		s.logger.Warn("kombu: shovel: the source did not take the acknowledgement of moved messages; it delivers them again, and the destination gets them twice",
			"messages", len(m.acks)-n, "error", lost)
	}
	return n
}

// requeueAll returns the messages of batch at the given indices to the
// source queue.
func (m *mover) requeueAll(batch []*transport.Delivery, idx []int) {
	for _, i := range idx {
		m.s.requeue(batch[i])
	}
}

// wait waits before the attempt after attempt: for the destination's next
// connection when lost says it was lost, for the back-off otherwise. It
// returns ctx's error when the shutdown ran out first, and a
// *shovelFailure when publishing must stop.
func (m *mover) wait(ctx context.Context, ds *session, attempt int, lost, passing error) error {
	s := m.s
	select {
	case <-s.dst.Done():
		return &shovelFailure{fmt.Errorf("kombu: shovel from queue %s: the destination connection is closed: %w", s.queue.Name, s.dst.Err())}
	default:
	}
	if lost != nil && s.dst.lostConnection(ds, lost) {
		s.logger.Warn("kombu: shovel: the destination connection was lost; publishing again once it is back",
			"messages", len(m.pending), "error", lost)
		if _, err := s.dst.nextSession(ctx, ds); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &shovelFailure{fmt.Errorf("kombu: shovel from queue %s: %w", s.queue.Name, err)}
		}
		return nil
	}
	why := passing
	if why == nil {
		why = lost
	}
	if !s.cfg.backoff.allows(attempt) {
		return &shovelFailure{fmt.Errorf("kombu: shovel from queue %s: the destination kept refusing %d messages, which went back to the source queue: %w",
			s.queue.Name, len(m.pending), why)}
	}
	wait := s.cfg.backoff.Interval(attempt)
	s.logger.Warn("kombu: shovel: the destination refused messages; publishing them again after a pause",
		"messages", len(m.pending), "wait", wait, "error", why)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the shovel as Run does when its context ends, and waits for
// Run to return. It is safe to call more than once, and before Run.
func (s *Shovel) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.started:
		<-s.done
	default:
	}
	return nil
}
