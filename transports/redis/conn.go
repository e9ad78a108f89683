package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

const features = transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout |
	transport.FeaturePriority | transport.FeatureConfirms | transport.FeatureMandatory |
	transport.FeatureDeadLetter | transport.FeatureDelay | transport.FeatureLivePrefetch

// opTimeout bounds the commands a connection sends on its own behalf
// (taking, acknowledging, restoring), which have no caller's context.
const opTimeout = 30 * time.Second

// queueDecl is a queue declared on this connection.
type queueDecl struct {
	exclusive, autoDelete bool
}

type conn struct {
	rdb  goredis.UniversalClient // *Client, or *ClusterClient for redis+cluster://
	opts *options
	ks   keyspace
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	lost      *lostError // set once Redis was found unreachable (see loss.go)
	queues    map[string]queueDecl
	subs      map[*subscription]struct{}
	lastCtag  uint64
	bgStarted bool // restorer and wake hub
	delay     delayMover

	unroutable map[string]struct{} // unacked tags the restorer could not route, warned about

	onUnroutable func(exchange, routingKey, reason string) // transport.Config.Unroutable; set once

	// Dead-letter configurations of the queues declared here, under a lock
	// of their own, taken last (Reject reads them under its scope's lock).
	dlxMu sync.Mutex
	dlx   map[string]*virtual.DeadLetter

	// Exchanges live in this connection's memory only, as in Kombu.
	exchanges *virtual.Exchanges

	routes   routeCache
	watching atomic.Bool // the wake hub was started for the route cache
	gets     *ackScope

	receipts *receipts     // keys of take receipts (receipt.go)
	takeSeq  atomic.Uint64 // numbers takes, for their receipts

	leaseMu sync.Mutex
	leased  map[string]struct{} // unacked hash keys of messages this connection holds unsettled

	acks     *ackFlusher
	settling sync.WaitGroup // rejections writing to Redis, which Close waits for
	hub      *wakeHub
	relay    *fanoutRelay // fanout bindings and the broadcasts they receive
	bgStop   chan struct{}
	bgWG     sync.WaitGroup
	done     chan struct{} // closed when the connection is lost or closed
	doneOnce sync.Once
	finished chan struct{} // closed when Close has returned
}

var (
	_ transport.Conn           = (*conn)(nil)
	_ transport.BatchPublisher = (*conn)(nil)
)

func newConn(rdb goredis.UniversalClient, o *options, log *slog.Logger) *conn {
	c := &conn{
		rdb:  rdb,
		opts: o,
		ks: keyspace{
			prefix:         o.keyprefix,
			fanoutPrefix:   o.fanoutPrefix,
			fanoutPatterns: o.fanoutPatterns,
			unacked:        o.keyprefix + o.unackedKey,
			unackedIndex:   o.keyprefix + o.unackedIndexKey,
			unackedMutex:   o.keyprefix + o.unackedMutexKey,
			sharded:        o.sharded,
		},
		log:        log,
		exchanges:  virtual.NewExchanges(),
		queues:     map[string]queueDecl{},
		unroutable: map[string]struct{}{},
		dlx:        map[string]*virtual.DeadLetter{},
		subs:       map[*subscription]struct{}{},
		leased:     map[string]struct{}{},
		bgStop:     make(chan struct{}),
		done:       make(chan struct{}),
		finished:   make(chan struct{}),
	}
	rdb.AddHook(lossHook{c})
	c.routes.tables = map[string]*routeTable{}
	c.routes.trusted = map[string]bool{}
	c.routes.gen = map[string]uint64{}
	c.gets = &ackScope{c: c}
	c.receipts = newReceipts(o.keyprefix)
	c.relay = newFanoutRelay(c)
	c.acks = newAckFlusher(c)
	c.bgWG.Add(2)
	go c.acks.run()
	go c.leaseLoop()
	return c
}

func (c *conn) Features() transport.Features {
	if c.ks.sharded {
		// Dead-lettering and delays move a message between keys that,
		// sharded, live in different slots: not done in one step there.
		return features &^ (transport.FeatureDeadLetter | transport.FeatureDelay)
	}
	return features
}

