package redis

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Broadcasts. A fanout exchange on Redis is a PUB/SUB channel: Kombu
// PUBLISHes on "/<db>.<exchange>" (or ".../<exchange>/<key>") and a
// consumer PSUBSCRIBEs with its binding's key. PUB/SUB only reaches the
// clients subscribed at that moment, so if the subscription waited for a
// consumer to start, a broadcast published between the binding and the
// consumer's start would be lost, although the queue was bound (a
// server-named queue on AMQP, or in memory, buffers from its declaration).
//
// So the subscription follows the binding instead: a connection binding
// a queue to a fanout exchange subscribes to the exchange's pattern before
// Bind returns (it waits until Redis has applied the PSUBSCRIBE, see
// sync), and from then on copies every broadcast it receives into that
// queue's list, in the bucket of the message's priority. Consumers take
// broadcasts from the list like any other message, with prefetch,
// acknowledgement and restore. Unbinding, deleting the queue or the
// exchange, and closing the connection stop the copying (and unsubscribe
// once no queue needs the pattern).
//
// A connection has one PUB/SUB connection for all its fanout bindings,
// opened with the first. Each pattern is subscribed once however many
// queues use it, and a broadcast is copied once into each queue bound on
// the connection, even when the queue's bindings give several patterns
// that match it ("a.#" and "#", say). Two connections that both bind the
// same queue each copy, as two Kombu consumers of one queue would each
// receive it. The consumers never read PUB/SUB themselves, so nothing
// reaches them twice (once from PUB/SUB, once from the list).
//
// When the PUB/SUB connection drops, go-redis reconnects and subscribes it
// again to every pattern. A new transport connection (such as the one a
// kombu.Connection opens to replace a lost one) has no bindings until the
// topology is declared on it again, which subscribes anew. Broadcasts sent
// in between are lost: PUB/SUB is at most once, as for Kombu.

// fanoutBinding is a queue's binding to a fanout exchange: the exchange
// and the binding's key with '#' turned to '*', as Kombu's _fanout_queues
// records it. The pattern subscribed to is keyspace.fanoutChannel of both.
type fanoutBinding struct {
	exchange, key string
}

// fanoutRelay keeps a connection's fanout bindings and copies the
// broadcasts they receive into their queues' lists.
type fanoutRelay struct {
	c      *conn
	ctx    context.Context // ends at close
	cancel context.CancelFunc

	// mu guards everything below. The receiver holds it while it copies a
	// broadcast, so once unbinding or deleting a queue has taken it, no
	// copy into that queue is under way or will follow. Lock order: conn.mu
	// before mu; never conn.mu while holding mu.
	mu       sync.Mutex
	closed   bool
	bindings map[string][]fanoutBinding // queue → its fanout bindings
	// patterns maps each pattern subscribed to, to the queues its
	// broadcasts are copied to, each with how many of its bindings use
	// the pattern (with fanout_patterns off, every key of an exchange
	// shares the exchange's channel).
	patterns map[string]map[string]int
	ps       *goredis.PubSub // nil until the first fanout binding
	wg       sync.WaitGroup

	pings    map[string]chan struct{} // PING token → closed when its PONG is read
	lastPing uint64
	broken   chan struct{} // closed, and replaced, when the PUB/SUB connection fails

	// The broadcast copied last, kept by the receiver: a PUBLISH matching
	// two patterns the connection subscribed to arrives twice in a row,
	// once per pattern, and a queue bound with both gets one copy.
	last lastBroadcast
}

type lastBroadcast struct {
	channel, payload string
	patterns         map[string]bool // the patterns it arrived through
	queues           map[string]bool // the queues it was copied to
}

func newFanoutRelay(c *conn) *fanoutRelay {
	ctx, cancel := context.WithCancel(context.Background())
	return &fanoutRelay{
		c:        c,
		ctx:      ctx,
		cancel:   cancel,
		bindings: map[string][]fanoutBinding{},
		patterns: map[string]map[string]int{},
		pings:    map[string]chan struct{}{},
		broken:   make(chan struct{}),
	}
}

