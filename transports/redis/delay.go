package redis

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Delayed delivery (transport.FeatureDelay). Kombu's Redis transport has
// none, so the layout is kombu-go's, in keys no Kombu process reads: a
// delayed message is routed when it is published, as any message, but
// instead of being pushed to its queues' lists it waits in a sorted set
// per queue, scored by its due time, until a kombu-go connection moves it
// to the list. A Python consumer of the queue therefore sees the message
// only once it is due, and then as any other message.
//
//	_kombu_go.delayed                   ZSET: target → the earliest due time in its set
//	_kombu_go.delayed.q:<queue>         ZSET: <step><envelope> scored by due time
//	_kombu_go.delayed.f:<channel>       ZSET: <envelope> of a fanout message, scored likewise
//
// (global_keyprefix comes first, as on every key.) Due times are
// milliseconds since the Unix epoch on the Redis server's clock (TIME),
// read by the scripts, so that clients' clocks never matter. <step> is the
// message's priority step (0 to 3, Kombu's buckets 0, 3, 6 and 9); the
// envelope is Kombu's, as the list would hold it, with a delivery tag of
// its own per queue, which also keeps members apart.
//
// Moving is one Lua script per target, atomic: it pushes every due
// message to its list (LPUSH, as a publish) or, for a fanout exchange,
// PUBLISHes it on the exchange's channel, removes it from the set and
// updates the index, so a message is moved once however many connections
// move at the same time. Every kombu-go connection that consumes, gets or
// publishes a delayed message moves due messages for everyone, every
// queue of the database: it reads the index's earliest due time, sleeps
// until then (a second at most, so that a message another process delayed
// is seen in time), and moves what is due. A message therefore arrives at
// most a second late while any kombu-go process is connected; with none,
// it waits in its set until one connects. Redis keeps the sets as it keeps
// the lists: with AOF or RDB persistence they survive a restart.
//
// Routing happens at publish, as for every message on this transport: a
// binding made during the delay does not receive the message, and a queue
// deleted during it is made again by the move (a Redis queue is its list).

// Key names of the layout, after the global_keyprefix.
const (
	delayIndexKey = "_kombu_go.delayed"
	delaySetKey   = "_kombu_go.delayed."
	// delayMaxSleep bounds how long a mover sleeps without looking at the
	// index: a message delayed by another process is seen within it.
	delayMaxSleep = time.Second
	// delayMoveBatch bounds the messages one run of the move script moves.
	delayMoveBatch = 256
)

// delayPublishScript stores a delayed message for each of its targets,
// but, routed through bindings, only if the binding set is the one the
// client routed with (publishScript's check, with bindingFingerprint's
// fingerprint; otherwise it returns the set's members).
//
// KEYS: binding set (read only with a fingerprint), index, then one delayed
// set per target. ARGV: fingerprint or "", delay in milliseconds, then
// per target its index member and its set member. Returns the number of
// targets.
var delayPublishScript = goredis.NewScript(fingerprintLua + `
if ARGV[1] ~= '' then
  local m, fp = fingerprint(KEYS[1])
  if fp ~= ARGV[1] then return m end
end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local n = #KEYS - 2
for i = 1, n do
  local target = ARGV[1 + 2 * i]
  redis.call('ZADD', KEYS[2 + i], due, ARGV[2 + 2 * i])
  local first = redis.call('ZSCORE', KEYS[2], target)
  if not first or tonumber(first) > due then
    redis.call('ZADD', KEYS[2], due, target)
  end
end
return n
`)

// delayDueScript lists the targets with messages due.
//
// KEYS: index. ARGV: how many targets at most. Returns the server's time
// in milliseconds, the earliest due time in the index (-1: none), then the
// due targets.
var delayDueScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {now, -1}
if #first > 0 then out[2] = tonumber(first[2]) end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for i = 1, #due do out[#out + 1] = due[i] end
return out
`)

// delayMoveScript moves a target's due messages: to the queue's priority
// lists (by the step before each envelope) or, for a fanout target,
// published on its channel. It then sets the target's score in the index
// to its next due time, or removes it.
//
// KEYS: index, the target's set, then the queue's four lists (none for a
// fanout target). ARGV: the target, how many at most, the channel ("" for
// a queue). Returns how many it moved.
var delayMoveScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local items = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #items do
  local item = items[i]
  if ARGV[3] ~= '' then
    redis.call('PUBLISH', ARGV[3], item)
  else
    local step = tonumber(string.sub(item, 1, 1))
    redis.call('LPUSH', KEYS[3 + step], string.sub(item, 2))
  end
  redis.call('ZREM', KEYS[2], item)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], first[2], ARGV[1])
end
return #items
`)

// delayMover is a connection's mover of due messages.
type delayMover struct {
	started atomic.Bool
	wake    chan struct{} // set before started

	mu       sync.Mutex
	earliest time.Time // the earliest due time this connection published since the mover last looked
}

