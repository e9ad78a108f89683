package gcpubsub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// features are what Kombu's gcpubsub transport implements: direct and
// fanout exchanges (Pub/Sub routes; Kombu raises NotImplementedError for
// the others), and publishes that return once the service has them.
// Consumers are the virtual connection's, which read their prefetch before
// every pull, so it can change while they run.
const features = transport.FeatureDirect | transport.FeatureFanout | transport.FeatureConfirms | transport.FeatureDeadLetter |
	transport.FeatureLivePrefetch

// conn is Kombu's virtual connection with Pub/Sub's routing: a publish
// through an exchange is one message on the exchange's topic, which the
// subscriptions' filters route, and a binding is a subscription. The
// default exchange, consumers and settlement are the virtual
// connection's, over the store.
type conn struct {
	transport.Conn
	s *store

	mu    sync.Mutex
	types map[string]string // exchanges declared on this connection
}

var _ transport.BatchPublisher = (*conn)(nil)

func newConn(inner transport.Conn, s *store) *conn {
	return &conn{Conn: inner, s: s, types: map[string]string{}}
}

func (c *conn) Features() transport.Features { return features }

func errorf(format string, args ...any) error { return fmt.Errorf("gcpubsub: "+format, args...) }

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr(err) {
		return err
	}
	return fmt.Errorf("gcpubsub: %s: %w", op, err)
}

func ctxErr(err error) bool {
	return err == context.Canceled || err == context.DeadlineExceeded
}

// closed fails once the connection is closed.
func (c *conn) closed() error {
	select {
	case <-c.Done():
		return transport.ErrClosed
	default:
		return nil
	}
}

// typeOf is the exchange's type as this connection declared it; direct
// otherwise, as Kombu treats an exchange it does not know.
func (c *conn) typeOf(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.types[name]; ok {
		return t
	}
	return transport.ExchangeDirect
}

// DeclareExchange makes the exchange's topic (Kombu makes it at the first
// binding; a publish to a topic that does not exist fails) and refuses
// the exchange types Kombu's transport does not have.
func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	if err := c.closed(); err != nil {
		return err
	}
	if ex.Passive {
		if c.s.deletedHere(ex.Name) {
			return errorf("exchange %q was deleted: %w", ex.Name, transport.ErrNotFound)
		}
		ok, err := c.s.topicExists(ctx, ex.Name)
		if err != nil {
			return wrap("declare exchange "+ex.Name, err)
		}
		if !ok {
			return errorf("exchange %q: no topic: %w", ex.Name, transport.ErrNotFound)
		}
		return nil
	}
	switch ex.Type {
	case transport.ExchangeDirect, transport.ExchangeFanout, "":
	default:
		return errorf("%s exchange %q (Pub/Sub routes direct and fanout exchanges only, as Kombu): %w", ex.Type, ex.Name, transport.ErrNotSupported)
	}
	if err := c.Conn.DeclareExchange(ctx, ex); err != nil {
		return err
	}
	retention := c.s.o.expiration
	if ex.Type == transport.ExchangeFanout {
		retention = fanoutRetention
	}
	if err := c.s.ensureTopic(ctx, c.s.topicPath(ex.Name), retention); err != nil {
		return wrap("declare exchange", err)
	}
	c.s.undelete(ex.Name)
	c.mu.Lock()
	c.types[ex.Name] = ex.Type
	c.mu.Unlock()
	return nil
}

// DeleteExchange deletes the topic and forgets the type.
func (c *conn) DeleteExchange(ctx context.Context, name string, ifUnused bool) error {
	if err := c.Conn.DeleteExchange(ctx, name, ifUnused); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.types, name)
	c.mu.Unlock()
	return nil
}

// DeclareQueue declares the queue (the virtual connection's way, which
// keeps x-dead-letter-exchange for rejections) and, where the queue also
// has RabbitMQ's x-delivery-limit, gives its subscription Pub/Sub's own
// dead-letter policy: the dead-letter exchange's topic, after
// x-delivery-limit+1 delivery attempts (see deliveryLimit).
func (c *conn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	attempts, args, err := deliveryLimit(q)
	if err != nil {
		return transport.QueueInfo{}, err
	}
	if attempts == 0 {
		return c.Conn.DeclareQueue(ctx, q)
	}
	inner := q
	inner.Arguments = args
	info, err := c.Conn.DeclareQueue(ctx, inner)
	if err != nil || q.Passive {
		return info, err
	}
	dlx := q.Arguments["x-dead-letter-exchange"].(string) // checked by deliveryLimit
	return info, wrap("declare queue "+q.Name, c.s.setDeadLetter(ctx, q.Name, dlx, attempts))
}

