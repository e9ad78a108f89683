package kombu

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/kombu-go/kombu/runtime/transport"
)

// SimpleQueue is Kombu's SimpleQueue: a queue used like a Go channel
// between programs, holding values of type T. Put publishes a T; Get
// waits for one and decodes it. T is a proto message (a pointer to a
// generated message type) or any value a serializer handles: a struct, a
// map, a string, []byte.
//
// It declares what Kombu's conn.SimpleQueue(name) declares, so that a
// Python program and a Go one using the same name share the queue, on
// RabbitMQ and on Redis: a durable direct exchange named name, and a
// durable queue named name bound to it with the routing key name. Put
// publishes to that exchange with that key, persistent, serialized as
// Kombu's Producer does by default: []byte raw, a string as text, any
// other value as JSON (a proto message as protojson with its proto field
// names, which Python reads as a dict). Get does not acknowledge what it
// returns: settle each message with Ack (or Reject, or Requeue), as a Kombu
// program does with no_ack=False. WithAutoAck makes Get acknowledge instead.
//
// Like Kombu's, a SimpleQueue starts consuming at its first Get and keeps
// consuming until Close, without a prefetch limit: the broker sends it
// messages as they come, and they wait in the process, unsettled, for the
// next Get (Close returns those no Get took to the queue). Len counts only
// the messages still in the broker's queue. For many consumers sharing a
// queue fairly, with a bounded prefetch, use a Consumer.
//
// Options: PublishOptions set the default of every Put (WithSerializer,
// WithCompression, ...), ReceiveOptions how Get receives (WithAccept,
// WithAutoAck), and WithSimpleTopology changes the queue and exchange
// declared, as Kombu's queue_opts, queue_args and exchange_opts do.
//
// A SimpleQueue is safe for concurrent use.
type SimpleQueue[T any] struct{ simple[T] }

// SimpleBuffer is Kombu's SimpleBuffer: a SimpleQueue for messages that may
// be lost. Its exchange and queue are transient and auto-delete (the queue
// goes, with what it holds, when its consumer does: at Close, once Get has
// started consuming), its messages transient, and Get acknowledges what it
// returns (Kombu's no_ack=True), so the program settles nothing. Kombu's
// main branch makes the queue exclusive too, for RabbitMQ 4.3, which
// refuses transient queues that are not; its releases, up to 5.6.2, do
// not. kombu-go declares what those releases declare;
// WithSimpleTopology(func(q *Queue, _ *Exchange) { q.Exclusive = true })
// declares the other.
//
// Get acknowledges a message only once it has decoded it: one that does not
// decode to T comes back unsettled with the error, as from a SimpleQueue.
type SimpleBuffer[T any] struct{ simple[T] }

type simpleConfig struct {
	receiveConfig
	publish  []PublishOption
	entities []func(q *Queue, ex *Exchange)
}

// WithSimpleTopology has fn change the queue and the exchange a simple
// queue declares, before it declares them: Kombu's queue_opts, queue_args
// and exchange_opts. Python programs sharing the queue must declare the
// same, or RabbitMQ refuses the second declaration (ErrPrecondition).
func WithSimpleTopology(fn func(q *Queue, ex *Exchange)) SimpleOption {
	return simpleOption(func(c *simpleConfig) { c.entities = append(c.entities, fn) })
}

// NewSimpleQueue declares the exchange and queue named name (see
// SimpleQueue) and returns the queue. An empty name fails with
// ErrInvalidArgument.
func NewSimpleQueue[T any](ctx context.Context, conn *Connection, name string, opts ...SimpleOption) (*SimpleQueue[T], error) {
	q := &SimpleQueue[T]{}
	err := q.setUp(ctx, conn, name, Exchange{Name: name, Type: ExchangeDirect}, Queue{Name: name, Bindings: simpleBinding(name)}, false, opts)
	if err != nil {
		return nil, err
	}
	return q, nil
}

