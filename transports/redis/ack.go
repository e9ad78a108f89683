package redis

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// entry is a message this connection took from a queue.
type entry struct {
	hkey      string // its key in the unacked hash; "" when it was not recorded
	raw       string // the envelope as it was stored
	queue     string
	step      int  // the priority bucket it came from
	delivered bool // handed to a consumer (or returned by Get)
}

func (e *entry) delivery(consumerTag string) *transport.Delivery {
	d, err := virtual.DecodeEnvelope([]byte(e.raw))
	if err != nil {
		d = virtual.UndecodableDelivery([]byte(e.raw), err)
	}
	d.Queue = e.queue
	d.ConsumerTag = consumerTag
	return d
}

// ackScope numbers the deliveries of a subscription (or of a connection's
// Gets) and settles them. Kombu's delivery tags are UUID strings; the
// contract's are integers, so each scope maps its integers to entries.
type ackScope struct {
	c      *conn
	sub    *subscription // nil for Get
	mu     sync.Mutex
	closed bool
	last   uint64
	tags   []uint64 // ascending
	ents   []*entry
}

var _ transport.Acknowledger = (*ackScope)(nil)

// track numbers a delivery and records its entry. It reports false once the
// scope is closed.
func (a *ackScope) track(e *entry, d *transport.Delivery) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.last++
	d.Tag = a.last
	e.delivered = true
	a.tags = append(a.tags, a.last)
	a.ents = append(a.ents, e)
	return true
}

func (a *ackScope) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tags)
}

func (a *ackScope) find(tag uint64) (int, error) {
	i, ok := slices.BinarySearch(a.tags, tag)
	if !ok {
		return 0, fmt.Errorf("redis: unknown delivery tag %d: never delivered here, or already settled: %w", tag, transport.ErrPrecondition)
	}
	return i, nil
}

// Ack acknowledges the delivery, and with multiple every earlier one of the
// scope (all of them for tag 0). The acknowledgement is Kombu's ZREM from
// unacked_index and HDEL from unacked, sent in the background together with
// others (see ackFlusher), as an AMQP basic.ack is sent without waiting for
// a reply.
func (a *ackScope) Ack(tag uint64, multiple bool) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return transport.ErrClosed
	}
	n := len(a.tags)
	lo := 0
	if !multiple || tag != 0 {
		i, err := a.find(tag)
		if err != nil {
			a.mu.Unlock()
			return err
		}
		n = i + 1
		if !multiple {
			lo = i
		}
	}
	done := slices.Clone(a.ents[lo:n])
	a.tags = slices.Delete(a.tags, lo, n)
	a.ents = slices.Delete(a.ents, lo, n)
	a.c.settle(done)
	a.mu.Unlock()
	a.settled()
	return nil
}

// Reject settles the delivery. With requeue the message goes to the back
// of its queue marked redelivered, at once (Kombu's reject(requeue=True));
// without, it goes to the dead-letter exchange this connection declared its
// queue with (see deadletter.go), or is dropped if there is none.
func (a *ackScope) Reject(tag uint64, requeue bool) error { return a.reject(tag, requeue, "") }

// RejectWithReason is Reject without requeue whose dead letter carries
// reason in transport.ErrorHeader.
func (a *ackScope) RejectWithReason(tag uint64, reason string) error {
	return a.reject(tag, false, reason)
}

func (a *ackScope) reject(tag uint64, requeue bool, reason string) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return transport.ErrClosed
	}
	i, err := a.find(tag)
	if err != nil {
		a.mu.Unlock()
		return err
	}
	e := a.ents[i]
	a.tags = slices.Delete(a.tags, i, i+1)
	a.ents = slices.Delete(a.ents, i, i+1)
	var dl *virtual.DeadLetter
	if !requeue {
		if dl = a.c.deadLetterFor(e.queue); dl == nil {
			a.c.settle([]*entry{e})
		}
	}
	if requeue || dl != nil {
		// Close waits for this write: closing the client under it would
		// leave the message in the unacked hash until the visibility
		// timeout. Counted under the scope's lock, so before Close has
		// closed the scope.
		a.c.settling.Add(1)
		defer a.c.settling.Done()
	}
	a.mu.Unlock()
	defer a.settled()
	switch {
	case requeue:
		return a.c.settleNow("requeue", 1, func(ctx context.Context) error { return a.c.pushBack(ctx, []*entry{e}, 'L') })
	case dl != nil:
		return a.c.settleNow("dead-letter", 1, func(ctx context.Context) error { return a.c.deadLetter(ctx, e, dl, reason) })
	}
	return nil
}