// check fails once the connection is closed or lost, or ctx is done.
func (c *conn) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.lost != nil:
		return c.lost
	case c.closed:
		return transport.ErrClosed
	}
	return nil
}

// wrap adds the operation to a Redis error and maps it to the transport's
// sentinels where one fits: Redis unreachable is the connection lost.
func (c *conn) wrap(op string, err error) error {
	if unreachable(err) {
		return fmt.Errorf("redis: %s: %w", op, &lostError{cause: err})
	}
	return wrapErr(op, err)
}

func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: %s: %w", op, transport.ErrClosed)
	}
	msg := err.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM", "ERR invalid password", "ERR AUTH"} {
		if strings.HasPrefix(msg, p) {
			return fmt.Errorf("redis: %s: %w: %v", op, transport.ErrAccessRefused, err)
		}
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// exchangeType returns the type this connection knows an exchange by.
// Like Kombu, an exchange it never declared is taken to be direct.
func (c *conn) exchangeType(name string) string { return c.exchanges.Type(name) }

// DeclareExchange records the exchange in this connection's memory, as
// Kombu's virtual transport does: nothing is written to Redis. A passive
// declaration succeeds if this connection declared the exchange or the
// exchange has bindings in Redis.
func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if !ex.Passive {
		if err := c.exchanges.Declare(ex); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
	if c.exchanges.Known(ex.Name) {
		return nil
	}
	n, err := c.rdb.Exists(ctx, c.ks.binding(ex.Name)).Result()
	if err != nil {
		return c.wrap("declare exchange "+ex.Name, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: exchange %q: not declared on this connection and has no bindings: %w", ex.Name, transport.ErrNotFound)
	}
	return nil
}

// DeleteExchange forgets the exchange and deletes its binding set.
func (c *conn) DeleteExchange(ctx context.Context, name string, ifUnused bool) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	key := c.ks.binding(name)
	if ifUnused {
		n, err := c.rdb.SCard(ctx, key).Result()
		if err != nil {
			return c.wrap("delete exchange "+name, err)
		}
		if n > 0 {
			return fmt.Errorf("redis: exchange %q has %d bindings: %w", name, n, transport.ErrInUse)
		}
	}
	if err := c.rdb.Del(ctx, key).Err(); err != nil {
		return c.wrap("delete exchange "+name, err)
	}
	c.exchanges.Forget(name)
	c.relay.dropExchange(name)
	c.routes.forget(name)
	return nil
}

// DeclareQueue writes nothing, as in Kombu: a Redis queue exists while one
// of its lists holds messages. A passive declaration succeeds if one does,
// or if this connection declared the queue.
func (c *conn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	if err := c.check(ctx); err != nil {
		return transport.QueueInfo{}, err
	}
	if q.Passive {
		if q.Name == "" {
			return transport.QueueInfo{}, fmt.Errorf("redis: passive declaration of a queue without a name: %w", transport.ErrNotFound)
		}
		n, exists, err := c.size(ctx, q.Name)
		if err != nil {
			return transport.QueueInfo{}, c.wrap("declare queue "+q.Name, err)
		}
		c.mu.Lock()
		_, declared := c.queues[q.Name]
		c.mu.Unlock()
		if !exists && !declared {
			return transport.QueueInfo{}, fmt.Errorf("redis: queue %q: no messages and not declared on this connection: %w", q.Name, transport.ErrNotFound)
		}
		return transport.QueueInfo{Name: q.Name, Messages: n}, nil
	}
	// Every Kombu queue on Redis has priority buckets 0, 3, 6 and 9,
	// whatever its x-max-priority.
	dlx, err := virtual.QueueArguments(q, "x-max-priority")
	if err != nil {
		return transport.QueueInfo{}, fmt.Errorf("redis: %w", err)
	}
	if dlx != nil && c.ks.sharded {
		return transport.QueueInfo{}, fmt.Errorf("redis: dead-letter exchanges on a Redis Cluster in cluster_mode=sharded: %w", transport.ErrNotSupported)
	}
	if q.Name == "" {
		q.Name = "amq.gen-" + virtual.NewDeliveryTag()
	}
	if err := c.ks.checkQueue(q.Name); err != nil {
		return transport.QueueInfo{}, err
	}
	n, _, err := c.size(ctx, q.Name)
	if err != nil {
		return transport.QueueInfo{}, c.wrap("declare queue "+q.Name, err)
	}
	c.mu.Lock()
	c.queues[q.Name] = queueDecl{exclusive: q.Exclusive, autoDelete: q.AutoDelete}
	c.mu.Unlock()
	c.setDeadLetter(q.Name, dlx)
	return transport.QueueInfo{Name: q.Name, Messages: n}, nil
}