// NewSimpleBuffer declares the transient exchange and queue named name (see
// SimpleBuffer) and returns the buffer. An empty name fails with
// ErrInvalidArgument.
func NewSimpleBuffer[T any](ctx context.Context, conn *Connection, name string, opts ...SimpleOption) (*SimpleBuffer[T], error) {
	q := &SimpleBuffer[T]{}
	ex := Exchange{Name: name, Type: ExchangeDirect, Transient: true, AutoDelete: true, DeliveryMode: Transient}
	queue := Queue{Name: name, Bindings: simpleBinding(name), Transient: true, AutoDelete: true}
	err := q.setUp(ctx, conn, name, ex, queue, true, opts)
	if err != nil {
		return nil, err
	}
	return q, nil
}

// simpleBinding binds a simple queue to its exchange, Kombu's way: both
// named name, and name the routing key.
func simpleBinding(name string) []Binding { return []Binding{{Exchange: name, RoutingKey: name}} }

// simple is what SimpleQueue and SimpleBuffer share: everything.
type simple[T any] struct {
	conn     *Connection
	exchange Exchange
	queue    Queue
	producer *Producer
	autoAck  bool
	accept   *acceptList

	declareMu sync.Mutex
	declared  atomic.Uint64 // the session the exchange and queue were last declared on

	mu         sync.Mutex
	sub        transport.Subscription // started by the first Get; nil until then and after Close
	subSession *session
	closed     bool
	closing    chan struct{} // closed by Close
}

// setUp applies opts to Kombu's exchange and queue for the name, declares
// them, and makes the producer Put publishes with.
func (q *simple[T]) setUp(ctx context.Context, conn *Connection, name string, ex Exchange, queue Queue, autoAck bool, opts []SimpleOption) error {
	if name == "" {
		return fmt.Errorf("%w: a simple queue needs a name: it names its exchange, queue and routing key", ErrInvalidArgument)
	}
	cfg := simpleConfig{receiveConfig: receiveConfig{autoAck: autoAck}}
	for _, o := range opts {
		o.applySimple(&cfg)
	}
	for _, fn := range cfg.entities {
		fn(&queue, &ex)
	}
	accept, err := conn.codecs.accept(cfg.accept)
	if err != nil {
		return err
	}
	producerOpts := []ProducerOption{WithExchange(ex), WithRoutingKey(name)}
	if !queue.Exclusive {
		// Declared again before a publish on a new broker connection, which
		// may have lost it. An exclusive queue belongs to Get's side: Put
		// declares it as Get does (ensureDeclared).
		producerOpts = append(producerOpts, WithDeclare(queue))
	}
	for _, o := range cfg.publish {
		producerOpts = append(producerOpts, o)
	}
	*q = simple[T]{
		conn:     conn,
		exchange: ex,
		queue:    queue,
		producer: NewProducer(conn, producerOpts...),
		autoAck:  cfg.autoAck,
		accept:   accept,
		closing:  make(chan struct{}),
	}
	return q.ensureDeclared(ctx)
}

// ensureDeclared declares the exchange and the queue, with its binding,
// unless they were declared on the current broker connection. The broker
// may have lost them with an earlier one, and on Redis the queue is known
// to exist only to a connection that declared it.
func (q *simple[T]) ensureDeclared(ctx context.Context) error {
	s := q.conn.session()
	if q.declared.Load() == s.gen {
		return nil
	}
	q.declareMu.Lock()
	defer q.declareMu.Unlock()
	if q.declared.Load() == s.gen {
		return nil
	}
	if err := q.exchange.Declare(ctx, q.conn); err != nil {
		return err
	}
	if _, err := q.queue.Declare(ctx, q.conn); err != nil {
		return err
	}
	q.declared.Store(s.gen)
	return nil
}

// Put publishes v to the queue, with the options given to the constructor
// and then opts. With publisher confirms (RabbitMQ), it returns once the
// broker has it.
func (q *simple[T]) Put(ctx context.Context, v T, opts ...PublishOption) error {
	if err := q.check(); err != nil {
		return err
	}
	if err := q.ensureDeclared(ctx); err != nil {
		return err
	}
	return q.producer.Publish(ctx, v, opts...)
}