// bind records the binding and returns once the connection is subscribed
// to its pattern and copies the pattern's broadcasts into the queue: a
// broadcast published after bind returns reaches the queue's list.
func (r *fanoutRelay) bind(ctx context.Context, queue string, fb fanoutBinding) error {
	pattern := r.c.ks.fanoutChannel(fb.exchange, fb.key)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return transport.ErrClosed
	}
	added := !slices.Contains(r.bindings[queue], fb)
	if added {
		r.bindings[queue] = append(r.bindings[queue], fb)
		qs := r.patterns[pattern]
		if qs == nil {
			qs = map[string]int{}
			r.patterns[pattern] = qs
		}
		qs[queue]++
		if len(qs) == 1 && qs[queue] == 1 {
			if err := r.subscribeLocked(ctx, pattern); err != nil {
				r.releaseLocked(queue, fb)
				r.mu.Unlock()
				return err
			}
		}
	}
	r.mu.Unlock()
	// The queue is in the pattern's set already, so every broadcast read
	// from now on is copied to it; what remains is to know that Redis has
	// applied the PSUBSCRIBE (this call's, or the earlier one that
	// subscribed the pattern), so that a PUBLISH after this is sent to us.
	if err := r.sync(ctx); err != nil {
		if added {
			r.mu.Lock()
			r.releaseLocked(queue, fb)
			r.mu.Unlock()
		}
		return err
	}
	return nil
}

// subscribeLocked writes a PSUBSCRIBE for the pattern, opening the PUB/SUB
// connection and starting the receiver on first use.
func (r *fanoutRelay) subscribeLocked(ctx context.Context, pattern string) error {
	if r.ps == nil {
		// No pattern yet: go-redis connects on the first PSUBSCRIBE below
		// (or the receiver's first read, whichever comes first).
		r.ps = r.c.rdb.PSubscribe(r.ctx)
		r.wg.Add(1)
		go r.receive(r.ps)
	}
	// go-redis remembers the pattern as well, to subscribe again after a
	// reconnect. A write that fails on a connection that died unnoticed
	// makes go-redis reconnect: write again, once, on the new one.
	err := r.ps.PSubscribe(ctx, pattern)
	if err != nil && transient(err) && ctx.Err() == nil {
		err = r.ps.PSubscribe(ctx, pattern)
	}
	return err
}

// sync returns once Redis has applied the commands written so far on the
// PUB/SUB connection. It sends a PING with a token of its own and waits
// for the PONG: Redis answers a connection's commands in order, so the
// PONG comes after the PSUBSCRIBEs were applied. (Waiting for the
// PSUBSCRIBE's own confirmation would not tell an earlier one, or one
// go-redis sends after a reconnect, from this one.) If the connection
// fails meanwhile the PING may be lost, and it is sent again, on the new
// connection, after go-redis has subscribed it to every pattern.
func (r *fanoutRelay) sync(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return transport.ErrClosed
	}
	r.lastPing++
	token := "kombu-go-sync-" + strconv.FormatUint(r.lastPing, 10)
	pong := make(chan struct{})
	r.pings[token] = pong
	ps := r.ps
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pings, token)
		r.mu.Unlock()
	}()
	for {
		r.mu.Lock()
		broken := r.broken
		r.mu.Unlock()
		err := ps.Ping(ctx, token)
		if err != nil && transient(err) && ctx.Err() == nil && r.ctx.Err() == nil {
			err = ps.Ping(ctx, token) // as for PSUBSCRIBE: once more, on a new connection
		}
		if err != nil {
			if r.ctx.Err() != nil {
				return transport.ErrClosed
			}
			return err
		}
		select {
		case <-pong:
			return nil
		case <-broken:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return transport.ErrClosed
		}
	}
}

// releaseLocked removes a binding of the queue; when the pattern has no
// queue left it unsubscribes. Broadcasts read from now on are not copied
// to the queue through that pattern.
func (r *fanoutRelay) releaseLocked(queue string, fb fanoutBinding) {
	bs := slices.DeleteFunc(r.bindings[queue], func(x fanoutBinding) bool { return x == fb })
	if len(bs) > 0 {
		r.bindings[queue] = bs
	} else {
		delete(r.bindings, queue)
	}
	pattern := r.c.ks.fanoutChannel(fb.exchange, fb.key)
	qs := r.patterns[pattern]
	if qs == nil {
		return
	}
	if qs[queue]--; qs[queue] <= 0 {
		delete(qs, queue)
	}
	if len(qs) > 0 {
		return
	}
	delete(r.patterns, pattern)
	if r.ps != nil && !r.closed {
		// Nothing is copied for a pattern without queues, so a failed
		// PUNSUBSCRIBE only costs the broadcasts read and dropped; and
		// go-redis has forgotten the pattern, so a reconnect drops it too.
		ctx, cancel := context.WithTimeout(r.ctx, opTimeout)
		if err := r.ps.PUnsubscribe(ctx, pattern); err != nil {
			r.c.log.Debug("redis: unsubscribing from a fanout exchange failed", "pattern", pattern, "error", err)
		}
		cancel()
	}
}

