package virtual

import (
	"slices"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Binding is one row of an exchange's routing table as Kombu stores it
// (virtual.exchange's prepare_bind): the routing key the queue was bound
// with, the Python regular expression a topic exchange matches with (empty
// for direct and fanout exchanges), and the queue.
type Binding struct {
	RoutingKey string
	Pattern    string
	Queue      string
}

// BindingFor is the binding Kombu writes when a queue is bound to an
// exchange of the given type: with KeyToPattern's pattern for a topic
// exchange, none otherwise.
func BindingFor(exchangeType, routingKey, queue string) Binding {
	b := Binding{RoutingKey: routingKey, Queue: queue}
	if exchangeType == transport.ExchangeTopic {
		b.Pattern = KeyToPattern(routingKey)
	}
	return b
}

// Routes is an exchange's routing table, ready to route with. It
// remembers the queues of the last routing keys it was asked about, so
// that a connection that keeps it while the bindings stay the same routes
// a repeated key without matching again. It is safe for concurrent use.
type Routes struct {
	bindings []Binding
	mu       sync.Mutex
	memo     map[routeKey][]string
}

type routeKey struct{ typ, routingKey string }

// maxMemo bounds the routing keys a Routes remembers.
const maxMemo = 1024

// NewRoutes makes a routing table of the bindings, which it keeps.
func NewRoutes(bindings []Binding) *Routes {
	return &Routes{bindings: bindings, memo: map[routeKey][]string{}}
}

// Lookup returns the queues a message with the routing key goes to
// through an exchange of the given type, as Kombu's exchange types look
// them up: direct compares the binding's routing key, topic matches the
// binding's stored pattern (MatchPattern), fanout takes every queue. The
// result is sorted and has no duplicates (Kombu collects a set); the
// caller must not change it.
func (r *Routes) Lookup(exchangeType, routingKey string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if qs, ok := r.memo[routeKey{exchangeType, routingKey}]; ok {
		return qs
	}
	qs := Route(r.bindings, exchangeType, routingKey)
	if len(r.memo) >= maxMemo {
		clear(r.memo)
	}
	r.memo[routeKey{exchangeType, routingKey}] = qs
	return qs
}

// Route is Lookup without the memory: the sorted queues of the bindings
// that a message with the routing key matches through an exchange of the
// given type (a type other than topic and fanout routes as direct, as
// Kombu treats an exchange it does not know).
func Route(bindings []Binding, exchangeType, routingKey string) []string {
	var qs []string
	for _, b := range bindings {
		var match bool
		switch exchangeType {
		case transport.ExchangeTopic:
			match = MatchPattern(b.Pattern, routingKey)
		case transport.ExchangeFanout:
			match = true
		default:
			match = b.RoutingKey == routingKey
		}
		if match && !slices.Contains(qs, b.Queue) {
			qs = append(qs, b.Queue)
		}
	}
	slices.Sort(qs)
	return qs
}
