package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Routing. Bindings live in Redis sets that any client (Go or Python) may
// change at any time, so a route is not trusted without a way to know it
// changed. The connection caches each exchange's binding set and routes
// locally with it, in one of two ways:
//
//   - Checked: it publishes through publishScript with the set's
//     fingerprint; the script pushes only if the set is still the one
//     routed with, and otherwise returns the current members for the
//     connection to route again. A binding changed by anyone is used by the
//     very next publish, at the cost of a script run (a few microseconds of
//     server time) per publish.
//   - Watched: while the connection's wake hub has Redis announce every
//     write to the binding sets (client tracking in broadcast mode, see
//     wake.go), a table that a publish confirmed (the script accepted its
//     fingerprint) or read afresh, with no announcement for its exchange
//     since, is trusted: a message to one queue is then a plain LPUSH, as
//     fast as the bare client. An announcement drops the table, and the
//     next publish checks again. A binding changed by anyone is therefore
//     used by every publish that starts once the announcement reached this
//     process (well under a millisecond on one host, as the tests measure);
//     if the hub loses its tracking without a broken connection to tell it,
//     it finds out within verifyInterval (2 s) by CLIENT TRACKINGINFO and
//     trusts nothing until tracking is back: the bound on how stale a
//     route can be. The URL option exact_bindings=true turns this off,
//     for Kombu's own guarantee (it reads the set on every publish) at the
//     script's cost.
//
// Publishing through an exchange to several queues always goes through the
// script, which pushes to all of them in one step.

// routeTable is the cached binding set of one exchange, with the
// fingerprint publishScript checks it by.
type routeTable struct {
	*virtual.Routes
	fp string
}

func newRouteTable(members []string) *routeTable {
	bindings := make([]virtual.Binding, 0, len(members))
	for _, m := range members {
		if b, ok := parseBindingMember(m); ok {
			bindings = append(bindings, b)
		}
	}
	return &routeTable{Routes: virtual.NewRoutes(bindings), fp: bindingFingerprint(members)}
}

// routeCache holds a connection's route tables, and which of them are
// trusted (see above).
type routeCache struct {
	mu       sync.Mutex
	tables   map[string]*routeTable
	trusted  map[string]bool
	gen      map[string]uint64 // announcements of a change, per exchange
	epoch    uint64            // bumped whenever all trust is withdrawn
	watching bool              // the hub has Redis announce binding changes
}

// routeStamp is what a route cache knew before a read of a binding set:
// a table read or confirmed after it may be trusted only if nothing was
// announced for its exchange since, and the watch did not lapse.
type routeStamp struct {
	epoch, gen uint64
	watching   bool
}

func (rc *routeCache) get(exchange string) *routeTable {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.tables[exchange]
}

// lookup returns the exchange's table, whether it is trusted, and a stamp
// to confirm it with later.
func (rc *routeCache) lookup(exchange string) (*routeTable, bool, routeStamp) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.tables[exchange], rc.trusted[exchange], routeStamp{rc.epoch, rc.gen[exchange], rc.watching}
}

func (rc *routeCache) stamp(exchange string) routeStamp {
	_, _, st := rc.lookup(exchange)
	return st
}

func (rc *routeCache) valid(exchange string, st routeStamp) bool {
	return st.watching && rc.watching && st.epoch == rc.epoch && st.gen == rc.gen[exchange]
}

func (rc *routeCache) put(exchange string, t *routeTable) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.putLocked(exchange, t)
}

func (rc *routeCache) putLocked(exchange string, t *routeTable) {
	if len(rc.tables) > 4096 {
		clear(rc.tables)
		clear(rc.trusted)
	}
	rc.tables[exchange] = t
	delete(rc.trusted, exchange)
}

// putRead caches a table read from Redis after st was taken, trusted if
// nothing changed meanwhile.
func (rc *routeCache) putRead(exchange string, t *routeTable, st routeStamp) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.putLocked(exchange, t)
	if rc.valid(exchange, st) {
		rc.trusted[exchange] = true
	}
}