// size returns the number of messages in a queue's lists (Kombu's _size)
// and whether any of them exists (Kombu's _has_queue).
func (c *conn) size(ctx context.Context, queue string) (int, bool, error) {
	keys := c.ks.buckets(queue)
	cmds := make([]*goredis.IntCmd, len(keys))
	_, err := c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.LLen(ctx, k)
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, n > 0, nil
}

// DeleteQueue deletes the queue's lists and its bindings. Redis does not
// know a queue's consumers, so ifUnused cannot be honoured and is refused.
func (c *conn) DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error) {
	if err := c.check(ctx); err != nil {
		return 0, err
	}
	if ifUnused {
		return 0, fmt.Errorf("redis: delete queue %q if unused: Redis does not know a queue's consumers: %w", name, transport.ErrNotSupported)
	}
	if ifEmpty {
		n, _, err := c.size(ctx, name)
		if err != nil {
			return 0, c.wrap("delete queue "+name, err)
		}
		if n > 0 {
			return 0, fmt.Errorf("redis: queue %q has %d messages: %w", name, n, transport.ErrInUse)
		}
	}
	if err := c.endConsumers(ctx, name); err != nil {
		return 0, c.wrap("delete queue "+name, err)
	}
	n, err := c.deleteQueue(ctx, name)
	return n, c.wrap("delete queue "+name, err)
}

