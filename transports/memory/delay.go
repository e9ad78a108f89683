package memory

import (
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Delayed delivery (transport.FeatureDelay). A delayed message waits on a
// timer of the process and is routed when the timer fires, as a publish
// made then would be: through the bindings its exchange has then, dropped
// if the exchange is gone or no queue matches (RabbitMQ's delayed-delivery
// topology routes at the due time too). Like every message of this broker
// it lives as long as the process; closing the connection that published it
// does not cancel it.

// publishLater keeps a copy of p, whose body and headers env keeps for
// the broker already (see conn.ready), and publishes it once p.Delay has
// passed.
func (b *broker) publishLater(p *transport.Publishing, env *envelope) {
	later := *p
	later.Body, later.BodyOwned, later.Headers = env.body, true, env.headers
	later.Delay = 0
	// Nobody waits for the outcome any more: the runtime refuses a
	// delayed mandatory publish, and a drop at the due time is what
	// RabbitMQ does with an unroutable dead letter.
	later.Mandatory, later.NotifyUnroutable = false, false
	time.AfterFunc(p.Delay, func() {
		due := newEnvelope(&later, later.Headers, new(propsCache).props(&later), false)
		b.mu.Lock()
		defer b.unlock()
		_, _, _ = b.publish(&later, due)
	})
}
