package amqp_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
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

func TestAckMultipleRejectRequeue(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	for i := range 4 {
		toQueue(t, c, q, strconv.Itoa(i))
	}
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctxT(t))
	var ds []*transport.Delivery
	for range 4 {
		ds = append(ds, next(t, sub))
	}
	for i, d := range ds {
		if string(d.Body) != strconv.Itoa(i) || d.Redelivered {
			t.Fatalf("delivery %d: %q redelivered=%v", i, d.Body, d.Redelivered)
		}
	}
	// Ack 0 and 1 at once; reject 2 for good; requeue 3.
	if err := ds[1].Acknowledger.Ack(ds[1].Tag, true); err != nil {
		t.Fatal(err)
	}
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); err == nil || !strings.Contains(err.Error(), "unknown delivery tag") {
		t.Fatalf("acking a tag a multiple ack settled: %v", err)
	}
	if err := ds[2].Acknowledger.Reject(ds[2].Tag, false); err != nil {
		t.Fatal(err)
	}
	if err := ds[3].Acknowledger.Reject(ds[3].Tag, true); err != nil {
		t.Fatal(err)
	}
	d := next(t, sub)
	if string(d.Body) != "3" || !d.Redelivered {
		t.Fatalf("after requeue got %q redelivered=%v, want 3 redelivered", d.Body, d.Redelivered)
	}
	// The refused double ack did not cost the channel.
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	quiet(t, sub, 50*time.Millisecond)
	if n := ready(t, c, q); n != 0 {
		t.Errorf("queue holds %d", n)
	}
}

func TestAutoAck(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	toQueue(t, c, q, "x")
	sub, err := c.Consume(ctxT(t), transport.ConsumeSpec{Queues: []string{q}, AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	d := next(t, sub)
	if d.Acknowledger != nil {
		t.Error("auto-acked delivery has an Acknowledger")
	}
	if err := sub.Cancel(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if ds := drainSub(t, sub); len(ds) != 0 || sub.Err() != nil {
		t.Errorf("after Cancel: %d deliveries, Err %v", len(ds), sub.Err())
	}
	if n := ready(t, c, q); n != 0 {
		t.Errorf("queue holds %d", n)
	}
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
	eventually(t, "no consumer on the other queue", func() bool {
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
	eventually(t, "every message sent to the consumer", func() bool { return ready(t, c, q) == 0 })
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
	eventually(t, "the four requeued messages", func() bool { return ready(t, c, q) == 4 })
	if got := bodies(t, c, q); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("queue holds %q", got)
	}
	// Once everything is settled the consumer's channel is closed: settling
	// again fails without harming the connection.
	eventually(t, "the channel closed", func() bool {
		err := inFlight.Acknowledger.Ack(inFlight.Tag, false)
		return errors.Is(err, transport.ErrClosed)
	})
	toQueue(t, c, q, "still open")
}

func TestGet(t *testing.T) {
	t.Parallel()
	c := open(t)
	q := queue(t, c, "q", nil)
	if _, err := c.Get(ctxT(t), q, false); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("get from an empty queue: %v, want ErrEmpty", err)
	}
	toQueue(t, c, q, "1")
	toQueue(t, c, q, "2")
	d1, err := c.Get(ctxT(t), q, false)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := c.Get(ctxT(t), q, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(d1.Body) != "1" || string(d2.Body) != "2" || d1.Queue != q || d1.Acknowledger == nil {
		t.Fatalf("got %q %q from %q", d1.Body, d2.Body, d1.Queue)
	}
	if err := d2.Acknowledger.Reject(d2.Tag, true); err != nil {
		t.Fatal(err)
	}
	if err := d1.Acknowledger.Ack(d1.Tag, false); err != nil {
		t.Fatal(err)
	}
	d, err := c.Get(ctxT(t), q, true)
	if err != nil || string(d.Body) != "2" || !d.Redelivered || d.Acknowledger != nil {
		t.Fatalf("after requeue: %+v, %v", d, err)
	}
	if _, err := c.Get(ctxT(t), q, true); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("get from the emptied queue: %v, want ErrEmpty", err)
	}
	// A get from a missing queue is NotFound, and the next one works.
	missing := name(t, "missing")
	if _, err := c.Get(ctxT(t), missing, true); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("get from a missing queue: %v, want ErrNotFound", err)
	}
	toQueue(t, c, q, "3")
	if d := get(t, c, q); string(d.Body) != "3" {
		t.Fatalf("got %q", d.Body)
	}
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
	eventually(t, "every message sent to the consumer", func() bool { return ready(t, c, q) == 0 })
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
	publish(t, c, &transport.Publishing{RoutingKey: requests, Confirm: true, Body: []byte("ping"),
		Properties: transport.Properties{ReplyTo: "amq.rabbitmq.reply-to", CorrelationID: "c1"}})

	// A server on another connection answers.
	server := open(t)
	req := get(t, server, requests)
	if !strings.HasPrefix(req.Properties.ReplyTo, "amq.rabbitmq.reply-to.") {
		t.Fatalf("the request's reply_to is %q", req.Properties.ReplyTo)
	}
	publish(t, server, &transport.Publishing{RoutingKey: req.Properties.ReplyTo, Confirm: true, Body: []byte("pong"),
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