// endConsumers ends this connection's subscriptions to the queue, as a
// broker that knows its consumers cancels them when their queue goes, and
// waits until they have put back what they took but did not hand over, so
// that it is deleted with the rest. Redis does not know the consumers of
// other connections: those keep waiting on the name.
func (c *conn) endConsumers(ctx context.Context, queue string) error {
	gone := fmt.Errorf("redis: queue %q was deleted: %w", queue, transport.ErrNotFound)
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

// deleteQueue deletes a queue's lists and removes it from every binding set.
func (c *conn) deleteQueue(ctx context.Context, name string) (int, error) {
	// Stop copying broadcasts first, or one could recreate the list.
	c.relay.dropQueue(name)
	n, err := c.purge(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := c.unbindEverywhere(ctx, name); err != nil {
		return n, err
	}
	c.mu.Lock()
	delete(c.queues, name)
	c.mu.Unlock()
	c.setDeadLetter(name, nil)
	return n, nil
}

// unbindEverywhere removes the queue from every binding set. Kombu only
// removes the bindings the deleting channel made itself; bindings made by
// others would keep routing messages to a deleted queue, recreating it.
func (c *conn) unbindEverywhere(ctx context.Context, queue string) error {
	match := escapeGlob(c.ks.binding("")) + "*"
	suffix := sep + queue
	return c.scanKeys(ctx, match, func(keys []string) error {
		for _, key := range keys {
			members, err := c.rdb.SMembers(ctx, key).Result()
			if err != nil {
				return err
			}
			var gone []any
			for _, m := range members {
				if strings.HasSuffix(m, suffix) {
					if b, ok := parseBindingMember(m); ok && b.Queue == queue {
						gone = append(gone, m)
					}
				}
			}
			if len(gone) > 0 {
				if err := c.rdb.SRem(ctx, key, gone...).Err(); err != nil {
					return err
				}
				c.routes.forget(strings.TrimPrefix(key, c.ks.binding("")))
			}
		}
		return nil
	})
}

// escapeGlob escapes the characters SCAN MATCH and PSUBSCRIBE treat as
// wildcards.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// PurgeQueue empties the queue's lists: Kombu's _purge, LLEN and DEL of
// each bucket in one transaction. Unsettled messages stay unsettled.
func (c *conn) PurgeQueue(ctx context.Context, name string) (int, error) {
	if err := c.check(ctx); err != nil {
		return 0, err
	}
	n, err := c.purge(ctx, name)
	return n, c.wrap("purge queue "+name, err)
}

func (c *conn) purge(ctx context.Context, name string) (int, error) {
	keys := c.ks.buckets(name)
	cmds := make([]*goredis.IntCmd, len(keys))
	_, err := c.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.LLen(ctx, k)
			p.Del(ctx, k)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, cmd := range cmds {
		n += int(cmd.Val())
	}
	return n, nil
}

// Bind adds Kombu's binding member to the exchange's set: the routing key,
// the Python regular expression Kombu matches topic keys with (empty for
// other types) and the queue. The exchange's type is the one this
// connection declared it with (direct if it did not, as in Kombu). For a
// fanout exchange, Bind also subscribes to the exchange's channel and
// returns once Redis has applied the subscription, so that a broadcast
// published after Bind returns is copied into the queue's list (see
// fanout.go).
func (c *conn) Bind(ctx context.Context, b transport.Binding) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if b.DestinationIsExchange {
		return fmt.Errorf("redis: exchange-to-exchange bindings: %w", transport.ErrNotSupported)
	}
	if len(b.Arguments) > 0 {
		return fmt.Errorf("redis: binding arguments %v: %w", slices.Sorted(maps.Keys(b.Arguments)), transport.ErrNotSupported)
	}
	if b.Destination == "" {
		return fmt.Errorf("redis: bind: no queue given")
	}
	source := b.Source
	if source == "" {
		source = "amq.direct" // as Kombu's queue_bind
	}
	typ := c.exchangeType(source)
	if err := c.rdb.SAdd(ctx, c.ks.binding(source), bindingMember(virtual.BindingFor(typ, b.RoutingKey, b.Destination))).Err(); err != nil {
		return c.wrap("bind "+b.Destination, err)
	}
	c.routes.forget(source)
	if typ == transport.ExchangeFanout {
		// The binding member stays if subscribing fails, as it would
		// after any bind that failed half-way; binding again is harmless.
		if err := c.relay.bind(ctx, b.Destination, fanoutBindingFor(source, b.RoutingKey)); err != nil {
			return c.wrap("bind "+b.Destination+": subscribe to fanout exchange "+source, err)
		}
	}
	return nil
}

// fanoutBindingFor is the fanout binding a routing key makes: Kombu
// subscribes with '#' turned to '*' (Redis patterns have no '#').
func fanoutBindingFor(exchange, routingKey string) fanoutBinding {
	return fanoutBinding{exchange: exchange, key: strings.ReplaceAll(routingKey, "#", "*")}
}

// Unbind removes the binding member. Both forms a binding can have been
// written in (with and without a topic pattern) are removed, since the
// connection that bound may have known the exchange's type differently.
// (Kombu 5.2's unbind removes nothing from Redis.)
func (c *conn) Unbind(ctx context.Context, b transport.Binding) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	if b.DestinationIsExchange {
		return fmt.Errorf("redis: exchange-to-exchange bindings: %w", transport.ErrNotSupported)
	}
	source := b.Source
	if source == "" {
		source = "amq.direct"
	}
	err := c.rdb.SRem(ctx, c.ks.binding(source),
		bindingMember(virtual.BindingFor(transport.ExchangeDirect, b.RoutingKey, b.Destination)),
		bindingMember(virtual.BindingFor(transport.ExchangeTopic, b.RoutingKey, b.Destination))).Err()
	if err != nil {
		return c.wrap("unbind "+b.Destination, err)
	}
	c.routes.forget(source)
	// From here on, no broadcast received is copied into the queue.
	c.relay.unbind(b.Destination, fanoutBindingFor(source, b.RoutingKey))
	return nil
}

