package kombu

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Batch collects messages and publishes them together, so that the broker's
// confirmations are pipelined instead of awaited one by one. It works with
// any producer, generated ones included:
//
//	var batch kombu.Batch
//	add := kombu.InBatch(&batch)
//	for _, o := range orders {
//		if err := shop.PlaceOrder(ctx, o, add); err != nil { // encoded and queued, not sent
//			return err
//		}
//	}
//	err := batch.Send(ctx) // sent, and nil once the broker confirmed every one
//
// A Batch holds encoded messages until Send; bound its size to what you can
// afford to keep in memory. Its zero value is ready to use, and it may be
// reused after Send. It is safe for concurrent use.
type Batch struct {
	mu   sync.Mutex
	conn *Connection
	msgs []*transport.Publishing
}

// InBatch makes Publish add the message to b instead of sending it. Publish
// still serializes the body and declares the exchange, so its errors come
// at once; the broker's verdict comes from b.Send.
func InBatch(b *Batch) PublishOption { return publishOption(func(c *publishConfig) { c.batch = b }) }

// Len returns how many messages wait to be sent.
func (b *Batch) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

func (b *Batch) add(conn *Connection, p *transport.Publishing) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil && b.conn != conn {
		return errors.New("kombu: a Batch holds messages for one connection; use one Batch per connection")
	}
	b.conn = conn
	b.msgs = append(b.msgs, p)
	return nil
}

// Send publishes every message of the batch, in order, and returns once
// all are confirmed (those from producers with confirms on) or with an
// error saying which were not: where some were and some were not, a
// *BatchError (errors.As) whose Errs[i] is nil for each message the broker
// confirmed, in the order they were added. The batch is empty afterwards,
// whatever the outcome: a message whose publish failed is not retried by a
// second Send.
func (b *Batch) Send(ctx context.Context) error {
	b.mu.Lock()
	conn, msgs := b.conn, b.msgs
	b.conn, b.msgs = nil, nil
	b.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	// As Publish does, a batch that meets a lost connection waits for the
	// next one (bounded by ctx) and is sent again, whole: some messages may
	// then arrive twice, none is lost.
	for {
		s := conn.session()
		err := sendOn(ctx, conn, s, msgs)
		if err == nil || !conn.lostConnection(s, err) {
			return err
		}
		conn.logger.Warn("kombu: batch met a lost connection; waiting to send it again", "messages", len(msgs), "error", err)
		if _, werr := conn.nextSession(ctx, s); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

func sendOn(ctx context.Context, conn *Connection, s *session, msgs []*transport.Publishing) error {
	if bp, ok := s.tc.(transport.BatchPublisher); ok {
		return conn.op(fmt.Sprintf("publish a batch of %d", len(msgs)), bp.PublishBatch(ctx, msgs))
	}
	var errs []error
	for i, p := range msgs {
		if err := s.tc.Publish(ctx, p); err != nil {
			if errs == nil {
				errs = make([]error, len(msgs))
			}
			errs[i] = conn.op(describePublish(p), err)
		}
	}
	return transport.NewBatchError(errs)
}
