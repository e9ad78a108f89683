package redis

import (
	"context"
	"fmt"
	"slices"

	"github.com/kombu-go/kombu/runtime/transport"
)

// What the kombu command's queues and peek verbs ask of Redis. Kombu keeps
// no registry of queues on Redis: a queue is its lists, which exist while
// they hold messages, and the binding sets that route to it. Redis does
// not know who consumes a queue either (consumers pop lists).

var (
	_ transport.QueueLister = (*conn)(nil)
	_ transport.QueuePeeker = (*conn)(nil)
)

// ListQueues returns the queues named in the binding sets (every queue a
// Kombu or kombu-go producer or consumer declared with a binding) and
// those declared on this connection, with their depths. A queue that was
// never bound and only published to through the default exchange is not
// found: Redis cannot tell its lists from an application's. Consumers is
// -1: Redis does not know them.
func (c *conn) ListQueues(ctx context.Context) ([]transport.QueueInfo, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	names := map[string]struct{}{}
	c.mu.Lock()
	for q := range c.queues {
		names[q] = struct{}{}
	}
	c.mu.Unlock()
	// scanKeys walks every master on a cluster: in the sharded mode the
	// binding sets are spread over them.
	match := escapeGlob(c.ks.binding("")) + "*"
	err := c.scanKeys(ctx, match, func(keys []string) error {
		for _, key := range keys {
			members, err := c.rdb.SMembers(ctx, key).Result()
			if err != nil {
				return err
			}
			for _, m := range members {
				if b, ok := parseBindingMember(m); ok && b.Queue != "" {
					names[b.Queue] = struct{}{}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, c.wrap("list queues", err)
	}
	out := make([]transport.QueueInfo, 0, len(names))
	for name := range names {
		n, _, err := c.size(ctx, name)
		if err != nil {
			return nil, c.wrap("size of queue "+name, err)
		}
		out = append(out, transport.QueueInfo{Name: name, Messages: n, Consumers: -1})
	}
	slices.SortFunc(out, func(a, b transport.QueueInfo) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// PeekQueue reads the queue's lists with LRANGE, taking nothing, in the
// order a take would pop them: priority bucket by bucket (step 0 first, as
// Kombu serves them), each from its right end, where RPOP takes. A queue
// without messages gives none: Redis cannot tell it from one that does not
// exist.
func (c *conn) PeekQueue(ctx context.Context, queue string, n int) ([]*transport.Delivery, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	var out []*transport.Delivery
	for step := range numSteps {
		want := n - len(out)
		if want <= 0 {
			break
		}
		raws, err := c.rdb.LRange(ctx, c.ks.bucket(queue, step), int64(-want), -1).Result()
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("peek at queue %s", queue), err)
		}
		for i := len(raws) - 1; i >= 0; i-- {
			e := entry{raw: raws[i], queue: queue, step: step}
			out = append(out, e.delivery(""))
		}
	}
	return out, nil
}