// settleNow makes a settlement that writes to Redis. If Redis does not
// answer, the ackFlusher holds it and makes it again once Redis does,
// rather than leave its messages for the visibility timeout; the
// settlement is then taken (nil), as an acknowledgement is.
func (c *conn) settleNow(what string, n int, run func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	err := run(ctx)
	cancel()
	if unanswered(err) && c.acks.hold(heldOp{what: what, n: n, run: run}) {
		return nil
	}
	return c.wrap(what, err)
}

// forget drops a delivery that was never handed over.
func (a *ackScope) forget(tag uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i, err := a.find(tag); err == nil {
		a.tags = slices.Delete(a.tags, i, i+1)
		a.ents = slices.Delete(a.ents, i, i+1)
	}
}

// takeAll closes the scope and returns its unsettled entries.
func (a *ackScope) takeAll() []*entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	out := a.ents
	a.tags, a.ents = nil, nil
	return out
}

func (a *ackScope) settled() {
	if a.sub != nil {
		a.sub.poke(a.sub.settledCh)
	}
}

// settle stops renewing the entries' leases and queues their
// acknowledgements.
func (c *conn) settle(es []*entry) {
	keys := make([]string, 0, len(es))
	for _, e := range es {
		if e.hkey != "" {
			keys = append(keys, c.ks.ackKey(e))
		}
	}
	if len(keys) == 0 {
		return
	}
	c.unlease(keys)
	c.acks.add(keys)
}

func (c *conn) lease(es []*entry) {
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	for _, e := range es {
		if e.hkey != "" {
			c.leased[c.ks.ackKey(e)] = struct{}{}
		}
	}
}

func (c *conn) unlease(keys []string) {
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	for _, k := range keys {
		delete(c.leased, k)
	}
}

// ackFlusher sends acknowledgements in batches: whatever accumulated while
// the previous batch was on the wire goes in the next one, as ZREM and HDEL
// of many tags in one pipeline. Under load that is one round trip for many
// acknowledgements; when idle, an acknowledgement leaves at once.
//
// It also holds the settlements that found Redis unreachable (a requeue, a
// dead-letter, a return to the queue; see hold): while Redis is down, it
// keeps them and the acknowledgements, tries again with back-off, and
// sends them once Redis answers, or one last time when the connection
// closes. Only if that fails too do they wait for the visibility timeout.
type ackFlusher struct {
	c       *conn
	mu      sync.Mutex
	pending []string // unacked hash keys to acknowledge
	held    []heldOp // settlements to make again
	stopped bool     // the last flush is done: nothing more is taken
	kick    chan struct{}
}

// heldOp is a settlement that failed for want of Redis.
type heldOp struct {
	what string // for logs: "requeue", "dead-letter", "return"
	n    int    // messages it settles
	run  func(ctx context.Context) error
}

func newAckFlusher(c *conn) *ackFlusher {
	return &ackFlusher{c: c, kick: make(chan struct{}, 1)}
}

func (f *ackFlusher) add(keys []string) {
	f.mu.Lock()
	f.pending = append(f.pending, keys...)
	f.mu.Unlock()
	f.poke()
}

// hold keeps op to be made again once Redis answers, and reports false if
// the connection is past its last flush, when nothing can be held.
func (f *ackFlusher) hold(op heldOp) bool {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return false
	}
	f.held = append(f.held, op)
	f.mu.Unlock()
	f.poke()
	return true
}

func (f *ackFlusher) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Back-off between attempts while Redis does not answer.
const (
	flushRetryMin = 100 * time.Millisecond
	flushRetryMax = 2 * time.Second
)

func (f *ackFlusher) run() {
	defer f.c.bgWG.Done()
	var retry <-chan time.Time // set while Redis does not answer
	backoff := flushRetryMin
	for {
		select {
		case <-f.kick:
			if retry != nil {
				continue // keep to the back-off; what came is sent with the rest
			}
		case <-retry:
		case <-f.c.bgStop:
			f.flush(true)
			return
		}
		if f.flush(false) {
			if retry != nil {
				f.c.log.Info("redis: Redis answers again; the acknowledgements and settlements held were sent")
			}
			retry, backoff = nil, flushRetryMin
		} else {
			retry = time.After(backoff)
			backoff = min(2*backoff, flushRetryMax)
		}
	}
}

const ackChunk = 1000