// published tells the mover of a message this connection delays, due at
// about due (by the local clock; the server's due time is a little later,
// never earlier), so that it does not sleep past it.
func (m *delayMover) published(due time.Time) {
	m.mu.Lock()
	if m.earliest.IsZero() || due.Before(m.earliest) {
		m.earliest = due
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// takeEarliest returns how long until the earliest due time published
// since the last call, bounded by limit.
func (m *delayMover) takeEarliest(limit time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.earliest.IsZero() {
		limit = min(limit, max(time.Until(m.earliest), 0))
		m.earliest = time.Time{}
	}
	return limit
}

func (k *keyspace) delayIndex() string { return k.prefix + delayIndexKey }

func (k *keyspace) delaySet(target string) string { return k.prefix + delaySetKey + target }

// queueTarget and fanoutTarget name a delayed set and its index member.
func queueTarget(queue string) string    { return "q:" + queue }
func fanoutTarget(channel string) string { return "f:" + channel }

// queueDelayed adds the command that stores op's delayed message to the
// pipeline (or sends it, given the client), in place of the one queueOp
// would add. Its reply has publishScript's form, which publishChunk reads.
func (c *conn) queueDelayed(ctx context.Context, pipe goredis.Cmdable, op *pubOp) {
	c.startDelayMover()
	p := op.p
	step := stepFor(int(p.Priority))
	keys := []string{c.ks.binding(p.Exchange), c.ks.delayIndex()}
	// In whole milliseconds, rounded up, as the due time is: never early.
	ms := (p.Delay + time.Millisecond - 1) / time.Millisecond
	args := []any{"", strconv.FormatInt(int64(ms), 10)}
	add := func(target, member string) {
		keys = append(keys, c.ks.delaySet(target))
		args = append(args, target, member)
	}
	envelope := func() string {
		return string(virtual.AppendEnvelopeTail(op.head[:len(op.head):len(op.head)], virtual.NewDeliveryTag()))
	}
	switch op.kind {
	case 'd':
		add(queueTarget(p.RoutingKey), strconv.Itoa(step)+envelope())
	case 'f':
		add(fanoutTarget(c.ks.fanoutChannel(p.Exchange, p.RoutingKey)), envelope())
	default:
		// Always checked by the script, trusted table or not: a delayed
		// publish is not the hot path.
		t, _, st := c.routes.lookup(p.Exchange)
		if t == nil {
			t = newRouteTable(nil)
		}
		op.table, op.stamp = t, st
		args[0] = t.fp
		queues := t.Lookup(op.typ, p.RoutingKey)
		for _, q := range queues {
			add(queueTarget(q), strconv.Itoa(step)+envelope())
		}
		op.routes = queues
	}
	c.delay.published(time.Now().Add(p.Delay))
	// EVAL rather than EVALSHA: a pipeline cannot load a missing script,
	// and delayed publishes are not the hot path.
	op.cmd = delayPublishScript.Eval(ctx, pipe, keys, args...)
}

// startDelayMover starts the connection's mover, once.
func (c *conn) startDelayMover() {
	if c.delay.started.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startDelayMoverLocked()
}

// startDelayMoverLocked is startDelayMover with c.mu held.
func (c *conn) startDelayMoverLocked() {
	if c.delay.started.Load() || c.closed {
		return
	}
	c.delay.wake = make(chan struct{}, 1)
	c.delay.started.Store(true)
	c.bgWG.Add(1)
	go c.delayLoop()
}

// delayLoop moves due messages until the connection closes.
func (c *conn) delayLoop() {
	defer c.bgWG.Done()
	for {
		t := time.NewTimer(c.delay.takeEarliest(c.moveDue()))
		select {
		case <-c.bgStop:
			t.Stop()
			return
		case <-c.delay.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// moveDue moves every due message and returns how long to sleep before
// the next one is due.
func (c *conn) moveDue() time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for {
		v, err := delayDueScript.Run(ctx, c.rdb, []string{c.ks.delayIndex()}, 100).Slice()
		if err != nil || len(v) < 2 {
			if err != nil && !c.shutDown() {
				c.log.Debug("redis: looking for due delayed messages", "error", err)
			}
			return delayMaxSleep
		}
		now, _ := v[0].(int64)
		next, _ := v[1].(int64)
		if len(v) == 2 {
			if next < 0 {
				return delayMaxSleep
			}
			return min(time.Duration(next-now)*time.Millisecond, delayMaxSleep)
		}
		for _, t := range v[2:] {
			target, _ := t.(string)
			if err := c.moveTarget(ctx, target); err != nil {
				if !c.shutDown() {
					c.log.Warn("redis: moving due delayed messages", "target", target, "error", err)
				}
				return delayMaxSleep
			}
		}
	}
}

// moveTarget moves every due message of one target.
func (c *conn) moveTarget(ctx context.Context, target string) error {
	keys := []string{c.ks.delayIndex(), c.ks.delaySet(target)}
	channel := ""
	switch {
	case strings.HasPrefix(target, "q:"):
		b := c.ks.buckets(strings.TrimPrefix(target, "q:"))
		keys = append(keys, b[:]...)
	case strings.HasPrefix(target, "f:"):
		channel = strings.TrimPrefix(target, "f:")
	default:
		// Not ours to read: drop it from the index so it is not listed again.
		return c.rdb.ZRem(ctx, c.ks.delayIndex(), target).Err()
	}
	for {
		n, err := delayMoveScript.Run(ctx, c.rdb, keys, target, delayMoveBatch, channel).Int()
		if err != nil || n < delayMoveBatch {
			return err
		}
	}
}

// shutDown reports whether the connection is closing or lost, when errors
// are expected.
func (c *conn) shutDown() bool {
	select {
	case <-c.bgStop:
		return true
	case <-c.done:
		return true
	default:
		return false
	}
}
