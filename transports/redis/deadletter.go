package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Dead-lettering. Kombu's Redis transport has none: its reject without
// requeue drops the message. kombu-go emulates RabbitMQ's for its own
// consumers, keeping each queue's x-dead-letter-exchange and
// x-dead-letter-routing-key in the memory of the connection that declared
// the queue, as exchanges are kept: a process that declares the queue (as
// generated consumers always do) dead-letters its rejects.
//
// A rejected message is republished to the dead-letter exchange with the
// dead-letter routing key if the queue has one, else with the routing key
// it was published with, and with an x-death entry as RabbitMQ adds one.
// Routing follows publishing's rules (the default exchange by queue name,
// direct and topic through the binding set), except that a fanout
// dead-letter exchange pushes to the lists of every queue in its binding
// set rather than PUBLISHing on its channel, so that a dead letter is not
// lost for want of a subscriber. The push and the removal of the unacked
// record happen in one script (publishScript, or returnScript for the
// default exchange): a crash or a lost connection leaves the message either
// unacked, to be restored to its queue after the visibility timeout, or
// dead-lettered, never both.

// deadLetterConfig is a queue's dead-letter exchange and routing key.
type deadLetterConfig struct {
	exchange      string // "": the default exchange
	routingKey    string
	hasRoutingKey bool
}

// deadLetterFor returns the dead-letter configuration this connection
// declared the queue with, or nil.
func (c *conn) deadLetterFor(queue string) *deadLetterConfig {
	c.dlxMu.Lock()
	defer c.dlxMu.Unlock()
	return c.dlx[queue]
}

// setDeadLetter records a queue's dead-letter configuration (nil: none).
// The latest declaration wins.
func (c *conn) setDeadLetter(queue string, dl *deadLetterConfig) {
	c.dlxMu.Lock()
	defer c.dlxMu.Unlock()
	if dl == nil {
		delete(c.dlx, queue)
	} else {
		c.dlx[queue] = dl
	}
}

// reasonRejected is the x-death reason of a message rejected without
// requeue.
const reasonRejected = "rejected"

// deadLetter settles a rejected entry by republishing it to the queue's
// dead-letter exchange. On error the message stays unacked (or was
// dead-lettered and the reply lost) and, no longer leased, is restored to
// its queue after the visibility timeout if it is still unacked then.
func (c *conn) deadLetter(ctx context.Context, e *entry, dl *deadLetterConfig, reason string) error {
	if e.hkey != "" {
		c.unlease([]string{e.hkey})
	}
	head, key, step, err := deadLetterHead(e, dl, reason, time.Now())
	if err != nil {
		// Not an envelope: it cannot carry an x-death header or name its
		// routing key. It is dropped, as without a dead-letter exchange.
		c.log.Warn("redis: a rejected message is not a Kombu envelope and cannot be dead-lettered; dropped",
			"queue", e.queue, "error", err)
		c.settle([]*entry{e})
		return nil
	}
	if dl.exchange == "" {
		if key == "" {
			// The default exchange with an empty key names no queue.
			c.settle([]*entry{e})
			return nil
		}
		_, err := returnScript.Run(ctx, c.rdb,
			[]string{c.ks.unacked, c.ks.unackedIndex, c.ks.bucket(key, step)},
			e.hkey, string(appendEnvelopeTail(head, newTag())), "L").Result()
		return err
	}
	typ := c.exchangeType(dl.exchange)
	for range 10 {
		t := c.routes.get(dl.exchange)
		if t == nil {
			if t, err = c.freshTable(ctx, dl.exchange); err != nil {
				return err
			}
		}
		queues := t.route(typ, key)
		keys := make([]string, 0, 3+len(queues))
		keys = append(keys, c.ks.binding(dl.exchange))
		args := make([]any, 0, 2+len(queues))
		args = append(args, t.fp)
		for _, q := range queues {
			keys = append(keys, c.ks.bucket(q, step))
			args = append(args, appendEnvelopeTail(head[:len(head):len(head)], newTag()))
		}
		keys = append(keys, c.ks.unacked, c.ks.unackedIndex)
		args = append(args, e.hkey)
		v, err := publishScript.Run(ctx, c.rdb, keys, args...).Result()
		if err != nil {
			return err
		}
		switch v := v.(type) {
		case int64:
			return nil // pushed to v queues (none: dropped, as RabbitMQ does), or -1: restored meanwhile
		case []any:
			members := make([]string, 0, len(v))
			for _, m := range v {
				if s, ok := m.(string); ok {
					members = append(members, s)
				}
			}
			c.routes.put(dl.exchange, newRouteTable(members))
		default:
			return fmt.Errorf("redis: dead-letter: unexpected reply %T", v)
		}
	}
	return errors.New("redis: dead-letter: the bindings kept changing while routing")
}

