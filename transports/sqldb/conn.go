package sqldb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// conn is Kombu's virtual connection over the store (virtual.NewConn), with
// what kombu-go adds around it:
//
//   - exchange declarations are recorded in <tables>_go_exchange as well as
//     in the connection's memory, so that a process that never declared an
//     exchange routes through it by its type (topic, fanout) as the
//     declaring process does, and a declaration with another type fails
//     with transport.ErrPrecondition in any process, as on RabbitMQ;
//   - a database that cannot be reached loses the connection, as a broken
//     socket loses an AMQP one: Done closes, Err says why, subscriptions
//     end, and every later call fails with an error that is
//     transport.ErrClosed, so that the runtime opens a new connection and
//     makes the call again there. Messages delivered before the loss can
//     still be settled (the pool reconnects by itself); what cannot be
//     comes back when this connection's lease runs out.
type conn struct {
	transport.Conn // virtual.NewConn(store)
	s              *store

	mu      sync.Mutex
	lost    error
	closed  bool
	subs    map[*subscription]struct{}
	adopted map[string]time.Time // exchanges whose recorded type was looked up: when (zero: declared here)

	done     chan struct{}
	doneOnce sync.Once
}

// adoptRecheck is how long a connection trusts that an exchange it did not
// declare has no recorded type.
const adoptRecheck = 2 * time.Second

func newConn(s *store, inner transport.Conn) *conn {
	c := &conn{Conn: inner, s: s, subs: map[*subscription]struct{}{}, adopted: map[string]time.Time{}, done: make(chan struct{})}
	s.onLost = c.lose
	return c
}

// lose marks the connection lost, once, unless it is closed.
func (c *conn) lose(err error) {
	c.mu.Lock()
	if c.lost != nil {
		c.mu.Unlock()
		return
	}
	select {
	case <-c.done:
		c.mu.Unlock()
		return // closed
	default:
	}
	c.lost = err
	subs := make([]*subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.s.log.Warn("sqldb: connection lost: the database is unreachable", "url", c.s.o.display, "error", err)
	c.doneOnce.Do(func() { close(c.done) })
	for _, s := range subs {
		s.endedByLoss.Store(true)
		go s.Subscription.Cancel(context.Background()) // the take under way fails at once
	}
}

// lostErr returns why the connection was lost, or transport.ErrClosed once
// it is closed, or nil.
func (c *conn) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost != nil {
		return c.lost
	}
	if c.closed {
		return transport.ErrClosed
	}
	return nil
}

func (c *conn) Done() <-chan struct{} { return c.done }

func (c *conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

func (c *conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	err := c.Conn.Close()
	c.doneOnce.Do(func() { close(c.done) })
	if errors.Is(err, transport.ErrClosed) {
		return nil
	}
	return err
}

// DeclareExchange checks the declaration as Kombu's virtual transport
// does, records it in the exchange table unless an exchange of the name is
// recorded there, and fails with transport.ErrPrecondition if the
// recorded one has another type. A passive declaration also finds
// exchanges other processes recorded.
func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	if ex.Passive {
		err := c.Conn.DeclareExchange(ctx, ex)
		if !errors.Is(err, transport.ErrNotFound) {
			return err
		}
		if ok, aerr := c.adopt(ctx, ex.Name, true); aerr != nil || ok {
			return aerr
		}
		return err
	}
	if ex.Name == "" || strings.HasPrefix(ex.Name, "amq.") {
		return c.Conn.DeclareExchange(ctx, ex)
	}
	// Checked on its own first, so that nothing is recorded for what the
	// connection refuses.
	if err := virtual.NewExchanges().Declare(ex); err != nil {
		return fmt.Errorf("sqldb: %w", err)
	}
	want := ex
	if want.Type == "" {
		want.Type = transport.ExchangeDirect
	}
	have, _, err := c.s.declareExchange(ctx, want)
	if err != nil {
		return fmt.Errorf("sqldb: declare exchange %s: %w", ex.Name, err)
	}
	if have.Type != want.Type {
		return fmt.Errorf("sqldb: exchange %q is recorded as %s (%s), not %s: %w", ex.Name, have.Type, c.s.o.tables.exchange, want.Type, transport.ErrPrecondition)
	}
	if err := c.Conn.DeclareExchange(ctx, ex); err != nil {
		return err
	}
	c.mu.Lock()
	c.adopted[ex.Name] = time.Time{}
	c.mu.Unlock()
	return nil
}

// adopt declares, on the virtual connection, an exchange this connection
// did not declare but the exchange table records, so that it routes by the
// recorded type. It reports whether the exchange is recorded. Without
// force, a lookup made within adoptRecheck is trusted.
func (c *conn) adopt(ctx context.Context, name string, force bool) (bool, error) {
	if name == "" || strings.HasPrefix(name, "amq.") {
		return false, nil
	}
	c.mu.Lock()
	at, seen := c.adopted[name]
	c.mu.Unlock()
	if seen && (at.IsZero() || !force && time.Since(at) < adoptRecheck) {
		return at.IsZero(), nil
	}
	ex, found, err := c.s.exchange(ctx, name)
	if err != nil {
		return false, fmt.Errorf("sqldb: %w", err)
	}
	if !found {
		c.mu.Lock()
		c.adopted[name] = time.Now()
		c.mu.Unlock()
		return false, nil
	}
	if err := c.Conn.DeclareExchange(ctx, ex); err != nil && !errors.Is(err, transport.ErrPrecondition) {
		return false, err
	}
	c.mu.Lock()
	c.adopted[name] = time.Time{}
	c.mu.Unlock()
	return true, nil
}

