package memory

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
)

// exchange is a declared exchange, or the default exchange "" (which routes
// by queue name and has no bindings).
type exchange struct {
	name       string
	kind       string // one of the transport.Exchange* types
	durable    bool
	autoDelete bool
	internal   bool
	args       map[string]any
	alternate  string     // the alternate-exchange argument; "" for none
	bindings   []*binding // those with this exchange as the source
	deleted    bool
	seen       uint64 // the last route pass that visited this exchange
}

// binding routes from its source exchange to a queue or to another exchange.
type binding struct {
	queue    *queue    // the destination, or
	exchange *exchange // this one for an exchange-to-exchange binding
	key      string
	args     map[string]any
	topic    transport.TopicPattern // the key compiled, when the source is a topic exchange
	headers  headersMatch           // compiled args, when the source is a headers exchange
}

// matches reports whether a message with this routing key and headers
// follows bd out of x.
func (x *exchange) matches(bd *binding, key string, headers map[string]any) bool {
	switch x.kind {
	case transport.ExchangeDirect:
		return bd.key == key
	case transport.ExchangeTopic:
		return bd.topic.Match(key)
	case transport.ExchangeHeaders:
		return bd.headers.match(headers)
	default: // fanout
		return true
	}
}

func (bd *binding) destination() string {
	if bd.queue != nil {
		return bd.queue.name
	}
	return bd.exchange.name
}

// sameAs reports whether bd is the binding a Bind or Unbind call describes:
// AMQP identifies a binding by source, destination, key and arguments.
func (bd *binding) sameAs(b transport.Binding) bool {
	return bd.destination() == b.Destination && (bd.exchange != nil) == b.DestinationIsExchange &&
		bd.key == b.RoutingKey && argsEqual(bd.args, b.Arguments)
}

func (b *broker) declareExchange(d transport.Exchange) error {
	if d.Passive {
		if b.exchanges[d.Name] == nil {
			return fmt.Errorf("memory: exchange %q: %w", d.Name, transport.ErrNotFound)
		}
		return nil
	}
	if d.Name == "" {
		return fmt.Errorf("memory: the default exchange cannot be declared: %w", transport.ErrAccessRefused)
	}
	switch d.Type {
	case transport.ExchangeDirect, transport.ExchangeTopic, transport.ExchangeFanout, transport.ExchangeHeaders:
	default:
		return fmt.Errorf("memory: exchange %q: unknown exchange type %q: %w", d.Name, d.Type, transport.ErrNotSupported)
	}
	alternate, err := parseExchangeArgs(d.Name, d.Arguments)
	if err != nil {
		return err
	}
	if x := b.exchanges[d.Name]; x != nil {
		return x.equivalent(d)
	}
	if strings.HasPrefix(d.Name, "amq.") {
		return fmt.Errorf("memory: exchange %q: the name prefix \"amq.\" is reserved for the broker: %w", d.Name, transport.ErrAccessRefused)
	}
	b.exchanges[d.Name] = &exchange{
		name: d.Name, kind: d.Type, durable: d.Durable, autoDelete: d.AutoDelete,
		internal: d.Internal, args: maps.Clone(d.Arguments), alternate: alternate,
	}
	return nil
}

// equivalent checks a redeclaration against x, as RabbitMQ does before
// answering PRECONDITION_FAILED.
func (x *exchange) equivalent(d transport.Exchange) error {
	mismatch := func(what string, have, want any) error {
		return fmt.Errorf("memory: exchange %q: %s is %v, declared as %v: %w", x.name, what, have, want, transport.ErrPrecondition)
	}
	switch {
	case x.kind != d.Type:
		return mismatch("type", x.kind, d.Type)
	case x.durable != d.Durable:
		return mismatch("durable", x.durable, d.Durable)
	case x.autoDelete != d.AutoDelete:
		return mismatch("auto-delete", x.autoDelete, d.AutoDelete)
	case x.internal != d.Internal:
		return mismatch("internal", x.internal, d.Internal)
	}
	if diff := diffArgs(x.args, d.Arguments); diff != "" {
		return fmt.Errorf("memory: exchange %q: %s: %w", x.name, diff, transport.ErrPrecondition)
	}
	return nil
}

