package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombu-go/kombu/runtime/transport"
)

// conn is Kombu's virtual connection over the store, with publish batches
// pipelined: every message of a batch is sent before the first stream ack
// is awaited, as publisher confirms are on AMQP.
type conn struct {
	transport.Conn
	s *store
}

var _ transport.BatchPublisher = (*conn)(nil)

// batch collects the publish-ack futures of one pipelined batch, by the
// index of the publishing that made them (a fanout makes several).
type batch struct {
	mu      sync.Mutex
	index   int
	futures []future
}

type future struct {
	f      jetstream.PubAckFuture
	queue  string
	stream string // the queue's stream, which must be the one that acked
	index  int
}

type batchKey struct{}

func (b *batch) add(f jetstream.PubAckFuture, queue, stream string) {
	b.mu.Lock()
	b.futures = append(b.futures, future{f: f, queue: queue, stream: stream, index: b.index})
	b.mu.Unlock()
}

func batchFrom(ctx context.Context) *batch {
	b, _ := ctx.Value(batchKey{}).(*batch)
	return b
}

// PublishBatch routes every message as Publish does and sends each copy
// without waiting, then waits for every stream ack. A message whose copies
// were all acked is delivered; one with a copy refused fails alone, in a
// *transport.BatchError. A copy to a queue whose stream does not exist yet
// (no stream answered) is sent again, synchronously, once the stream is
// made.
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	if len(ps) == 0 {
		return nil
	}
	b := &batch{}
	bctx := context.WithValue(ctx, batchKey{}, b)
	errs := make([]error, len(ps))
	failed := false
	for i, p := range ps {
		b.mu.Lock()
		b.index = i
		b.mu.Unlock()
		if err := c.Conn.Publish(bctx, p); err != nil {
			errs[i], failed = err, true
			if ctx.Err() != nil {
				for j := i + 1; j < len(ps); j++ {
					errs[j] = fmt.Errorf("nats: not published: %w", ctx.Err())
				}
				break
			}
		}
	}
	for _, f := range b.futures {
		if errs[f.index] != nil {
			continue
		}
		var err error
		select {
		case ack := <-f.f.Ok():
			err = checkAck(f.queue, f.stream, ack)
		case err = <-f.f.Err():
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)) {
			stream, _, nerr := c.s.names(f.queue)
			if nerr == nil {
				err = c.s.publishSync(ctx, f.queue, stream, f.f.Msg())
			}
		} else if err != nil {
			err = fmt.Errorf("nats: publish to queue %q: %w", f.queue, err)
		}
		if err != nil {
			errs[f.index], failed = err, true
		}
	}
	if !failed {
		return nil
	}
	if len(ps) == 1 {
		return errs[0]
	}
	if err := transport.NewBatchError(errs); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	return nil
}