// deadLetterHead builds the envelope (up to its delivery tag) a rejected
// entry is dead-lettered as, with reason (if any) in transport.ErrorHeader,
// and returns it with the routing key and the priority step it goes with.
func deadLetterHead(e *entry, dl *deadLetterConfig, reason string, now time.Time) (head []byte, routingKey string, step int, err error) {
	d, err := decodeEnvelope(e.raw)
	if err != nil {
		return nil, "", 0, err
	}
	routingKey = d.RoutingKey
	if dl.hasRoutingKey {
		routingKey = dl.routingKey
	}
	p := &transport.Publishing{
		Exchange:   dl.exchange,
		RoutingKey: routingKey,
		Body:       d.Body,
		Headers:    withDeath(d.Headers, e.queue, reasonRejected, d.Exchange, d.RoutingKey, d.Properties.Expiration, now),
		Properties: d.Properties,
	}
	// As RabbitMQ: a dead letter does not expire again, and is delivered
	// from its new queue as a fresh message.
	p.Expiration = 0
	delete(p.Headers, "redelivered")
	if reason != "" {
		p.Headers[transport.ErrorHeader] = reason
	}
	head, err = appendEnvelopeHead(make([]byte, 0, 512+len(p.Body)*4/3), p)
	if err != nil {
		return nil, "", 0, err
	}
	return head, routingKey, stepFor(int(p.Priority)), nil
}

// withDeath returns the headers with a death in queue recorded in x-death,
// a list of tables as RabbitMQ writes it: a repeated death (same queue and
// reason) increments its entry's count and moves it to the front, a new one
// is prepended. x-first-death-* keep the first death. The time is a
// time.Time, as in RabbitMQ's x-death; it is stored as Kombu's JSON encoder
// writes a datetime (an ISO 8601 string), since a JSON envelope has no
// timestamp type, and read back as a time.Time (withDeathTimes).
func withDeath(headers map[string]any, queue, reason, exchange, routingKey string, expiration time.Duration, now time.Time) map[string]any {
	h := make(map[string]any, len(headers)+4)
	maps.Copy(h, headers)
	old, _ := h["x-death"].([]any)
	deaths := make([]any, 1, len(old)+1)
	for _, d := range old {
		t, _ := d.(map[string]any)
		if deaths[0] == nil && t != nil && t["queue"] == queue && t["reason"] == reason {
			t = maps.Clone(t)
			n, _ := t["count"].(int64)
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
			"time":         now.UTC().Truncate(time.Second),
			"exchange":     exchange,
			"routing-keys": []any{routingKey},
		}
		if expiration > 0 {
			t["original-expiration"] = fmt.Sprint(expiration.Milliseconds())
		}
		deaths[0] = t
	}
	h["x-death"] = deaths
	if _, ok := h["x-first-death-reason"]; !ok {
		h["x-first-death-reason"] = reason
		h["x-first-death-queue"] = queue
		h["x-first-death-exchange"] = exchange
	}
	return h
}

// withDeathTimes turns the time of each x-death entry, stored as an ISO
// 8601 string, back into the time.Time that RabbitMQ's and the memory
// broker's x-death carry, so that a consumer reads one type on every
// transport. A time in Kombu 5.3's JSON envelope for datetimes
// ({"__type__": "datetime", "__value__": ...}), or naive (UTC, as Python's
// isoformat() writes it without a time zone), is read too; anything else is
// left as it is. Written again, the time takes its stored form.
func withDeathTimes(h map[string]any) map[string]any {
	deaths, _ := h["x-death"].([]any)
	for _, d := range deaths {
		entry, ok := d.(map[string]any)
		if !ok {
			continue
		}
		raw := entry["time"]
		if env, ok := raw.(map[string]any); ok && env["__type__"] == "datetime" {
			raw = env["__value__"]
		}
		if s, ok := raw.(string); ok {
			if t, ok := parseISOTime(s); ok {
				entry["time"] = t
			}
		}
	}
	return h
}

// parseISOTime reads a time as appendPyTime and Python's isoformat() write
// it: with "Z", with a UTC offset, or naive, taken as UTC.
func parseISOTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}
