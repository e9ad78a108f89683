package virtual

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// What Kombu's virtual Channel keeps in the memory of a connection rather
// than in the broker (exchange declarations), and the queue and consumer
// options a virtual transport honours. The errors these return name no
// transport: the driver puts its name in front.

// Exchanges are the exchanges a connection declared, with their types,
// kept in its memory as Kombu's virtual transports keep them: nothing is
// stored in the broker, and an exchange the connection never declared is
// direct. RabbitMQ's predefined amq.direct, amq.topic and amq.fanout are
// always there. It is safe for concurrent use.
type Exchanges struct {
	mu sync.Mutex
	m  map[string]exchangeDecl
}

// exchangeDecl is an exchange as declared.
type exchangeDecl struct {
	typ        string
	durable    bool
	autoDelete bool
}

// NewExchanges returns the predefined exchanges.
func NewExchanges() *Exchanges {
	return &Exchanges{m: map[string]exchangeDecl{
		"amq.direct": {typ: transport.ExchangeDirect, durable: true},
		"amq.topic":  {typ: transport.ExchangeTopic, durable: true},
		"amq.fanout": {typ: transport.ExchangeFanout, durable: true},
	}}
}

// Declare records a declaration (not a passive one: see Known). Kombu's
// virtual transports have direct, topic and fanout exchanges (no type:
// direct); another type, an internal exchange or arguments fail with
// transport.ErrNotSupported, the default exchange with
// transport.ErrAccessRefused, and declaring a declared exchange again with
// another type or flags with transport.ErrPrecondition.
func (x *Exchanges) Declare(ex transport.Exchange) error {
	switch ex.Type {
	case transport.ExchangeDirect, transport.ExchangeTopic, transport.ExchangeFanout:
	case "":
		ex.Type = transport.ExchangeDirect
	default:
		return fmt.Errorf("exchange %q: type %q (Kombu's virtual transports have direct, topic and fanout): %w", ex.Name, ex.Type, transport.ErrNotSupported)
	}
	switch {
	case ex.Name == "":
		return fmt.Errorf("the default exchange cannot be declared: %w", transport.ErrAccessRefused)
	case ex.Internal:
		return fmt.Errorf("exchange %q: internal exchanges: %w", ex.Name, transport.ErrNotSupported)
	case len(ex.Arguments) > 0:
		return fmt.Errorf("exchange %q: arguments %v: %w", ex.Name, slices.Sorted(maps.Keys(ex.Arguments)), transport.ErrNotSupported)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	decl := exchangeDecl{typ: ex.Type, durable: ex.Durable, autoDelete: ex.AutoDelete}
	if prev, ok := x.m[ex.Name]; ok {
		if prev != decl {
			return fmt.Errorf("exchange %q was declared as %s (durable=%t, auto_delete=%t) on this connection: %w",
				ex.Name, prev.typ, prev.durable, prev.autoDelete, transport.ErrPrecondition)
		}
		return nil
	}
	x.m[ex.Name] = decl
	return nil
}

// Known reports whether the exchange was declared here (or is
// predefined). The default exchange "" is always known. A passive
// declaration of an exchange not known here succeeds where the broker
// holds bindings for it.
func (x *Exchanges) Known(name string) bool {
	if name == "" {
		return true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.m[name]
	return ok
}

// Type returns the type the exchange was declared with: direct if it never
// was, as Kombu takes it.
func (x *Exchanges) Type(name string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ex, ok := x.m[name]; ok {
		return ex.typ
	}
	return transport.ExchangeDirect
}

// Forget forgets a deleted exchange; the predefined ones stay.
func (x *Exchanges) Forget(name string) {
	if strings.HasPrefix(name, "amq.") {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.m, name)
}

// DeadLetter is a queue's dead-letter exchange and routing key, from its
// x-dead-letter-exchange and x-dead-letter-routing-key arguments.
type DeadLetter struct {
	Exchange      string // "": the default exchange
	RoutingKey    string
	HasRoutingKey bool // else a dead letter keeps its own routing key
}

// QueueArguments checks a queue's arguments: a virtual queue honours
// x-queue-type=classic and x-dead-letter-exchange with
// x-dead-letter-routing-key, which it returns (nil without a dead-letter
// exchange), and those in also, which the caller honours itself (Redis's
// x-max-priority). Any other argument fails with transport.ErrNotSupported;
// a dead-letter argument that is not a string, or a routing key without
// an exchange, with transport.ErrPrecondition.
func QueueArguments(q transport.Queue, also ...string) (*DeadLetter, error) {
	var dl *DeadLetter
	hasRK := false
	var rk string
	for _, name := range slices.Sorted(maps.Keys(q.Arguments)) {
		v := q.Arguments[name]
		switch {
		case slices.Contains(also, name):
		case name == "x-queue-type" && v == "classic":
		case name == "x-dead-letter-exchange":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("queue %q: argument %s=%v: not a string: %w", q.Name, name, v, transport.ErrPrecondition)
			}
			dl = &DeadLetter{Exchange: s}
		case name == "x-dead-letter-routing-key":
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("queue %q: argument %s=%v: not a string: %w", q.Name, name, v, transport.ErrPrecondition)
			}
			rk, hasRK = s, true
		default:
			return nil, fmt.Errorf("queue %q: argument %s=%v: %w", q.Name, name, v, transport.ErrNotSupported)
		}
	}
	if hasRK {
		if dl == nil {
			return nil, fmt.Errorf("queue %q: argument x-dead-letter-routing-key needs x-dead-letter-exchange: %w", q.Name, transport.ErrPrecondition)
		}
		dl.RoutingKey, dl.HasRoutingKey = rk, true
	}
	return dl, nil
}

// DirectReplyTo is RabbitMQ's pseudo-queue for direct reply-to, which no
// virtual transport has.
const DirectReplyTo = "amq.rabbitmq.reply-to"

// CheckConsumeSpec refuses what a virtual transport's consumer cannot do:
// no queue, an empty or repeated queue name, a negative prefetch, an
// exclusive consumer (the broker cannot refuse other consumers),
// consumer arguments (but RabbitMQ's advisory x-cancel-on-ha-failover),
// and consuming DirectReplyTo. The last three fail with
// transport.ErrNotSupported.
func CheckConsumeSpec(spec transport.ConsumeSpec) error {
	if len(spec.Queues) == 0 {
		return errors.New("consume: no queue given")
	}
	if spec.Prefetch < 0 {
		return fmt.Errorf("consume: negative prefetch %d", spec.Prefetch)
	}
	if spec.Exclusive {
		return fmt.Errorf("exclusive consumers (the broker cannot refuse other consumers): %w", transport.ErrNotSupported)
	}
	for _, name := range slices.Sorted(maps.Keys(spec.Arguments)) {
		if name != "x-cancel-on-ha-failover" {
			return fmt.Errorf("consume: argument %s=%#v: %w", name, spec.Arguments[name], transport.ErrNotSupported)
		}
	}
	for i, q := range spec.Queues {
		switch {
		case q == "":
			return errors.New("consume: empty queue name")
		case q == DirectReplyTo:
			return fmt.Errorf("consume: %s (RabbitMQ's direct reply-to): %w", q, transport.ErrNotSupported)
		case slices.Contains(spec.Queues[:i], q):
			return fmt.Errorf("consume: queue %q given twice", q)
		}
	}
	return nil
}