// confirm trusts t, which the script just accepted, if it is still the
// exchange's table and nothing changed since st.
func (rc *routeCache) confirm(exchange string, t *routeTable, st routeStamp) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.tables[exchange] == t && rc.valid(exchange, st) {
		rc.trusted[exchange] = true
	}
}

func (rc *routeCache) forget(exchange string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	delete(rc.tables, exchange)
	delete(rc.trusted, exchange)
}

// changed records Redis's announcement that an exchange's binding set
// changed.
func (rc *routeCache) changed(exchange string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.gen) > 4096 {
		clear(rc.gen)
		rc.epoch++
		clear(rc.trusted)
	}
	rc.gen[exchange]++
	delete(rc.tables, exchange)
	delete(rc.trusted, exchange)
}

// watch says whether Redis now announces binding changes; every change of
// that, and every doubt (an announcement without keys, a broken
// subscriber), withdraws all trust.
func (rc *routeCache) watch(on bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.watching = on
	rc.epoch++
	clear(rc.trusted)
}

// Publish sends one message. Redis acknowledges every write before the
// reply comes back, so a nil error means the message is in Redis (or, for
// a fanout exchange, was handed to the subscribers connected then).
func (c *conn) Publish(ctx context.Context, p *transport.Publishing) error {
	return c.publish(ctx, []*transport.Publishing{p})
}

// PublishBatch sends every message in pipelines of up to 512 commands: one
// round trip per pipeline rather than one per message. A message that
// fails fails alone; a *transport.BatchError says which did.
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	return c.publish(ctx, ps)
}

const pipelineChunk = 512

// pubOp is one message on its way: the command that sends it, and what is
// needed to build that command again after its route went stale.
type pubOp struct {
	p      *transport.Publishing
	kind   byte // 'd' default exchange, 'f' fanout, 'r' routed through bindings
	typ    string
	head   []byte // the envelope up to its delivery tag
	err    error
	done   bool
	cmd    goredis.Cmder // nil: routed nowhere by a trusted table
	routes []string
	table  *routeTable // the table a routed message was routed with
	stamp  routeStamp
	multi  []*goredis.IntCmd // the sharded mode: one LPUSH per queue routed to
}

func (c *conn) publish(ctx context.Context, ps []*transport.Publishing) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	ops := make([]*pubOp, len(ps))
	for i, p := range ps {
		op := &pubOp{p: p}
		ops[i] = op
		if p.Expiration > 0 {
			op.err = fmt.Errorf("redis: message expiration (Kombu stores it on Redis but nothing enforces it): %w", transport.ErrNotSupported)
			op.done = true
			continue
		}
		head, err := virtual.AppendEnvelopeHead(make([]byte, 0, 256+len(p.Body)*4/3), p)
		if err != nil {
			op.err, op.done = err, true
			continue
		}
		op.head = head
		if p.Delay > 0 && c.ks.sharded {
			op.err = fmt.Errorf("redis: delayed messages on a Redis Cluster in cluster_mode=sharded: %w", transport.ErrNotSupported)
			op.done = true
			continue
		}
		switch {
		case p.Exchange == "" && p.RoutingKey == "":
			// No queue has the empty name: the message goes nowhere.
			op.done = true
			if p.Mandatory {
				op.err = fmt.Errorf("redis: the default exchange with an empty routing key names no queue: %w", transport.ErrUnroutable)
			}
			c.notifyUnroutable(p, "the default exchange with an empty routing key names no queue")
		case p.Exchange == "":
			op.kind = 'd'
		default:
			op.typ = c.exchangeType(p.Exchange)
			if op.typ == transport.ExchangeFanout {
				op.kind = 'f'
			} else {
				op.kind = 'r'
				if !c.watching.Load() && !c.opts.exactBindings && !c.ks.sharded {
					c.watching.Store(true)
					c.startHub() // to watch the binding sets
				}
			}
		}
	}
	for start := 0; start < len(ops); start += pipelineChunk {
		if err := c.publishChunk(ctx, ops[start:min(start+pipelineChunk, len(ops))]); err != nil {
			for _, op := range ops[start:] {
				if !op.done {
					op.err, op.done = err, true
				}
			}
			break
		}
	}
	if len(ops) == 1 {
		return ops[0].err
	}
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = op.err
	}
	if err := transport.NewBatchError(errs); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// publishChunk sends a chunk of messages in one pipeline, then again for