// Pub/Sub's bounds on a dead-letter policy's max_delivery_attempts.
const (
	minDeliveryAttempts = 5
	maxDeliveryAttempts = 100
)

// deliveryLimit reads RabbitMQ's x-delivery-limit (a quorum queue's: a
// message delivered and returned more than that many times is
// dead-lettered) as Pub/Sub's max_delivery_attempts, the limit plus one,
// and returns the queue's arguments without it. Pub/Sub forwards such a
// message itself, as it is, to one topic: so the limit needs a
// dead-letter exchange that is not the default exchange (whose queues are
// topics of their own) and no x-dead-letter-routing-key (Pub/Sub cannot
// change the message's routing_key attribute), and Pub/Sub's bounds (5 to
// 100 attempts: a limit from 4 to 99). Zero attempts: no limit.
func deliveryLimit(q transport.Queue) (int32, map[string]any, error) {
	v, ok := q.Arguments["x-delivery-limit"]
	if !ok {
		return 0, q.Arguments, nil
	}
	var limit int64
	switch n := v.(type) {
	case int:
		limit = int64(n)
	case int32:
		limit = int64(n)
	case int64:
		limit = n
	case float64:
		limit = int64(n)
		if float64(limit) != n {
			return 0, nil, errorf("queue %q: argument x-delivery-limit=%v: not a whole number: %w", q.Name, v, transport.ErrPrecondition)
		}
	default:
		return 0, nil, errorf("queue %q: argument x-delivery-limit=%v: not a number: %w", q.Name, v, transport.ErrPrecondition)
	}
	dlx, _ := q.Arguments["x-dead-letter-exchange"].(string)
	_, hasKey := q.Arguments["x-dead-letter-routing-key"]
	switch {
	case limit < minDeliveryAttempts-1 || limit > maxDeliveryAttempts-1:
		return 0, nil, errorf("queue %q: argument x-delivery-limit=%d: Pub/Sub's dead-letter policy takes %d to %d delivery attempts, a limit from %d to %d: %w",
			q.Name, limit, minDeliveryAttempts, maxDeliveryAttempts, minDeliveryAttempts-1, maxDeliveryAttempts-1, transport.ErrNotSupported)
	case dlx == "":
		return 0, nil, errorf("queue %q: argument x-delivery-limit needs x-dead-letter-exchange naming an exchange (Pub/Sub forwards to one topic; it drops nothing): %w", q.Name, transport.ErrNotSupported)
	case hasKey:
		return 0, nil, errorf("queue %q: x-delivery-limit with x-dead-letter-routing-key (Pub/Sub forwards a message with its own routing_key attribute): %w", q.Name, transport.ErrNotSupported)
	}
	args := make(map[string]any, len(q.Arguments)-1)
	for k, v := range q.Arguments {
		if k != "x-delivery-limit" {
			args[k] = v
		}
	}
	return int32(limit + 1), args, nil
}

// Bind makes the exchange's subscription for the queue (see store.bind).
func (c *conn) Bind(ctx context.Context, b transport.Binding) error {
	if err := c.closed(); err != nil {
		return err
	}
	switch {
	case b.DestinationIsExchange:
		return errorf("exchange-to-exchange bindings: %w", transport.ErrNotSupported)
	case len(b.Arguments) > 0:
		return errorf("binding arguments %v: %w", slices.Sorted(maps.Keys(b.Arguments)), transport.ErrNotSupported)
	case b.Destination == "":
		return errorf("bind: no queue given")
	case b.Source == "":
		return errorf("bind %q to the default exchange: every queue is bound to it already: %w", b.Destination, transport.ErrNotSupported)
	}
	return wrap("bind "+b.Destination+" to "+b.Source, c.s.bind(ctx, b.Source, c.typeOf(b.Source), b.RoutingKey, b.Destination))
}

// Unbind removes the binding (see store.unbind).
func (c *conn) Unbind(ctx context.Context, b transport.Binding) error {
	if err := c.closed(); err != nil {
		return err
	}
	if b.DestinationIsExchange {
		return errorf("exchange-to-exchange bindings: %w", transport.ErrNotSupported)
	}
	return wrap("unbind "+b.Destination+" from "+b.Source, c.s.unbind(ctx, b.Source, b.RoutingKey, b.Destination))
}