// Get takes one message (Kombu's basic_get: RPOP over the priority
// buckets), recording it as unacked in the same step unless autoAck.
func (c *conn) Get(ctx context.Context, queue string, autoAck bool) (*transport.Delivery, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	if err := c.ks.checkQueue(queue); err != nil {
		return nil, err
	}
	c.startDelayMover() // delay.go: due messages reach the queue
	receipt := c.receipts.acquire()
	entries, lost, err := c.take(ctx, []string{queue}, []string{pyQuote(queue)}, 1, !autoAck, receipt)
	if lost != nil {
		// The key stays with the recovery: no other take may overwrite
		// its receipt first.
		c.recoverLater(*lost)
	} else {
		c.receipts.release(receipt)
	}
	if err != nil {
		return nil, c.wrap("get from "+queue, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("redis: queue %q: %w", queue, transport.ErrEmpty)
	}
	e := entries[0]
	d := e.delivery("")
	if !autoAck {
		if c.gets.track(e, d) {
			d.Acknowledger = c.gets
		} else {
			// Closed while taking: put it back.
			c.returnEntries([]*entry{e})
			return nil, transport.ErrClosed
		}
	}
	return d, nil
}

func pyQuote(s string) string { return string(virtual.AppendPyString(nil, s)) }

// Done is closed when the connection is lost (see loss.go) or closed.
func (c *conn) Done() <-chan struct{} { return c.done }

// Err says why the connection was lost: Redis became unreachable. It is
// nil while the connection is up, and after Close of one never lost.
func (c *conn) Err() error { return c.lostErr() }

// Close stops copying broadcasts, ends the subscriptions, sends the
// acknowledgements not yet sent, returns every unsettled message to the
// front of its queue marked redelivered (Kombu's restore at channel
// close), deletes the exclusive queues this connection declared and the
// auto-delete ones it bound to a fanout exchange (as Kombu does at channel
// close), and closes the client.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.finished
		return nil
	}
	c.closed = true
	lost := c.lost != nil
	subs := slices.Collect(maps.Keys(c.subs))
	queues := maps.Clone(c.queues)
	c.mu.Unlock()

	// First, so that no broadcast lands in a queue about to be deleted.
	c.relay.close()
	var doomed []string
	for name, q := range queues {
		if !(q.exclusive || q.autoDelete && c.relay.bound(name)) {
			continue
		}
		// A connection that was lost has been replaced by one that
		// declares the same queues again: a queue with a name of its own
		// is the new connection's now. Server-named ones are not reused.
		if lost && !strings.HasPrefix(name, "amq.gen-") {
			continue
		}
		doomed = append(doomed, name)
	}

	for _, s := range subs {
		s.end(fmt.Errorf("redis: connection closed while consuming: %w", transport.ErrClosed))
	}
	for _, s := range subs {
		<-s.done
	}
	// Close the acknowledgers first: an Ack either made it into the
	// flusher's queue before, and is flushed below, or fails with
	// ErrClosed and its message is restored.
	var unsettled []*entry
	for _, s := range subs {
		unsettled = append(unsettled, s.acks.takeAll()...)
	}
	unsettled = append(unsettled, c.gets.takeAll()...)
	c.settling.Wait()
	close(c.bgStop)
	c.bgWG.Wait() // restorer, leaser, ack flusher (which flushes on the way out)
	if c.hub != nil {
		c.hub.close()
	}
	c.returnEntries(unsettled)

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// In the sharded mode Get's receipts are per queue (keyspace.receiptOf)
	// and left to expire.
	if keys := c.receipts.idle(); len(keys) > 0 && !lost && !c.ks.sharded {
		_ = c.rdb.Del(ctx, keys...).Err() // they would expire anyway
	}
	for _, name := range doomed {
		if _, err := c.deleteQueue(ctx, name); err != nil {
			errs = append(errs, c.wrap("delete exclusive queue "+name, err))
		}
	}
	if err := c.rdb.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		errs = append(errs, err)
	}
	c.doneOnce.Do(func() { close(c.done) })
	close(c.finished)
	return errors.Join(errs...)
}

// startBackground starts what consumers need: the visibility-timeout
// restorer and the wake-up hub.
func (c *conn) startBackground() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bgStarted || c.closed {
		return
	}
	c.bgStarted = true
	c.startDelayMoverLocked() // delay.go
	c.startHubLocked()
	c.bgWG.Add(1)
	go c.restoreLoop()
}

// startHub starts the wake hub alone, for a connection that publishes
// through bindings: it watches the binding sets (see publish.go).
func (c *conn) startHub() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.startHubLocked()
	}
}

func (c *conn) startHubLocked() {
	if c.hub == nil {
		c.hub = newWakeHub(c)
	}
}
