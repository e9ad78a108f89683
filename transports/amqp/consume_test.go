package amqp_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestConsumeTwoQueuesPrefetchOne(t *testing.T) {
	t.Parallel()
	c := open(t)
	qa := queue(t, c, "a", nil)
	qb := queue(t, c, "b", nil)
	for i := range 3 {
		toQueue(t, c, qa, "a"+strconv.Itoa(i))
		toQueue(t, c, qb, "b"+strconv.Itoa(i))
	}
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{qa, qb}, Prefetch: 1, Tag: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctxT(t))
	// Prefetch applies per consumer: one unsettled message from each queue.
	first := []*transport.Delivery{next(t, sub), next(t, sub)}
	quiet(t, sub, 100*time.Millisecond)
	byQueue := map[string]*transport.Delivery{}
	for _, d := range first {
		byQueue[d.Queue] = d
		if !strings.HasPrefix(d.ConsumerTag, "test."+d.Queue+".") {
			t.Errorf("consumer tag %q, want test.%s.<n>", d.ConsumerTag, d.Queue)
		}
		if d.Acknowledger == nil {
			t.Fatal("manual-ack delivery without an Acknowledger")
		}
	}
	if string(byQueue[qa].Body) != "a0" || string(byQueue[qb].Body) != "b0" {
		t.Fatalf("first deliveries %q %q", byQueue[qa].Body, byQueue[qb].Body)
	}
	if byQueue[qa].ConsumerTag == byQueue[qb].ConsumerTag {
		t.Error("the two queues share a consumer tag")
	}
	// Settling one lets exactly one more through, from the same queue.
	if err := byQueue[qa].Acknowledger.Ack(byQueue[qa].Tag, false); err != nil {
		t.Fatal(err)
	}
	d := next(t, sub)
	if d.Queue != qa || string(d.Body) != "a1" {
		t.Fatalf("after acking a0 got %q from %s", d.Body, d.Queue)
	}
	quiet(t, sub, 100*time.Millisecond)
}

func TestBrokerCancelsWhenQueueDeleted(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	other := queue(t, c, "other", nil)
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{other, q}})
	if err != nil {
		t.Fatal(err)
	}
	toQueue(t, c, q, "x")
	d := next(t, sub)
	if _, err := c.DeleteQueue(ctxT(t), q, false, false); err != nil {
		t.Fatal(err)
	}
	drainSub(t, sub)
	err = sub.Err()
	if !errors.Is(err, transport.ErrNotFound) || !strings.Contains(err.Error(), "cancelled the consumer of queue \""+q+"\"") {
		t.Fatalf("Err = %v, want ErrNotFound naming the queue", err)
	}
	// The whole subscription ended: the other queue has no consumer left.
	transporttest.Eventually(t, "no consumer on the other queue", func() bool {
		info, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: other, Passive: true})
		return err == nil && info.Consumers == 0
	})
	// Cancel afterwards is harmless and Err keeps the reason.
	if err := sub.Cancel(ctxT(t)); err != nil {
		t.Errorf("Cancel after the broker's cancel: %v", err)
	}
	if !errors.Is(sub.Err(), transport.ErrNotFound) {
		t.Errorf("Err after Cancel = %v", sub.Err())
	}
	_ = d
}

func TestCancelForwardsBufferedAndAllowsAcks(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	for i := range 5 {
		toQueue(t, c, q, strconv.Itoa(i))
	}
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 5})
	if err != nil {
		t.Fatal(err)
	}
	inFlight := next(t, sub)
	// The other four are buffered in the client: let them arrive.
	transporttest.Eventually(t, "every message sent to the consumer", func() bool { return ready(t, c, q) == 0 })
	if err := sub.Cancel(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	rest := drainSub(t, sub)
	var got []string
	for _, d := range rest {
		got = append(got, string(d.Body))
	}
	if !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("after Cancel got %q, want the four buffered messages", got)
	}
	if err := sub.Err(); err != nil {
		t.Errorf("Err after Cancel = %v", err)
	}
	// The in-flight message can still be acked after Cancel, and the
	// forwarded ones requeued, as the runtime does.
	if err := inFlight.Acknowledger.Ack(inFlight.Tag, false); err != nil {
		t.Fatalf("ack after Cancel: %v", err)
	}
	for _, d := range rest {
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
			t.Fatalf("requeue after Cancel: %v", err)
		}
	}
	transporttest.Eventually(t, "the four requeued messages", func() bool { return ready(t, c, q) == 4 })
	if got := bodies(t, c, q); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("queue holds %q", got)
	}
	// Once everything is settled the consumer's channel is closed: settling
	// again fails without harming the connection.
	transporttest.Eventually(t, "the channel closed", func() bool {
		err := inFlight.Acknowledger.Ack(inFlight.Tag, false)
		return errors.Is(err, transport.ErrClosed)
	})
	toQueue(t, c, q, "still open")
}

