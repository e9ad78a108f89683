package virtual

import (
	"context"
	"errors"
	"fmt"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Publish routes one message and stores a copy for each queue it reaches.
// It returns once the store has every copy.
func (c *conn) Publish(ctx context.Context, p *transport.Publishing) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	return c.publish(ctx, p, nil)
}

// PublishBatch publishes the messages in order, reading each exchange's
// table once for the batch. A message that fails fails alone: the others
// are published, and a *transport.BatchError says which failed.
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	tables := map[string][]Binding{}
	if bp, ok := c.store.(BatchPutter); ok && len(ps) > 1 {
		return c.publishBatched(ctx, bp, ps, tables)
	}
	var errs []error
	for i, p := range ps {
		err := c.publish(ctx, p, tables)
		if err == nil {
			continue
		}
		if len(ps) == 1 {
			return err
		}
		if errs == nil {
			errs = make([]error, len(ps))
		}
		errs[i] = err
		if ctx.Err() != nil {
			for j := i + 1; j < len(ps); j++ {
				errs[j] = fmt.Errorf("%s: not published: %w", c.name, ctx.Err())
			}
			break
		}
	}
	if err := transport.NewBatchError(errs); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

// publishBatched is PublishBatch over a BatchPutter: each message is
// checked and routed as publish does, in order, and the copies of those
// that go to queues by Put are gathered and stored with one PutBatch. A
// delayed message, and one a Broadcaster carries, take their own paths as
// in publish, after the copies gathered before them are stored, so that
// the batch keeps its order. A message's error tells of its copies: those
// that failed, and the queues that have one all the same.
func (c *conn) publishBatched(ctx context.Context, bp BatchPutter, ps []*transport.Publishing, tables map[string][]Binding) error {
	errs := make([]error, len(ps))
	var (
		pending []Message
		owners  []int // owners[k]: the index in ps of pending[k]
	)
	flush := func() {
		if len(pending) == 0 {
			return
		}
		putErrs := bp.PutBatch(ctx, pending)
		if putErrs != nil && len(putErrs) != len(pending) {
			// A store that broke the contract: no copy is known stored.
			err := fmt.Errorf("the store answered %d results for a batch of %d messages", len(putErrs), len(pending))
			putErrs = make([]error, len(pending))
			for k := range putErrs {
				putErrs[k] = err
			}
		}
		if putErrs != nil {
			for k := 0; k < len(pending); {
				i, end := owners[k], k
				for end < len(pending) && owners[end] == i {
					end++
				}
				errs[i] = c.copiesError(pending[k:end], putErrs[k:end])
				k = end
			}
		}
		pending, owners = nil, nil // the store may keep what it was given
	}
	for i, p := range ps {
		if ctx.Err() != nil {
			flush()
			for j := i; j < len(ps); j++ {
				if errs[j] == nil {
					errs[j] = fmt.Errorf("%s: not published: %w", c.name, ctx.Err())
				}
			}
			break
		}
		if err := c.refuse(p); err != nil {
			errs[i] = err
			continue
		}
		head, queues, err := c.envelopeAndRoute(ctx, p, tables)
		if err != nil {
			errs[i] = err
			continue
		}
		if len(queues) == 0 {
			errs[i] = c.unroutable(p)
			continue
		}
		if p.Delay > 0 || c.fanout(p, queues) {
			flush() // the batch's order, before the message's own path
			_, errs[i] = c.putCopies(ctx, p, head, queues)
			continue
		}
		priority := min(int(p.Priority), MaxPriority)
		for k, q := range queues {
			pending = append(pending, Message{Queue: q, Envelope: copyOf(head, k, len(queues)), Priority: priority})
			owners = append(owners, i)
		}
		if len(pending) >= maxPutBatch {
			flush()
		}
	}
	flush()
	if err := transport.NewBatchError(errs); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

// maxPutBatch bounds the copies a PutBatch gets (a message's copies are
// never split): a big batch's envelopes are not all held at once, for
// the cost of a store's part-filled request per queue every so many.
const maxPutBatch = 1000

// copiesError is a message's error from PutBatch's errors for its copies
// (ms, in the order of its queues): nil when every copy was stored.
func (c *conn) copiesError(ms []Message, errs []error) error {
	var failed []error
	var stored []string
	for k, m := range ms {
		if errs[k] == nil {
			stored = append(stored, m.Queue)
			continue
		}
		failed = append(failed, c.wrap(fmt.Sprintf("publish to %q", m.Queue), errs[k]))
	}
	if len(failed) == 0 {
		return nil
	}
	err := errors.Join(failed...)
	if len(failed) == 1 {
		err = failed[0]
	}
	if len(stored) > 0 {
		// As publish's "stored for ... before": the message is in these
		// queues all the same.
		return fmt.Errorf("%w (stored for %q)", err, stored)
	}
	return err
}

// publish refuses what a virtual transport does not have, then routes and
// stores the message, telling of a message no queue takes as the
// Publishing asks.
func (c *conn) publish(ctx context.Context, p *transport.Publishing, tables map[string][]Binding) error {
	if err := c.refuse(p); err != nil {
		return err
	}
	n, err := c.routeAndPut(ctx, p, tables)
	if err != nil || n > 0 {
		return err
	}
	return c.unroutable(p)
}

// refuse fails for what a virtual transport does not have.
func (c *conn) refuse(p *transport.Publishing) error {
	switch {
	case p.Expiration > 0:
		return c.errorf("message expiration (Kombu's virtual transports store it, and nothing enforces it): %w", transport.ErrNotSupported)
	case p.Priority != 0:
		return c.errorf("message priority %d (this transport has no priority queues): %w", p.Priority, transport.ErrNotSupported)
	case p.Delay > 0 && c.delayer == nil:
		return c.errorf("delayed delivery (this store cannot hold a message back): %w", transport.ErrNotSupported)
	}
	return nil
}

// unroutable tells of a message no queue takes, as the Publishing asks.
func (c *conn) unroutable(p *transport.Publishing) error {
	reason := "no queue is bound to the exchange with a matching key"
	if p.Exchange == "" {
		reason = "the default exchange with an empty routing key names no queue"
	}
	if p.Mandatory {
		return c.errorf("exchange %q, routing key %q: %s: %w", p.Exchange, p.RoutingKey, reason, transport.ErrUnroutable)
	}
	if p.NotifyUnroutable && c.onUnroutable != nil {
		c.onUnroutable(p.Exchange, p.RoutingKey, reason)
	}
	return nil
}

// routeAndPut writes the message's envelope, routes it as Kombu's virtual
// exchanges do, and stores one copy per queue, each with a delivery tag of
// its own (Kombu gives them one; distinct tags keep copies apart in stores
// that key messages by tag). It returns how many queues it reached. tables,
// if not nil, keeps the exchange tables read, for a batch.
func (c *conn) routeAndPut(ctx context.Context, p *transport.Publishing, tables map[string][]Binding) (int, error) {
	head, queues, err := c.envelopeAndRoute(ctx, p, tables)
	if err != nil {
		return 0, err
	}
	return c.putCopies(ctx, p, head, queues)
}

// envelopeAndRoute writes the head of the message's envelope (each copy
// adds its own tail: copyOf) and returns it with the queues the message is
// routed to.
func (c *conn) envelopeAndRoute(ctx context.Context, p *transport.Publishing, tables map[string][]Binding) ([]byte, []string, error) {
	// Room for the tail too: a tag and the closing `"}}`.
	head, err := AppendEnvelopeHead(make([]byte, 0, envelopeCap(p)), p)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", c.name, err)
	}
	queues, err := c.route(ctx, p, tables)
	if err != nil {
		return nil, nil, err
	}
	return head, queues, nil
}