// Get waits for a message, decodes it into a T and returns both. When ctx
// ends first it fails with ErrEmpty (and ctx's error); after Close, with
// ErrClosed. The message is unsettled unless the queue acknowledges on
// receipt (SimpleBuffer, WithAutoAck): Ack it once handled.
//
// A message that does not decode to T (a body of another shape, a content
// type WithAccept refuses, a corrupt compressed body) is returned with an
// error wrapping ErrDecode or ErrContentDisallowed and the zero T, and
// left unsettled, whatever the acknowledgement mode: it is not lost. Reject
// it to dead-letter it (or drop it, if its queue has no dead-letter
// exchange), Requeue it, or decode its Body some other way. Left unsettled,
// it goes back to the queue when the connection closes.
func (q *simple[T]) Get(ctx context.Context) (T, *Message, error) {
	var zero T
	for {
		sub, s, err := q.subscription(ctx)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrClosed) {
				return zero, nil, q.emptyError(ctx)
			}
			return zero, nil, err
		}
		select {
		case d, ok := <-sub.Deliveries():
			if ok {
				return q.take(d, s)
			}
			if err := q.subscriptionEnded(ctx, sub, s); err != nil {
				return zero, nil, err
			}
		case <-ctx.Done():
			return zero, nil, q.emptyError(ctx)
		case <-q.closing:
			return zero, nil, q.closedError()
		}
	}
}

// GetNowait returns a message at once, Kombu's get_nowait: one the queue's
// consumer (started by Get) holds, or else one fetched from the broker's
// queue (AMQP basic.get). It fails with ErrEmpty when there is none, and
// treats the message as Get does. Once Get has started consuming, the
// broker sends the queue's messages to the queue's consumer: one on its
// way is neither in the queue nor held yet, and GetNowait misses it, as
// Kombu's does.
func (q *simple[T]) GetNowait(ctx context.Context) (T, *Message, error) {
	var zero T
	if err := q.check(); err != nil {
		return zero, nil, err
	}
	q.mu.Lock()
	sub, s := q.sub, q.subSession
	q.mu.Unlock()
	if sub != nil && s == q.conn.session() {
		select {
		case d, ok := <-sub.Deliveries():
			if ok {
				return q.take(d, s)
			}
		default:
		}
	}
	if err := q.ensureDeclared(ctx); err != nil {
		return zero, nil, err
	}
	s = q.conn.session()
	d, err := s.tc.Get(ctx, q.queue.Name, false)
	if errors.Is(err, ErrEmpty) {
		return zero, nil, fmt.Errorf("kombu: simple queue %s: %w", q.queue.Name, ErrEmpty)
	}
	if err != nil {
		return zero, nil, q.conn.op("get from queue "+q.queue.Name, err)
	}
	return q.take(d, s)
}

// Len returns how many messages wait in the broker's queue (Kombu's qsize):
// not those the queue's consumer already holds for Get.
func (q *simple[T]) Len(ctx context.Context) (int, error) {
	if err := q.check(); err != nil {
		return 0, err
	}
	if err := q.ensureDeclared(ctx); err != nil {
		return 0, err
	}
	info, err := q.queue.Inspect(ctx, q.conn)
	return info.Messages, err
}

// Clear removes the messages waiting in the broker's queue and returns how
// many (Kombu's clear). Those the queue's consumer already holds stay.
func (q *simple[T]) Clear(ctx context.Context) (int, error) {
	if err := q.check(); err != nil {
		return 0, err
	}
	if err := q.ensureDeclared(ctx); err != nil {
		return 0, err
	}
	return q.queue.Purge(ctx, q.conn)
}

// Close stops consuming, as Kombu's close does: the messages the broker sent
// that no Get took go back to the queue (a SimpleBuffer's queue is deleted
// then, with them). Messages Get returned stay as they are, to be settled.
// Put, Get and the rest then fail with ErrClosed. The connection stays
// open. Closing twice is not an error.
func (q *simple[T]) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.closing)
	sub := q.sub
	q.sub, q.subSession = nil, nil
	q.mu.Unlock()
	if sub == nil {
		return nil
	}
	ctx, cancel := q.conn.declareContext()
	defer cancel()
	err := sub.Cancel(ctx)
	if errors.Is(err, ErrClosed) {
		err = nil // the connection is gone, and the broker has the messages back
	}
	for {
		select {
		case d, ok := <-sub.Deliveries():
			if !ok {
				return q.conn.op("cancel consuming from queue "+q.queue.Name, err)
			}
			if rerr := d.Acknowledger.Reject(d.Tag, true); rerr != nil && !errors.Is(rerr, ErrClosed) {
				err = errors.Join(err, rerr)
			}
		case <-ctx.Done():
			return q.conn.op("cancel consuming from queue "+q.queue.Name, errors.Join(err, ctx.Err()))
		}
	}
}