// those whose binding set changed under them, until all are settled.
func (c *conn) publishChunk(ctx context.Context, ops []*pubOp) error {
	for round := 0; ; round++ {
		var pending []*pubOp
		for _, op := range ops {
			if !op.done {
				pending = append(pending, op)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if round == 10 {
			return errors.New("redis: publish: the bindings kept changing while routing")
		}
		if c.ks.sharded {
			// Nothing announces binding changes here (no wake hub
			// watches the sets), and no script can check a set and push
			// to queues in other slots: read the sets afresh every time.
			for _, op := range pending {
				if op.kind == 'r' {
					c.routes.forget(op.p.Exchange)
				}
			}
		}
		// Read the binding sets not cached yet, in one round trip.
		if err := c.loadTables(ctx, pending); err != nil {
			return c.wrap("publish", err)
		}
		if len(pending) == 1 {
			// One message: its command alone, without a pipeline's
			// bookkeeping (a publish one at a time is the common case).
			c.queueOp(ctx, c.rdb, pending[0])
		} else {
			pipe := c.rdb.Pipeline()
			for _, op := range pending {
				c.queueOp(ctx, pipe, op)
			}
			if _, err := pipe.Exec(ctx); err != nil && !isCommandError(err) {
				return c.wrap("publish", err)
			}
		}
		noscript := false
		for _, op := range pending {
			if op.multi != nil {
				var errs []error
				for _, cmd := range op.multi {
					if err := cmd.Err(); err != nil {
						errs = append(errs, err)
					}
				}
				if err := errors.Join(errs...); err != nil {
					// Some queues may have it: the publish fails, and a
					// publish made again duplicates it in those.
					op.err, op.done = c.wrap("publish", err), true
					continue
				}
				c.routed(op, int64(len(op.multi)))
				continue
			}
			switch cmd := op.cmd.(type) {
			case nil: // a trusted table routed it nowhere
				c.routed(op, 0)
			case *goredis.IntCmd: // LPUSH or PUBLISH
				if err := cmd.Err(); err != nil {
					op.err, op.done = c.wrap("publish", err), true
				} else if op.kind == 'f' && op.p.Mandatory && cmd.Val() == 0 {
					op.err, op.done = fmt.Errorf("redis: fanout exchange %q has no subscriber: %w", op.p.Exchange, transport.ErrUnroutable), true
				} else {
					op.done = true
					if op.kind == 'f' && cmd.Val() == 0 {
						c.notifyUnroutable(op.p, "the fanout exchange has no subscriber")
					}
				}
			case *goredis.Cmd: // publishScript
				v, err := cmd.Result()
				switch {
				case goredis.HasErrorPrefix(err, "NOSCRIPT"):
					noscript = true
				case err != nil:
					op.err, op.done = c.wrap("publish", err), true
				default:
					switch v := v.(type) {
					case int64:
						c.routes.confirm(op.p.Exchange, op.table, op.stamp)
						c.routed(op, v)
					case []any:
						members := make([]string, 0, len(v))
						for _, m := range v {
							if s, ok := m.(string); ok {
								members = append(members, s)
							}
						}
						c.routes.putRead(op.p.Exchange, newRouteTable(members), op.stamp)
					default:
						op.err, op.done = fmt.Errorf("redis: publish: unexpected reply %T", v), true
					}
				}
			}
		}
		if noscript {
			if err := publishScript.Load(ctx, c.rdb).Err(); err != nil {
				return c.wrap("load publish script", err)
			}
		}
	}
}

// routed settles a message routed through bindings to n queues.
func (c *conn) routed(op *pubOp, n int64) {
	op.done = true
	if n == 0 && op.p.Mandatory {
		op.err = fmt.Errorf("redis: no queue bound to exchange %q with routing key %q: %w", op.p.Exchange, op.p.RoutingKey, transport.ErrUnroutable)
	} else if n == 0 {
		c.notifyUnroutable(op.p, "no queue is bound to the exchange with a matching key")
	}
}

// notifyUnroutable tells the runtime that p reached no queue, if p asked to
// be told and is not mandatory (a mandatory message fails instead).
func (c *conn) notifyUnroutable(p *transport.Publishing, reason string) {
	if p.NotifyUnroutable && !p.Mandatory && c.onUnroutable != nil {
		c.onUnroutable(p.Exchange, p.RoutingKey, reason)
	}
}

// isCommandError reports whether a pipeline error is one command's error
// (reported on that command) rather than a failure of the connection.
func isCommandError(err error) bool {
	var rerr goredis.Error
	return errors.As(err, &rerr)
}

func (c *conn) loadTables(ctx context.Context, ops []*pubOp) error {
	var missing []string
	for _, op := range ops {
		if op.kind == 'r' && c.routes.get(op.p.Exchange) == nil && !slices.Contains(missing, op.p.Exchange) {
			missing = append(missing, op.p.Exchange)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	stamps := make([]routeStamp, len(missing))
	for i, ex := range missing {
		stamps[i] = c.routes.stamp(ex)
	}
	cmds := make([]*goredis.StringSliceCmd, len(missing))
	_, err := c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, ex := range missing {
			cmds[i] = p.SMembers(ctx, c.ks.binding(ex))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, ex := range missing {
		c.routes.putRead(ex, newRouteTable(cmds[i].Val()), stamps[i])
	}
	return nil
}

// queueOp adds the command that sends op to the pipeline, or, given the
// client itself, sends it.
func (c *conn) queueOp(ctx context.Context, pipe goredis.Cmdable, op *pubOp) {
	p := op.p
	if p.Delay > 0 {
		c.queueDelayed(ctx, pipe, op) // delay.go
		return
	}
	step := stepFor(int(p.Priority))
	switch op.kind {
	case 'd':
		// The default exchange: the routing key names the queue (Kombu's
		// anonymous exchange), with no lookup.
		op.cmd = pipe.LPush(ctx, c.ks.bucket(p.RoutingKey, step), virtual.AppendEnvelopeTail(op.head, virtual.NewDeliveryTag()))
	case 'f':
		op.cmd = pipe.Publish(ctx, c.ks.fanoutChannel(p.Exchange, p.RoutingKey), virtual.AppendEnvelopeTail(op.head, virtual.NewDeliveryTag()))
	default:
		t, trusted, st := c.routes.lookup(p.Exchange)
		if t == nil {
			t = newRouteTable(nil)
		}
		queues := t.Lookup(op.typ, p.RoutingKey)
		op.table, op.stamp = t, st
		if c.ks.sharded {
			// The table was read in this round (publishChunk). Each
			// queue is in a slot of its own: one LPUSH each, pipelined,
			// which the cluster client sends to each master at once.
			op.routes = queues
			op.cmd = nil
			if len(queues) == 0 {
				return // routed nowhere
			}
			op.multi = make([]*goredis.IntCmd, len(queues))
			for i, q := range queues {
				op.multi[i] = pipe.LPush(ctx, c.ks.bucket(q, step), virtual.AppendEnvelopeTail(op.head[:len(op.head):len(op.head)], virtual.NewDeliveryTag()))
			}
			return
		}
		if trusted && len(queues) <= 1 {
			op.routes = queues
			if len(queues) == 0 {
				op.cmd = nil // settled without a command: routed nowhere
				return
			}
			op.cmd = pipe.LPush(ctx, c.ks.bucket(queues[0], step), virtual.AppendEnvelopeTail(op.head, virtual.NewDeliveryTag()))
			return
		}
		keys := make([]string, 1, 1+len(queues))
		keys[0] = c.ks.binding(p.Exchange)
		args := make([]any, 1, 1+len(queues))
		args[0] = t.fp
		for _, q := range queues {
			keys = append(keys, c.ks.bucket(q, step))
			// Each queue's copy gets its own delivery tag (Kombu gives them
			// all the same one), so that the copies' unacked records, keyed
			// by tag, cannot collide.
			args = append(args, virtual.AppendEnvelopeTail(op.head[:len(op.head):len(op.head)], virtual.NewDeliveryTag()))
		}
		op.routes = queues
		op.cmd = publishScript.EvalSha(ctx, pipe, keys, args...)
	}
}