// DeleteExchange deletes the exchange's bindings and record.
func (c *conn) DeleteExchange(ctx context.Context, name string, ifUnused bool) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	if err := c.Conn.DeleteExchange(ctx, name, ifUnused); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.adopted, name)
	c.mu.Unlock()
	return nil
}

func (c *conn) Bind(ctx context.Context, b transport.Binding) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	if _, err := c.adopt(ctx, b.Source, false); err != nil {
		return err
	}
	return c.Conn.Bind(ctx, b)
}

func (c *conn) Unbind(ctx context.Context, b transport.Binding) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	return c.Conn.Unbind(ctx, b)
}

func (c *conn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	if err := c.lostErr(); err != nil {
		return transport.QueueInfo{}, err
	}
	return c.Conn.DeclareQueue(ctx, q)
}

func (c *conn) DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error) {
	if err := c.lostErr(); err != nil {
		return 0, err
	}
	return c.Conn.DeleteQueue(ctx, name, ifUnused, ifEmpty)
}

func (c *conn) PurgeQueue(ctx context.Context, name string) (int, error) {
	if err := c.lostErr(); err != nil {
		return 0, err
	}
	return c.Conn.PurgeQueue(ctx, name)
}

// Publish fails with transport.ErrNotFound through an exchange that no
// process declared (recorded) and that has no bindings, as RabbitMQ does
// with an exchange that does not exist; one with bindings but no record
// (bound, never declared) is direct, as in Kombu.
func (c *conn) Publish(ctx context.Context, p *transport.Publishing) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	if err := c.exchangeExists(ctx, p.Exchange); err != nil {
		return err
	}
	return c.Conn.Publish(ctx, p)
}

func (c *conn) exchangeExists(ctx context.Context, name string) error {
	if name == "" || strings.HasPrefix(name, "amq.") {
		return nil
	}
	found, err := c.adopt(ctx, name, false)
	if err != nil || found {
		return err
	}
	bs, err := c.s.Bindings(ctx, name)
	if err != nil {
		return fmt.Errorf("sqldb: %w", err)
	}
	if len(bs) == 0 {
		return fmt.Errorf("sqldb: exchange %q: not declared (%s has no record of it) and no queue is bound to it: %w",
			name, c.s.o.tables.exchange, transport.ErrNotFound)
	}
	return nil
}

// PublishBatch writes the whole batch in one transaction of its own (in
// the caller's, under WithTx): one commit, one wait for the disk, for all
// of it. A message that is unroutable (mandatory) fails alone; a statement
// that fails rolls the transaction back, and then none of the batch is
// published, as the error says. A batch naming an exchange that does not
// exist publishes nothing.
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	for _, p := range ps {
		if err := c.exchangeExists(ctx, p.Exchange); err != nil {
			return err
		}
	}
	inner := c.Conn.(transport.BatchPublisher)
	if len(ps) < 2 || txFrom(ctx) != nil {
		return inner.PublishBatch(ctx, ps)
	}
	tx, err := c.s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqldb: %w", c.s.opError("begin the batch's transaction", err))
	}
	t := &txState{tx: tx, internal: true}
	err = inner.PublishBatch(context.WithValue(ctx, txKey{}, t), ps)
	if t.failed.Load() {
		tx.Rollback()
		return fmt.Errorf("sqldb: the batch's transaction was rolled back: none of its %d messages was published: %w", len(ps), err)
	}
	if cerr := tx.Commit(); cerr != nil {
		return fmt.Errorf("sqldb: none of the batch's %d messages was published: %w", len(ps), c.s.opError("commit the batch", cerr))
	}
	t.mu.Lock()
	for _, q := range slices.Compact(slices.Sorted(slices.Values(t.queues))) {
		c.s.hub.wake(q)
	}
	t.mu.Unlock()
	return err
}

func (c *conn) Get(ctx context.Context, queue string, autoAck bool) (*transport.Delivery, error) {
	if err := c.lostErr(); err != nil {
		return nil, err
	}
	return c.Conn.Get(ctx, queue, autoAck)
}

// Consume starts a subscription that also ends when the connection is
// lost, its Err then saying why.
func (c *conn) Consume(ctx context.Context, spec transport.ConsumeSpec) (transport.Subscription, error) {
	if err := c.lostErr(); err != nil {
		return nil, err
	}
	inner, err := c.Conn.Consume(ctx, spec)
	if err != nil {
		return nil, err
	}
	s := &subscription{Subscription: inner, c: c}
	c.mu.Lock()
	lost := c.lost
	if lost == nil {
		c.subs[s] = struct{}{}
	}
	c.mu.Unlock()
	if lost != nil {
		s.endedByLoss.Store(true)
		go inner.Cancel(context.Background())
	}
	go func() {
		<-inner.Done()
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
	}()
	return s, nil
}

// subscription is a virtual subscription whose Err reports the loss of
// its connection.
type subscription struct {
	transport.Subscription
	c           *conn
	endedByLoss atomic.Bool
}

var _ transport.PrefetchSetter = (*subscription)(nil)

// SetPrefetch changes the prefetch of the virtual subscription, which reads
// it before each take (transport.FeatureLivePrefetch).
func (s *subscription) SetPrefetch(ctx context.Context, n int) error {
	return s.Subscription.(transport.PrefetchSetter).SetPrefetch(ctx, n)
}

func (s *subscription) Err() error {
	if err := s.Subscription.Err(); err != nil {
		return err
	}
	if s.endedByLoss.Load() {
		return fmt.Errorf("sqldb: the subscription ended: %w", s.c.lostErr())
	}
	return nil
}
