// Package memory is kombu-go's in-process broker, registered as the "memory"
// transport. It follows RabbitMQ's AMQP 0-9-1 semantics closely enough that
// code tested against it behaves the same on a real node: direct, topic,
// fanout and headers exchanges, exchange-to-exchange bindings, alternate
// exchanges, priority queues, message and queue TTLs, max length,
// dead-lettering with x-death headers, exclusive and auto-delete queues,
// prefetch, and requeueing of unsettled messages when a connection closes.
// Nothing is persisted; "durable" only matters when comparing declarations.
// Message headers are copied deeply on the way in and out, and a value the
// AMQP transport could not send either (a struct, a channel, ...) is
// refused with transport.ErrNotSupported.
//
// A broker lives as long as the process, so whatever its queues hold when
// the process exits is lost, messages a stopping consumer returned to them
// included; the last connection to close with messages still queued logs
// a warning saying so.
//
// What a message costs: publishing allocates one object, the message
// with its entry in its first queue, which also holds the message's
// delivery and a copy of a body of up to 512 bytes when that queue has a
// consumer (the publisher's goroutine makes it, not the consumer's); a
// message taken from a queue without one, a backlog say, gets its
// delivery, body copy included, in one allocation as it is handed over.
// The runtime adds the Message for the handler, and decoding the body is
// the application's: 7 allocations for the benchmarks' 100-byte order.
// One mutex per broker guards everything, and each message takes it
// twice, to be published and to be acked (the ack hands the subscription
// the next ready message under the same lock).
//
// Import it for its side effect:
//
//	import _ "github.com/kombu-go/kombu/transports/memory"
//
// memory:// and memory:/// name the process's default broker, and
// memory:///name a separate broker called name, which lets tests stay
// isolated from each other.
package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

func init() { transport.Register("memory", Driver{}) }

// Driver opens connections to in-process brokers. Every connection in the
// process with the same URL path shares one broker, which lives as long as
// the process.
type Driver struct{}

// brokers maps a URL path to its broker.
var (
	brokersMu sync.Mutex
	brokers   = map[string]*broker{}
)

// Open returns a connection to the broker named by u.Path. Host, port,
// credentials and query options are accepted and ignored, as Kombu's memory
// transport ignores them.
func (Driver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if u.SubURL != "" {
		return nil, fmt.Errorf("memory: %s: the memory transport takes no \"+\" suffix: %w", u, transport.ErrInvalidURL)
	}
	brokersMu.Lock()
	b := brokers[u.Path]
	if b == nil {
		b = newBroker(u.String())
		brokers[u.Path] = b
	}
	brokersMu.Unlock()
	return newConn(b, cfg), nil
}

// Discard forgets the broker named name (the path of its memory:///name
// URL): the next connection to that URL gets a new, empty broker.
// Connections still open keep using the old one until they close. Tests
// that give each test a broker of its own (package kombutest) discard it
// when the test ends, so that a long test run does not keep them all.
func Discard(name string) {
	brokersMu.Lock()
	defer brokersMu.Unlock()
	delete(brokers, name)
}
