package memory

import (
	"fmt"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// broker is one in-process message broker: the exchanges, queues, bindings
// and messages that every connection to the same memory:// URL shares.
//
// One mutex guards all of it, connections and subscriptions included, and
// nothing blocks while holding it: messages reach consumers through one
// goroutine per subscription that sends on the Deliveries channel with the
// lock released. An operation under the lock can cause follow-up work —
// queues that may now dispatch to a consumer, messages to dead-letter — which
// it records in dirty and dead; unlock carries that work out before
// releasing the lock. So one operation never runs inside another half-done
// one, however far dead-lettering and dispatching cascade.
type broker struct {
	mu        sync.Mutex
	url       string // what it was dialled as, for logs
	open      int    // connections open to it
	exchanges map[string]*exchange
	queues    map[string]*queue
	lastCtag  uint64 // numbers consumer tags

	dirty []*queue     // queues to dispatch before unlocking
	dead  []deadLetter // messages to dead-letter before unlocking
	pass  uint64       // numbers route calls, for the seen marks on queues and exchanges
	hits  []*queue     // route's result, reused between calls
	work  []*exchange  // route's work list, reused between calls
}

func newBroker(url string) *broker {
	b := &broker{url: url, exchanges: map[string]*exchange{}, queues: map[string]*queue{}}
	// The default exchange and the amq.* exchanges every RabbitMQ vhost has.
	for name, kind := range map[string]string{
		"":            transport.ExchangeDirect,
		"amq.direct":  transport.ExchangeDirect,
		"amq.topic":   transport.ExchangeTopic,
		"amq.fanout":  transport.ExchangeFanout,
		"amq.headers": transport.ExchangeHeaders,
		"amq.match":   transport.ExchangeHeaders,
	} {
		b.exchanges[name] = &exchange{name: name, kind: kind, durable: true}
	}
	return b
}

// unlock finishes the work the current operation queued up and releases the
// lock. Every holder of b.mu releases it through unlock.
func (b *broker) unlock() {
	b.drain()
	b.mu.Unlock()
}

// drain dead-letters and dispatches until neither causes more work.
// Dead-lettering enqueues (making queues dirty) and dispatching drops
// expired messages (making dead letters), so it loops; it ends because
// dead-letter cycles are cut as RabbitMQ cuts them.
func (b *broker) drain() {
	for len(b.dead) > 0 || len(b.dirty) > 0 {
		for i := 0; i < len(b.dead); i++ {
			b.deadLetter(b.dead[i])
		}
		clear(b.dead)
		b.dead = b.dead[:0]
		for i := 0; i < len(b.dirty); i++ {
			q := b.dirty[i]
			q.dirty = false
			if !q.deleted {
				q.dispatch()
			}
		}
		clear(b.dirty)
		b.dirty = b.dirty[:0]
	}
}

// markDirty schedules q for dispatch: it may have ready messages for a
// consumer that can take them.
func (b *broker) markDirty(q *queue) {
	if !q.dirty {
		q.dirty = true
		b.dirty = append(b.dirty, q)
	}
}

// route returns the queues a message published to x reaches, each once, as
// RabbitMQ's rabbit_exchange:route does: breadth first through
// exchange-to-exchange bindings, visiting each exchange at most once so that
// cycles end, and through an exchange's alternate exchange when none of its
// bindings match. The result is reused by the next call.
func (b *broker) route(x *exchange, key string, headers map[string]any) []*queue {
	b.pass++
	hits, work := b.hits[:0], append(b.work[:0], x)
	x.seen = b.pass
	add := func(q *queue) {
		if q.seen != b.pass {
			q.seen = b.pass
			hits = append(hits, q)
		}
	}
	for i := 0; i < len(work); i++ {
		x := work[i]
		if x.name == "" { // the default exchange routes by queue name
			if q := b.queues[key]; q != nil {
				add(q)
			}
			continue
		}
		matched := false
		for _, bd := range x.bindings {
			if !x.matches(bd, key, headers) {
				continue
			}
			matched = true
			if bd.queue != nil {
				add(bd.queue)
			} else if bd.exchange.seen != b.pass {
				bd.exchange.seen = b.pass
				work = append(work, bd.exchange)
			}
		}
		if !matched && x.alternate != "" {
			if ae := b.exchanges[x.alternate]; ae != nil && ae.seen != b.pass {
				ae.seen = b.pass
				work = append(work, ae)
			}
		}
	}
	clear(work)
	b.hits, b.work = hits, work[:0]
	return hits
}

// publish routes p, made ready as env (see conn.ready), and enqueues it on
// every queue it reaches. It reports whether p reached no queue and asked
// to be told (NotifyUnroutable), for the caller to say so once the broker
// lock is released, and whether its first queue has consumers.
func (b *broker) publish(p *transport.Publishing, env *envelope) (unroutable, consumed bool, err error) {
	x := b.exchanges[p.Exchange]
	if x == nil {
		return false, false, fmt.Errorf("memory: exchange %q: %w", p.Exchange, transport.ErrNotFound)
	}
	if x.internal {
		return false, false, fmt.Errorf("memory: exchange %q is internal: only other exchanges can route to it: %w", p.Exchange, transport.ErrAccessRefused)
	}
	if p.Delay > 0 {
		b.publishLater(p, env) // delay.go
		return false, false, nil
	}
	queues := b.route(x, p.RoutingKey, p.Headers)
	if len(queues) == 0 {
		if p.Mandatory {
			return false, false, fmt.Errorf("memory: exchange %q, routing key %q: no queue bound: %w", p.Exchange, p.RoutingKey, transport.ErrUnroutable)
		}
		// RabbitMQ drops an unroutable message that is not mandatory.
		return p.NotifyUnroutable, false, nil
	}
	queues[0].enqueue(&env.first)
	for _, q := range queues[1:] {
		q.publish(&env.message)
	}
	return false, len(queues[0].consumers) > 0, nil
}
