package memory

import (
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Dead-letter reasons, as RabbitMQ writes them into x-death.
const (
	reasonRejected = virtual.ReasonRejected
	reasonExpired  = virtual.ReasonExpired
	reasonMaxLen   = virtual.ReasonMaxLen
)

// deadLetter is a message leaving queue q for the given reason, to be
// republished to q's dead-letter exchange once the current operation is done.
type deadLetter struct {
	q      *queue
	e      *entry
	reason string
	text   string // why a consumer rejected it, for transport.ErrorHeader; "": nothing said
}

// deadLetterLater schedules e for dead-lettering; without a dead-letter
// exchange it is simply dropped.
func (b *broker) deadLetterLater(q *queue, e *entry, reason string) {
	b.deadLetterWithText(q, e, reason, "")
}

// deadLetterWithText is deadLetterLater for a message a consumer rejected
// saying why.
func (b *broker) deadLetterWithText(q *queue, e *entry, reason, text string) {
	if q.hasDLX && !q.deleted {
		b.dead = append(b.dead, deadLetter{q, e, reason, text})
	}
}

// deadLetter republishes a message to its queue's dead-letter exchange as
// RabbitMQ's rabbit_dead_letter does: with the dead-letter routing key or
// else its own, an x-death entry added, and its expiration removed so that it
// does not expire again. A missing exchange drops it, as on RabbitMQ.
func (b *broker) deadLetter(d deadLetter) {
	x := b.exchanges[d.q.dlx]
	if x == nil {
		return
	}
	m := d.e.msg
	key := m.routingKey
	if d.q.hasDLRK {
		key = d.q.dlrk
	}
	headers := withDeath(m, d.q.name, d.reason, time.Now())
	if d.text != "" {
		headers[transport.ErrorHeader] = d.text
	}
	props := *m.props
	props.Expiration = 0
	dm := &message{exchange: x.name, routingKey: key, body: m.body, headers: headers, props: &props}
	deaths := headers["x-death"].([]any)
	for _, q := range b.route(x, key, headers) {
		if d.reason != reasonRejected && deathCycle(deaths, q.name) {
			continue
		}
		q.publish(dm)
	}
}

// withDeath returns m's headers with its death in queue recorded in
// x-death, as RabbitMQ records it (virtual.WithDeath, shared with the
// transports that dead-letter by themselves).
func withDeath(m *message, queue, reason string, now time.Time) map[string]any {
	return virtual.WithDeath(m.headers, virtual.Death{Queue: queue, Reason: reason,
		Exchange: m.exchange, RoutingKey: m.routingKey, Expiration: m.props.Expiration}, now)
}

// deathCycle reports whether dead-lettering into queue would close a cycle
// that RabbitMQ drops: the message already died in that queue and no death
// since then, that one included, was a rejection. Rejections are made by
// consumers, so a cycle that includes one cannot loop forever on its own.
func deathCycle(deaths []any, queue string) bool {
	for _, d := range deaths {
		t, _ := d.(map[string]any)
		if t["reason"] == reasonRejected {
			return false
		}
		if t["queue"] == queue {
			return true
		}
	}
	return false
}
