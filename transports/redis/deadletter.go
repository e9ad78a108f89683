package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
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
// it was published with, and with an x-death entry as RabbitMQ adds one
// (virtual.WithDeath), its time stored as Kombu 5.2's JSON encoder writes a
// datetime and read back as a time.Time.
// Routing follows publishing's rules (the default exchange by queue name,
// direct and topic through the binding set), except that a fanout
// dead-letter exchange pushes to the lists of every queue in its binding
// set rather than PUBLISHing on its channel, so that a dead letter is not
// lost for want of a subscriber. The push and the removal of the unacked
// record happen in one script (publishScript, or returnScript for the
// default exchange): a crash or a lost connection leaves the message either
// unacked, to be restored to its queue after the visibility timeout, or
// dead-lettered, never both.

// deadLetterFor returns the dead-letter configuration this connection
// declared the queue with, or nil.
func (c *conn) deadLetterFor(queue string) *virtual.DeadLetter {
	c.dlxMu.Lock()
	defer c.dlxMu.Unlock()
	return c.dlx[queue]
}

// setDeadLetter records a queue's dead-letter configuration (nil: none).
// The latest declaration wins.
func (c *conn) setDeadLetter(queue string, dl *virtual.DeadLetter) {
	c.dlxMu.Lock()
	defer c.dlxMu.Unlock()
	if dl == nil {
		delete(c.dlx, queue)
	} else {
		c.dlx[queue] = dl
	}
}

// deadLetter settles a rejected entry by republishing it to the queue's
// dead-letter exchange. On error the message stays unacked (or was
// dead-lettered and the reply lost) and, no longer leased, is restored to
// its queue after the visibility timeout if it is still unacked then.
func (c *conn) deadLetter(ctx context.Context, e *entry, dl *virtual.DeadLetter, reason string) error {
	if e.hkey != "" {
		c.unlease([]string{c.ks.ackKey(e)})
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
	if dl.Exchange == "" {
		if key == "" {
			// The default exchange with an empty key names no queue.
			c.settle([]*entry{e})
			return nil
		}
		_, err := returnScript.Run(ctx, c.rdb,
			[]string{c.ks.unacked, c.ks.unackedIndex, c.ks.bucket(key, step)},
			e.hkey, string(virtual.AppendEnvelopeTail(head, virtual.NewDeliveryTag())), "L").Result()
		return err
	}
	typ := c.exchangeType(dl.Exchange)
	for range 10 {
		t := c.routes.get(dl.Exchange)
		if t == nil {
			if t, err = c.freshTable(ctx, dl.Exchange); err != nil {
				return err
			}
		}
		queues := t.Lookup(typ, key)
		keys := make([]string, 0, 3+len(queues))
		keys = append(keys, c.ks.binding(dl.Exchange))
		args := make([]any, 0, 2+len(queues))
		args = append(args, t.fp)
		for _, q := range queues {
			keys = append(keys, c.ks.bucket(q, step))
			args = append(args, virtual.AppendEnvelopeTail(head[:len(head):len(head)], virtual.NewDeliveryTag()))
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
			c.routes.put(dl.Exchange, newRouteTable(members))
		default:
			return fmt.Errorf("redis: dead-letter: unexpected reply %T", v)
		}
	}
	return errors.New("redis: dead-letter: the bindings kept changing while routing")
}

// deadLetterHead builds the envelope (up to its delivery tag) a rejected
// entry is dead-lettered as, with reason (if any) in transport.ErrorHeader,
// and returns it with the routing key and the priority step it goes with.
func deadLetterHead(e *entry, dl *virtual.DeadLetter, reason string, now time.Time) (head []byte, routingKey string, step int, err error) {
	d, err := virtual.DecodeEnvelope([]byte(e.raw))
	if err != nil {
		return nil, "", 0, err
	}
	routingKey = d.RoutingKey
	if dl.HasRoutingKey {
		routingKey = dl.RoutingKey
	}
	p := &transport.Publishing{
		Exchange:   dl.Exchange,
		RoutingKey: routingKey,
		Body:       d.Body,
		Headers: virtual.WithDeath(d.Headers, virtual.Death{Queue: e.queue, Reason: virtual.ReasonRejected,
			Exchange: d.Exchange, RoutingKey: d.RoutingKey, Expiration: d.Properties.Expiration}, now),
		Properties: d.Properties,
	}
	// As RabbitMQ: a dead letter does not expire again, and is delivered
	// from its new queue as a fresh message.
	p.Expiration = 0
	delete(p.Headers, "redelivered")
	if reason != "" {
		p.Headers[transport.ErrorHeader] = reason
	}
	head, err = virtual.AppendEnvelopeHead(make([]byte, 0, 512+len(p.Body)*4/3), p)
	if err != nil {
		return nil, "", 0, err
	}
	return head, routingKey, stepFor(int(p.Priority)), nil
}