// unbind removes a binding (nothing if the queue does not have it).
func (r *fanoutRelay) unbind(queue string, fb fanoutBinding) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.bindings[queue], fb) {
		r.releaseLocked(queue, fb)
	}
}

// dropQueue removes every fanout binding of the queue.
func (r *fanoutRelay) dropQueue(queue string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fb := range slices.Clone(r.bindings[queue]) {
		r.releaseLocked(queue, fb)
	}
}

// dropExchange removes every binding to the exchange.
func (r *fanoutRelay) dropExchange(exchange string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range slices.Sorted(maps.Keys(r.bindings)) {
		for _, fb := range slices.Clone(r.bindings[q]) {
			if fb.exchange == exchange {
				r.releaseLocked(q, fb)
			}
		}
	}
}

// bound reports whether the queue has a fanout binding on this connection
// (which makes an auto-delete queue go when the connection closes).
func (r *fanoutRelay) bound(queue string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bindings[queue]) > 0
}

// close stops the receiver and closes the PUB/SUB connection; nothing is
// copied once it returns. The bindings are kept, for bound.
func (r *fanoutRelay) close() {
	r.cancel() // first: it ends a copy under way, which holds mu
	r.mu.Lock()
	r.closed = true
	ps := r.ps
	r.mu.Unlock()
	if ps != nil {
		ps.Close()
	}
	r.wg.Wait()
}

// receive reads the PUB/SUB connection until close: broadcasts to copy,
// and the PONGs binders wait for.
func (r *fanoutRelay) receive(ps *goredis.PubSub) {
	defer r.wg.Done()
	interrupted := false
	for {
		msg, err := ps.Receive(r.ctx)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			// go-redis reconnects (now or at the next read) and subscribes
			// again to every pattern; broadcasts sent in between are lost,
			// as they are for Kombu (PUB/SUB is at most once). Binders
			// waiting for a PONG send their PING again.
			r.mu.Lock()
			close(r.broken)
			r.broken = make(chan struct{})
			r.mu.Unlock()
			if !interrupted {
				interrupted = true
				r.c.log.Warn("redis: fanout subscription interrupted; broadcasts sent meanwhile are missed", "error", err)
			}
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if interrupted {
			interrupted = false
			r.c.log.Info("redis: fanout subscription restored")
		}
		switch m := msg.(type) {
		case *goredis.Pong:
			r.mu.Lock()
			if ch, ok := r.pings[m.Payload]; ok {
				close(ch)
				delete(r.pings, m.Payload)
			}
			r.mu.Unlock()
		case *goredis.Message:
			r.copy(m)
		}
	}
}

// copy pushes a broadcast to the lists of the queues bound with the
// pattern it matched, in the bucket of its priority, and wakes this
// connection's consumers of those queues (others are woken by Redis's
// client tracking, as for any write).
func (r *fanoutRelay) copy(m *goredis.Message) {
	if m.Payload == "" {
		return
	}
	r.mu.Lock()
	qs := r.patterns[m.Pattern]
	if len(qs) == 0 {
		r.mu.Unlock()
		return
	}
	// Redis writes every pmessage of one PUBLISH before anything else, so
	// the same channel and payload again through a pattern not seen yet is
	// the same broadcast. (Through a pattern seen already, it is the same
	// bytes published again.)
	l := &r.last
	if m.Channel != l.channel || m.Payload != l.payload || l.patterns[m.Pattern] {
		*l = lastBroadcast{channel: m.Channel, payload: m.Payload, patterns: map[string]bool{}, queues: map[string]bool{}}
	}
	l.patterns[m.Pattern] = true
	step := stepFor(virtual.Priority([]byte(m.Payload)))
	var keys []string
	for _, q := range slices.Sorted(maps.Keys(qs)) {
		if !l.queues[q] {
			l.queues[q] = true
			keys = append(keys, r.c.ks.bucket(q, step))
		}
	}
	if len(keys) == 0 {
		r.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, opTimeout)
	_, err := r.c.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range keys {
			p.LPush(ctx, k, m.Payload)
		}
		return nil
	})
	cancel()
	r.mu.Unlock()
	if err != nil {
		if r.ctx.Err() == nil {
			r.c.log.Error("redis: a broadcast received could not be queued; it is lost", "exchange_channel", m.Channel, "error", err)
		}
		return
	}
	r.c.mu.Lock()
	hub := r.c.hub
	r.c.mu.Unlock()
	if hub != nil {
		hub.wake(keys)
	}
}