// flush sends what is pending. It reports false when Redis could not be
// reached, keeping everything for the next attempt, except on the last
// flush (final), which gives up with a warning.
func (f *ackFlusher) flush(final bool) bool {
	for {
		f.mu.Lock()
		keys, ops := f.pending, f.held
		f.pending, f.held = nil, nil
		if final {
			f.stopped = true
		}
		f.mu.Unlock()
		if len(keys) == 0 && len(ops) == 0 {
			return true
		}
		err := f.ack(keys)
		if unanswered(err) && !final {
			f.keep(keys, ops, err)
			return false
		}
		if err != nil {
			f.c.log.Warn("redis: acknowledgements not recorded; those messages will be redelivered after the visibility timeout",
				"count", len(keys), "error", err)
		}
		for i, op := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			err := op.run(ctx)
			cancel()
			if unanswered(err) && !final {
				f.keep(nil, ops[i:], err)
				return false
			}
			if err != nil {
				f.c.log.Warn("redis: a settlement could not be made; those messages will be restored after the visibility timeout",
					"what", op.what, "count", op.n, "error", err)
			}
		}
	}
}

// keep puts back what an attempt could not send, ahead of what came
// meanwhile, and says so on the first failure of an outage.
func (f *ackFlusher) keep(keys []string, ops []heldOp, err error) {
	f.mu.Lock()
	first := len(f.pending) == 0 && len(f.held) == 0
	f.pending = append(keys, f.pending...)
	f.held = append(ops, f.held...)
	n, m := len(f.pending), len(f.held)
	f.mu.Unlock()
	if first {
		f.c.log.Warn("redis: Redis does not answer; acknowledgements and settlements are held until it does",
			"acknowledgements", n, "settlements", m, "error", err)
	}
}

// ack sends acknowledgements: Kombu's ZREM from unacked_index and HDEL
// from unacked.
func (f *ackFlusher) ack(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	c := f.c
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for queue, hkeys := range c.byQueue(keys) {
			for start := 0; start < len(hkeys); start += ackChunk {
				chunk := hkeys[start:min(start+ackChunk, len(hkeys))]
				members := make([]any, len(chunk))
				for i, k := range chunk {
					members[i] = k
				}
				p.ZRem(ctx, c.ks.unackedIndexOf(queue), members...)
				p.HDel(ctx, c.ks.unackedOf(queue), chunk...)
			}
		}
		return nil
	})
	return err
}

// leasePeriod is how often the scores of unsettled messages are renewed:
// four times per visibility timeout, and at least every 30 seconds, so that
// a Python consumer with a shorter visibility_timeout does not restore them
// either (down to 30 s).
func leasePeriod(vt time.Duration) time.Duration {
	return min(max(vt/4, 50*time.Millisecond), 30*time.Second)
}

// leaseLoop renews the unacked_index score of every message this
// connection holds unsettled, so that no restore_visible, ours or Kombu's,
// takes it for abandoned while its handler still runs. A message is
// restored only once its connection has stopped renewing it for a
// visibility timeout: the process died, or lost Redis for that long.
func (c *conn) leaseLoop() {
	defer c.bgWG.Done()
	t := time.NewTicker(leasePeriod(c.opts.visibilityTimeout))
	defer t.Stop()
	for {
		select {
		case <-c.bgStop:
			return
		case <-t.C:
			c.renewLeases()
		}
	}
}

func (c *conn) renewLeases() {
	c.leaseMu.Lock()
	keys := slices.Collect(maps.Keys(c.leased))
	c.leaseMu.Unlock()
	if len(keys) == 0 {
		return
	}
	score := nowScore()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for queue, hkeys := range c.byQueue(keys) {
			for start := 0; start < len(hkeys); start += ackChunk {
				chunk := hkeys[start:min(start+ackChunk, len(hkeys))]
				members := make([]goredis.Z, len(chunk))
				for i, k := range chunk {
					members[i] = goredis.Z{Score: score, Member: k}
				}
				// XX: never re-add a record someone removed; GT: never move
				// a score back.
				p.ZAddArgs(ctx, c.ks.unackedIndexOf(queue), goredis.ZAddArgs{XX: true, GT: true, Members: members})
			}
		}
		return nil
	})
	if err != nil {
		c.log.Warn("redis: renewing the leases of unsettled messages failed", "count", len(keys), "error", err)
	}
}

// nowScore is the time as Kombu scores unacked_index entries: Unix seconds
// as a float.
func nowScore() float64 { return float64(time.Now().UnixMicro()) / 1e6 }

// byQueue groups ack keys (keyspace.ackKey) by the queue whose unacked
// keys hold them: one group, "", outside the sharded mode; one per queue,
// each in its own slot, in it.
func (c *conn) byQueue(keys []string) map[string][]string {
	if !c.ks.sharded {
		return map[string][]string{"": keys}
	}
	out := map[string][]string{}
	for _, k := range keys {
		q, hkey := c.ks.splitAckKey(k)
		out[q] = append(out[q], hkey)
	}
	return out
}
