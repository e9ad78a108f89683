package kombu

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// RetriesHeader counts how many times a message has been retried by a
// consumer with WithMessageRetry. It travels with the message, so every consumer
// of the queue, in any process, sees the same count.
const RetriesHeader = "kombu_retries"

// WithMessageRetry retries a message whose handler failed (returned an error other
// than a Requeue, or panicked) up to policy.MaxRetries times, waiting
// policy's back-off before each retry, and then rejects it for good: it is
// dead-lettered where the queue has a dead-letter exchange. A poison message
// never blocks its queue: the waiting happens in the broker, not in the
// consumer. Each retry copy carries in ErrorHeader the error of the attempt
// that failed (see "Dead letters" in the package documentation).
//
// Where the transport has message TTLs and dead-lettering (RabbitMQ, the
// memory broker), a retried message waits in a holding queue named
// "<queue>.retry", declared on first use, whose expired messages return to
// the queue. Elsewhere it is republished to its queue at once, the back-off
// not applied. Either way the message is republished with an incremented
// RetriesHeader and the failed delivery is acked after that publish is
// confirmed: a retry can duplicate a message, never lose it. Messages of
// server-named queues are not retried.
//
// Messages wait in the holding queue in order, and RabbitMQ expires only
// the message at its head, so a retry may wait as long as the longest
// back-off ahead of it. On a quorum queue with a delivery limit the broker
// counts deliveries itself (x-delivery-count); prefer that and Requeue there.
//
// policy.MaxRetries must be positive.
func WithMessageRetry(policy RetryPolicy) ConsumerOption {
	return consumerOption(func(c *consumerConfig) { c.retry = &policy })
}

// retrier republishes failed messages for a consumer.
type retrier struct {
	policy   RetryPolicy
	conn     *Connection
	producer *Producer

	mu       sync.Mutex
	declared map[string]uint64 // holding queue → the session it was declared on
}

func newRetrier(conn *Connection, policy RetryPolicy) (*retrier, error) {
	if policy.MaxRetries <= 0 {
		return nil, fmt.Errorf("kombu: WithMessageRetry needs MaxRetries > 0, got %d", policy.MaxRetries)
	}
	return &retrier{policy: policy, conn: conn, producer: NewProducer(conn), declared: map[string]uint64{}}, nil
}

// Retries returns how many times WithMessageRetry has retried the message
// so far, from its RetriesHeader: 0 on the first attempt.
func (m *Message) Retries() int {
	switch n := m.Headers[RetriesHeader].(type) {
	case int:
		return n
	case int32:
		return int(n)
	case int64:
		return int(n)
	case float64: // from a JSON envelope
		return int(n)
	}
	return 0
}

// retry republishes msg, which failed with failure, for another attempt,
// if it has attempts left, and reports whether it did. The caller then acks
// the original.
func (r *retrier) retry(ctx context.Context, msg *Message, failure error) (bool, error) {
	queue := msg.DeliveryInfo.Queue
	done := msg.Retries()
	if done >= r.policy.MaxRetries || queue == "" || strings.HasPrefix(queue, "amq.") {
		return false, nil
	}
	headers := maps.Clone(msg.Headers)
	if headers == nil {
		headers = map[string]any{}
	}
	headers[RetriesHeader] = int64(done + 1)
	headers[ErrorHeader] = errorText(failure)
	pub := &transport.Publishing{
		RoutingKey: queue,
		Confirm:    r.conn.features.Has(transport.FeatureConfirms),
		Body:       msg.Body,
		Headers:    headers,
		Properties: msg.Properties,
	}
	delete(headers, "compression") // msg.Body is decompressed: republish it as such
	pub.Expiration = 0
	if r.conn.features.Has(transport.FeatureTTL | transport.FeatureDeadLetter) {
		hold, err := r.holdingQueue(ctx, queue)
		if err != nil {
			return false, err
		}
		pub.RoutingKey = hold
		pub.Expiration = max(r.policy.Interval(done), time.Millisecond)
	}
	if r.conn.intercept != nil {
		if err := r.conn.interceptPublish(ctx, r.producer, nil, pub, viaRetry, true); err != nil {
			return false, err
		}
		return true, nil
	}
	s := r.conn.session()
	if err := s.tc.Publish(ctx, pub); err != nil {
		return false, r.conn.op(describePublish(pub), err)
	}
	return true, nil
}

// holdingQueue declares, once per session, the queue where a message of
// queue waits out its back-off: expired messages dead-letter back to queue
// through the default exchange.
func (r *retrier) holdingQueue(ctx context.Context, queue string) (string, error) {
	name := queue + ".retry"
	gen := r.conn.session().gen
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.declared[name] == gen {
		return name, nil
	}
	q := Queue{Name: name, DeadLetterExchange: "", DeadLetterRoutingKey: queue}
	// An empty DeadLetterExchange means none to Queue; the default exchange
	// must be named explicitly in the argument.
	q.Arguments = map[string]any{"x-dead-letter-exchange": ""}
	if _, err := q.Declare(ctx, r.conn); err != nil {
		return "", fmt.Errorf("kombu: declare retry queue %s: %w", name, err)
	}
	r.declared[name] = gen
	return name, nil
}