// copyOf is the envelope of the k-th of n copies of a message whose
// envelope head is head, with a delivery tag of its own. All but the last
// get an array of their own, so that one copy's tail does not overwrite
// another's; the last uses head's spare room.
func copyOf(head []byte, k, n int) []byte {
	if k < n-1 {
		head = head[:len(head):len(head)]
	}
	return appendEnvelopeTailNewTag(head)
}

// fanout reports whether the message's copies to queues are one
// PutFanout of the Broadcaster's.
func (c *conn) fanout(p *transport.Publishing, queues []string) bool {
	return c.broadcaster != nil && len(queues) > 0 && p.Delay == 0 && p.Exchange != "" && c.exchanges.Type(p.Exchange) == transport.ExchangeFanout
}

// putCopies stores the message (its envelope's head) for the queues it
// was routed to, and returns how many it reached.
func (c *conn) putCopies(ctx context.Context, p *transport.Publishing, head []byte, queues []string) (int, error) {
	if c.fanout(p, queues) {
		// One copy for all the bound queues, as Kombu's _put_fanout.
		if err := c.broadcaster.PutFanout(ctx, p.Exchange, appendEnvelopeTailNewTag(head)); err != nil {
			return 0, c.wrap("publish to fanout exchange "+p.Exchange, err)
		}
		return len(queues), nil
	}
	priority := min(int(p.Priority), MaxPriority)
	for i, q := range queues {
		m := Message{Queue: q, Envelope: copyOf(head, i, len(queues)), Priority: priority}
		var err error
		if p.Delay > 0 {
			err = c.delayer.PutDelayed(ctx, m, p.Delay)
		} else {
			err = c.store.Put(ctx, m)
		}
		if err != nil {
			if i > 0 {
				return i, c.wrap(fmt.Sprintf("publish to %q (stored for %q before)", q, queues[:i]), err)
			}
			return 0, c.wrap(fmt.Sprintf("publish to %q", q), err)
		}
	}
	return len(queues), nil
}

// route returns the queues a message goes to: through the default
// exchange, the queue its routing key names; through another, those its
// table matches for the exchange's type.
func (c *conn) route(ctx context.Context, p *transport.Publishing, tables map[string][]Binding) ([]string, error) {
	if p.Exchange == "" {
		if p.RoutingKey == "" {
			return nil, nil
		}
		return []string{p.RoutingKey}, nil
	}
	bindings, cached := tables[p.Exchange]
	if !cached {
		var err error
		if bindings, err = c.store.Bindings(ctx, p.Exchange); err != nil {
			return nil, c.wrap("read the bindings of exchange "+p.Exchange, err)
		}
		if tables != nil {
			tables[p.Exchange] = bindings
		}
	}
	return Route(bindings, c.exchanges.Type(p.Exchange), p.RoutingKey), nil
}