func (b *broker) deleteExchangeNamed(name string, ifUnused bool) error {
	if name == "" || strings.HasPrefix(name, "amq.") {
		return fmt.Errorf("memory: exchange %q belongs to the broker and cannot be deleted: %w", name, transport.ErrAccessRefused)
	}
	x := b.exchanges[name]
	if x == nil {
		return nil // RabbitMQ treats deleting a missing exchange as done
	}
	if ifUnused && len(x.bindings) > 0 {
		return fmt.Errorf("memory: exchange %q has %d bindings: %w", name, len(x.bindings), transport.ErrInUse)
	}
	b.deleteExchange(x)
	return nil
}

func (b *broker) deleteExchange(x *exchange) {
	x.deleted = true
	x.bindings = nil
	delete(b.exchanges, x.name)
	b.dropBindingsTo(func(bd *binding) bool { return bd.exchange == x })
}

// dropBindingsTo removes every binding whose destination isDest selects, and
// then the auto-delete exchanges that lost their last binding that way.
func (b *broker) dropBindingsTo(isDest func(*binding) bool) {
	var emptied []*exchange
	for _, x := range b.exchanges {
		n := len(x.bindings)
		x.bindings = slices.DeleteFunc(x.bindings, isDest)
		if n > 0 && len(x.bindings) == 0 && x.autoDelete {
			emptied = append(emptied, x)
		}
	}
	for _, x := range emptied {
		if !x.deleted {
			b.deleteExchange(x)
		}
	}
}

// endpoints looks up a binding's source and destination for Bind and Unbind.
func (b *broker) endpoints(c *conn, d transport.Binding) (src *exchange, q *queue, dx *exchange, err error) {
	if d.Source == "" || (d.DestinationIsExchange && d.Destination == "") {
		return nil, nil, nil, fmt.Errorf("memory: binding %q to %q: the default exchange cannot be bound: %w", d.Source, d.Destination, transport.ErrAccessRefused)
	}
	if src = b.exchanges[d.Source]; src == nil {
		return nil, nil, nil, fmt.Errorf("memory: exchange %q: %w", d.Source, transport.ErrNotFound)
	}
	if d.DestinationIsExchange {
		if dx = b.exchanges[d.Destination]; dx == nil {
			return nil, nil, nil, fmt.Errorf("memory: exchange %q: %w", d.Destination, transport.ErrNotFound)
		}
		return src, nil, dx, nil
	}
	q, err = b.queueFor(c, d.Destination)
	return src, q, nil, err
}

func (b *broker) bind(c *conn, d transport.Binding) error {
	src, q, dx, err := b.endpoints(c, d)
	if err != nil {
		return err
	}
	for _, bd := range src.bindings {
		if bd.sameAs(d) {
			return nil
		}
	}
	bd := &binding{queue: q, exchange: dx, key: d.RoutingKey, args: maps.Clone(d.Arguments)}
	switch src.kind {
	case transport.ExchangeTopic:
		bd.topic = transport.CompileTopic(d.RoutingKey)
	case transport.ExchangeHeaders:
		if bd.headers, err = compileHeaders(d.Arguments); err != nil {
			return fmt.Errorf("memory: binding %q to %q: %w", d.Source, d.Destination, err)
		}
	}
	src.bindings = append(src.bindings, bd)
	return nil
}

func (b *broker) unbind(c *conn, d transport.Binding) error {
	src, _, _, err := b.endpoints(c, d)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(src.bindings, func(bd *binding) bool { return bd.sameAs(d) })
	if i < 0 {
		return nil // RabbitMQ treats removing a missing binding as done
	}
	src.bindings = slices.Delete(src.bindings, i, i+1)
	if src.autoDelete && len(src.bindings) == 0 {
		b.deleteExchange(src)
	}
	return nil
}