// subscription returns the consumer Get reads from, started on the current
// broker connection if it is not running there yet.
func (q *simple[T]) subscription(ctx context.Context) (transport.Subscription, *session, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, nil, q.closedError()
	}
	s := q.conn.session()
	if q.sub != nil && q.subSession == s {
		return q.sub, s, nil
	}
	// A consumer on an earlier connection went with it; the broker has put
	// back what it held.
	q.sub, q.subSession = nil, nil
	if err := q.ensureDeclared(ctx); err != nil {
		return nil, nil, err
	}
	// Manual acknowledgement even where Get acknowledges itself: the
	// broker keeps what the process holds for Get until Get has taken it,
	// so Close can give it back rather than lose it.
	sub, err := s.tc.Consume(ctx, transport.ConsumeSpec{Queues: []string{q.queue.Name}})
	if err != nil {
		return nil, nil, q.conn.op("consume from queue "+q.queue.Name, err)
	}
	q.sub, q.subSession = sub, s
	return sub, s, nil
}

// subscriptionEnded deals with the end of the consumer Get was reading: it
// returns nil when Get should try again (the connection was lost and is
// back), and otherwise why Get fails.
func (q *simple[T]) subscriptionEnded(ctx context.Context, sub transport.Subscription, s *session) error {
	q.mu.Lock()
	if q.sub == sub {
		q.sub, q.subSession = nil, nil
	}
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return q.closedError()
	}
	err := sub.Err()
	if err == nil {
		err = fmt.Errorf("kombu: the consumer ended unasked: %w", ErrClosed)
	}
	if !q.conn.lostConnection(s, err) {
		return q.conn.op("consume from queue "+q.queue.Name, err) // the queue was deleted, say
	}
	if _, werr := q.conn.nextSession(ctx, s); werr != nil {
		if ctx.Err() != nil {
			return q.emptyError(ctx)
		}
		return errors.Join(err, werr)
	}
	return nil
}

// take turns a delivery into a message and its value. A message whose
// value does not decode is returned unsettled, with the error.
func (q *simple[T]) take(d *transport.Delivery, s *session) (T, *Message, error) {
	var zero T
	msg, err := q.conn.newMessage(d, q.accept, s.gen)
	if err != nil {
		return zero, msg, fmt.Errorf("kombu: simple queue %s: %w", q.queue.Name, err)
	}
	v, err := decodeAs[T](msg)
	if err != nil {
		return zero, msg, fmt.Errorf("kombu: simple queue %s: %w", q.queue.Name, err)
	}
	if q.autoAck {
		if err := msg.Ack(); err != nil {
			return zero, msg, err
		}
		// Settled here: Ack on the caller's side is the no-op it is on an
		// auto-acknowledged message, as in Kombu.
		msg.acker = nil
	}
	return v, msg, nil
}

// decodeAs decodes msg into a new T. A T that is a pointer to a proto
// message gets a new message to decode into: decoders take a proto.Message,
// not a pointer to a nil one.
func decodeAs[T any](msg *Message) (T, error) {
	var v T
	if m, ok := any(v).(proto.Message); ok {
		m = m.ProtoReflect().New().Interface()
		if err := msg.Decode(m); err != nil {
			return v, err
		}
		return m.(T), nil
	}
	err := msg.Decode(&v)
	return v, err
}

func (q *simple[T]) check() error {
	select {
	case <-q.closing:
		return q.closedError()
	default:
		return nil
	}
}

func (q *simple[T]) closedError() error {
	return fmt.Errorf("kombu: simple queue %s is closed: %w", q.queue.Name, ErrClosed)
}

func (q *simple[T]) emptyError(ctx context.Context) error {
	return fmt.Errorf("kombu: simple queue %s: %w before the context ended: %w", q.queue.Name, ErrEmpty, ctx.Err())
}
