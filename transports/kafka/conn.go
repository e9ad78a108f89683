package kafka

import (
	"context"
	"fmt"

	"github.com/kombu-go/kombu/runtime/transport"
)

// features are what Kombu's Kafka transport has (direct and topic
// exchanges, no fanout, priority or TTL) over the virtual connection:
// publishes return once the brokers have the record, mandatory
// publishing (routing happens here), dead-lettering as the virtual
// connection emulates it, and consumers that read their prefetch before
// every take.
const features = transport.FeatureDirect | transport.FeatureTopic | transport.FeatureConfirms |
	transport.FeatureMandatory | transport.FeatureDeadLetter | transport.FeatureLivePrefetch

// conn is the virtual connection over the store, without fanout, and
// with a PublishBatch that pipelines its records.
type conn struct {
	transport.Conn
	s *store
}

var _ transport.BatchPublisher = (*conn)(nil)

func (c *conn) Features() transport.Features { return features }

// DeclareExchange refuses fanout and headers exchanges, as Kombu's
// transport (implements = virtual.Transport.implements.extend(
// exchange_type=frozenset(['direct', 'topic']))).
func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	if !ex.Passive {
		switch ex.Type {
		case transport.ExchangeDirect, transport.ExchangeTopic, "":
		default:
			return fmt.Errorf("kafka: %s exchange %q (Kombu's Kafka transport has direct and topic exchanges): %w",
				ex.Type, ex.Name, transport.ErrNotSupported)
		}
	}
	return c.Conn.DeclareExchange(ctx, ex)
}

// PublishBatch routes every message as Publish does, then produces all
// their records at once (see batch.produce) and waits for the brokers'
// acks of all. A message that failed fails alone (a *transport.BatchError
// says which).
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	if len(ps) == 0 {
		return nil
	}
	b := newBatch(len(ps))
	bctx := context.WithValue(ctx, batchKey{}, b)
	for i, p := range ps {
		b.cur = i
		if err := c.Conn.Publish(bctx, p); err != nil {
			b.fail(i, err)
		}
	}
	b.produce(ctx, c.s.cl)
	b.wg.Wait()
	if len(ps) == 1 && b.errs[0] != nil {
		return b.errs[0]
	}
	if err := transport.NewBatchError(b.errs); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}