// refuse returns the error for what a Pub/Sub publish cannot do.
func refuse(p *transport.Publishing) error {
	switch {
	case p.Mandatory:
		return errorf("mandatory publishing (Pub/Sub does not tell whether a subscription took a message): %w", transport.ErrNotSupported)
	case p.Expiration > 0:
		return errorf("message expiration: %w", transport.ErrNotSupported)
	case p.Priority != 0:
		return errorf("message priority %d: %w", p.Priority, transport.ErrNotSupported)
	}
	return nil
}

// envelope writes Kombu's envelope for p.
func envelope(p *transport.Publishing) (*pubsubpb.PubsubMessage, error) {
	head, err := virtual.AppendEnvelopeHead(make([]byte, 0, 320+len(p.Body)*4/3), p)
	if err != nil {
		return nil, fmt.Errorf("gcpubsub: %w", err)
	}
	return message(virtual.AppendEnvelopeTail(head, virtual.NewDeliveryTag()), p.RoutingKey, true), nil
}

// Publish sends the message through the default exchange to its queue
// (the virtual connection's way), or through another exchange to the
// exchange's topic with the routing_key attribute, where the
// subscriptions' filters route it (Kombu's _put and _put_fanout).
func (c *conn) Publish(ctx context.Context, p *transport.Publishing) error {
	if err := refuse(p); err != nil {
		return err
	}
	if p.Exchange == "" {
		return c.Conn.Publish(ctx, p)
	}
	if err := c.closed(); err != nil {
		return err
	}
	if c.s.deletedHere(p.Exchange) {
		return errorf("publish to exchange %q: deleted: %w", p.Exchange, transport.ErrNotFound)
	}
	m, err := envelope(p)
	if err != nil {
		return err
	}
	if c.typeOf(p.Exchange) == transport.ExchangeFanout {
		m.Attributes = nil
	}
	return wrap("publish to exchange "+p.Exchange, c.s.publish(ctx, c.s.topicPath(p.Exchange), []*pubsubpb.PubsubMessage{m}))
}

// PublishBatch sends the batch's messages through each exchange in as few
// requests as Pub/Sub takes (1000 messages and 10 MB a request, see
// store.publishSplit), and those to the default exchange one by one (the
// virtual connection's way). A message that fails alone (one over Pub/Sub's
// size limit, or a request the service refused) makes the error a
// *transport.BatchError naming it; the others are delivered.
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	if err := c.closed(); err != nil {
		return err
	}
	for _, p := range ps {
		if err := refuse(p); err != nil {
			return err
		}
	}
	errs := make([]error, len(ps))
	var direct []*transport.Publishing
	var directAt []int
	byTopic := map[string][]int{} // exchange -> indexes into ps
	msgs := make([]*pubsubpb.PubsubMessage, len(ps))
	var order []string
	for i, p := range ps {
		if p.Exchange == "" {
			direct = append(direct, p)
			directAt = append(directAt, i)
			continue
		}
		m, err := envelope(p)
		if err != nil {
			errs[i] = err
			continue
		}
		if c.typeOf(p.Exchange) == transport.ExchangeFanout {
			m.Attributes = nil
		}
		msgs[i] = m
		if _, ok := byTopic[p.Exchange]; !ok {
			order = append(order, p.Exchange)
		}
		byTopic[p.Exchange] = append(byTopic[p.Exchange], i)
	}
	if len(direct) > 0 {
		err := c.Conn.(transport.BatchPublisher).PublishBatch(ctx, direct)
		var be *transport.BatchError
		switch {
		case err == nil:
		case errors.As(err, &be) && len(be.Errs) == len(direct):
			for j, e := range be.Errs {
				errs[directAt[j]] = e
			}
		default:
			for _, i := range directAt {
				errs[i] = err
			}
		}
	}
	for _, ex := range order {
		at := byTopic[ex]
		if c.s.deletedHere(ex) {
			err := errorf("publish to exchange %q: deleted: %w", ex, transport.ErrNotFound)
			for _, i := range at {
				errs[i] = err
			}
			continue
		}
		batch := make([]*pubsubpb.PubsubMessage, len(at))
		for j, i := range at {
			batch[j] = msgs[i]
		}
		for j, err := range c.s.publishSplit(ctx, c.s.topicPath(ex), batch) {
			if err != nil {
				errs[at[j]] = wrap("publish to exchange "+ex, err)
			}
		}
	}
	if len(ps) == 1 {
		return errs[0]
	}
	return transport.NewBatchError(errs)
}
