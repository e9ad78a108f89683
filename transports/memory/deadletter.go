package memory

import (
	"maps"
	"strconv"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Dead-letter reasons, as RabbitMQ writes them into x-death.
const (
	reasonRejected = "rejected"
	reasonExpired  = "expired"
	reasonMaxLen   = "maxlen"
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
	dm := &message{exchange: x.name, routingKey: key, body: m.body, headers: headers, props: m.props}
	dm.props.Expiration = 0
	deaths := headers["x-death"].([]any)
	for _, q := range b.route(x, key, headers) {
		if d.reason != reasonRejected && deathCycle(deaths, q.name) {
			continue
		}
		q.publish(dm)
	}
}

// withDeath returns m's headers with its death in queue recorded. As
// RabbitMQ does, a repeated death (same queue, reason and exchange)
// increments the count of its entry and moves it to the front; a new one is
// prepended. x-first-death-* keep the first death.
func withDeath(m *message, queue, reason string, now time.Time) map[string]any {
	h := make(map[string]any, len(m.headers)+4)
	maps.Copy(h, m.headers)
	old, _ := h["x-death"].([]any)
	deaths := make([]any, 1, len(old)+1)
	for _, d := range old {
		t, _ := d.(map[string]any)
		if deaths[0] == nil && t["queue"] == queue && t["reason"] == reason && t["exchange"] == m.exchange {
			t = maps.Clone(t)
			n, _ := intArg(t["count"])
			t["count"] = n + 1
			deaths[0] = t
			continue
		}
		deaths = append(deaths, d)
	}
	if deaths[0] == nil {
		t := map[string]any{
			"count":        int64(1),
			"reason":       reason,
			"queue":        queue,
			"time":         now.Truncate(time.Second), // AMQP timestamps have second precision
			"exchange":     m.exchange,
			"routing-keys": []any{m.routingKey},
		}
		if exp := m.props.Expiration; exp > 0 {
			t["original-expiration"] = strconv.FormatInt(exp.Milliseconds(), 10)
		}
		deaths[0] = t
	}
	h["x-death"] = deaths
	if _, ok := h["x-first-death-reason"]; !ok {
		h["x-first-death-reason"] = reason
		h["x-first-death-queue"] = queue
		h["x-first-death-exchange"] = m.exchange
	}
	return h
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