func TestSlowReader(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	const n = 200
	ps := make([]*transport.Publishing, n)
	for i := range ps {
		ps[i] = &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte(strconv.Itoa(i))}
	}
	if err := c.(transport.BatchPublisher).PublishBatch(ctxT(t), ps); err != nil {
		t.Fatal(err)
	}
	// Without prefetch the broker pushes everything at once; nobody reads
	// for a while, and meanwhile the connection keeps working.
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctxT(t))
	transporttest.Eventually(t, "every message sent to the consumer", func() bool { return ready(t, c, q) == 0 })
	other := queue(t, c, "other", nil)
	toQueue(t, c, other, "x")
	if d := get(t, c, other); string(d.Body) != "x" {
		t.Fatal("get while the consumer is not read")
	}
	for i := range n {
		d := next(t, sub)
		if string(d.Body) != strconv.Itoa(i) {
			t.Fatalf("delivery %d is %q", i, d.Body)
		}
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDirectReplyTo(t *testing.T) {
	t.Parallel()
	c := open(t)
	requests := queue(t, c, "requests", nil)
	// Without a reply consumer the request is refused before it is sent.
	err := c.Publish(ctxT(t), &transport.Publishing{RoutingKey: requests, Confirm: true, Body: []byte("early"),
		Properties: transport.Properties{ReplyTo: "amq.rabbitmq.reply-to"}})
	if err == nil || !strings.Contains(err.Error(), "needs a consumer of amq.rabbitmq.reply-to") {
		t.Fatalf("request without a reply consumer: %v", err)
	}
	replies, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{"amq.rabbitmq.reply-to"}, AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer replies.Cancel(ctxT(t))
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: requests, Confirm: true, Body: []byte("ping"),
		Properties: transport.Properties{ReplyTo: "amq.rabbitmq.reply-to", CorrelationID: "c1"}})

	// A server on another connection answers.
	server := open(t)
	req := get(t, server, requests)
	if !strings.HasPrefix(req.Properties.ReplyTo, "amq.rabbitmq.reply-to.") {
		t.Fatalf("the request's reply_to is %q", req.Properties.ReplyTo)
	}
	transporttest.Publish(t, server, &transport.Publishing{RoutingKey: req.Properties.ReplyTo, Confirm: true, Body: []byte("pong"),
		Properties: transport.Properties{CorrelationID: req.Properties.CorrelationID}})
	d := next(t, replies)
	if string(d.Body) != "pong" || d.Properties.CorrelationID != "c1" || d.Queue != "amq.rabbitmq.reply-to" {
		t.Fatalf("reply %q correlation %q queue %q", d.Body, d.Properties.CorrelationID, d.Queue)
	}
}

func TestConsumeMissingQueue(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	missing := name(t, "missing")
	_, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q, missing}})
	if !errors.Is(err, transport.ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("consume from a missing queue: %v, want ErrNotFound naming it", err)
	}
	// Nothing was left consuming q.
	info, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: q, Passive: true})
	if err != nil || info.Consumers != 0 {
		t.Fatalf("q after the failed consume: %+v, %v", info, err)
	}
	if _, err := c.Consume(ctxT(t), transport.ConsumeSpec{}); err == nil {
		t.Error("consume without queues succeeded")
	}
}

func TestExclusiveConsumerLocks(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctxT(t))
	// RabbitMQ answers ACCESS_REFUSED, which maps to no sentinel.
	_, err = open(t).Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}})
	if err == nil || !strings.Contains(err.Error(), "queue '"+q+"' in vhost '/' in exclusive use (403)") {
		t.Fatalf("second consumer of an exclusively consumed queue: %v", err)
	}
}
