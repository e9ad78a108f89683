package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// The parts of the contract every driver keeps.

var declareChecks = []check{
	{name: "NamedQueue", run: func(e *env) {
		c := e.conn()
		name := e.name("q")
		info, err := c.DeclareQueue(e.ctx(), transport.Queue{Name: name})
		if err != nil {
			e.t.Fatalf("declare: %v", err)
		}
		e.forgetLater(name, "")
		if info.Name != name || info.Messages != 0 {
			e.t.Fatalf("declare: %+v, want the name %q and no messages", info, name)
		}
		e.send(c, name, "1", "2")
		info, err = c.DeclareQueue(e.ctx(), transport.Queue{Name: name})
		if err != nil || info.Name != name || info.Messages != 2 {
			e.t.Fatalf("redeclare: %+v, %v; want the name and 2 messages", info, err)
		}
		info, err = c.DeclareQueue(e.ctx(), transport.Queue{Name: name, Passive: true})
		if err != nil || info.Name != name || info.Messages != 2 {
			e.t.Fatalf("passive declare: %+v, %v; want the name and 2 messages", info, err)
		}
	}},
	{name: "PassiveMissingQueue", run: func(e *env) {
		c := e.conn()
		_, err := c.DeclareQueue(e.ctx(), transport.Queue{Name: e.name("missing"), Passive: true})
		e.wantErr(err, transport.ErrNotFound, "passive declare of a missing queue")
		// The failure leaves the connection usable.
		q := e.queue(c, nil)
		e.send(c, q, "after")
		e.wantBodies("after a failed passive declare", e.drain(c, q), "after")
	}},
	{name: "ServerNamedQueue", run: func(e *env) {
		c := e.conn()
		a := e.declare(c, transport.Queue{})
		b := e.declare(c, transport.Queue{})
		if a == b {
			e.t.Fatalf("two server-named queues are both %q", a)
		}
		e.send(c, a, "to a")
		if n := e.ready(c, a); n != 1 {
			e.t.Fatalf("server-named queue %q: passive declare counts %d, want 1", a, n)
		}
		e.wantBodies("server-named queue", e.drain(c, a), "to a")
		e.empty(c, b)
	}},
	{name: "ExclusiveQueueGoesWithItsConnection", run: func(e *env) {
		c := e.conn()
		q := e.declare(c, transport.Queue{Name: "new", Exclusive: true})
		e.send(c, q, "x")
		e.close(c)
		other := e.conn()
		e.eventually("the exclusive queue deleted with its connection", func() bool {
			_, err := other.DeclareQueue(e.ctx(), transport.Queue{Name: q, Passive: true})
			if err != nil && !errors.Is(err, transport.ErrNotFound) && !errors.Is(err, transport.ErrResourceLocked) {
				e.t.Fatalf("passive declare: %v", err)
			}
			return errors.Is(err, transport.ErrNotFound)
		})
	}},
	{name: "Exchange", need: transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeDirect)
		if err := c.DeclareExchange(e.ctx(), transport.Exchange{Name: x, Type: transport.ExchangeDirect}); err != nil {
			e.t.Fatalf("redeclare: %v", err)
		}
		if err := c.DeclareExchange(e.ctx(), transport.Exchange{Name: x, Passive: true}); err != nil {
			e.t.Fatalf("passive declare: %v", err)
		}
		err := c.DeclareExchange(e.ctx(), transport.Exchange{Name: e.name("missing"), Type: transport.ExchangeDirect, Passive: true})
		e.wantErr(err, transport.ErrNotFound, "passive declare of a missing exchange")
		var other string
		switch {
		case e.has(transport.FeatureFanout):
			other = transport.ExchangeFanout
		case e.has(transport.FeatureTopic):
			other = transport.ExchangeTopic
		default:
			return
		}
		err = c.DeclareExchange(e.ctx(), transport.Exchange{Name: x, Type: other})
		e.wantErr(err, transport.ErrPrecondition, "redeclaring a direct exchange as "+other)
		// Still the direct exchange it was, and the connection still works.
		q := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: q, RoutingKey: "k"})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "other", Body: []byte("not routed")})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k", Body: []byte("routed")})
		e.wantBodies("after a conflicting redeclaration", e.drain(c, q), "routed")
	}},
}

var bindChecks = []check{
	{name: "DirectRoutes", need: transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeDirect)
		q1, q2 := e.queue(c, nil), e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: q1, RoutingKey: "k1"})
		e.bind(c, transport.Binding{Source: x, Destination: q1, RoutingKey: "k1"}) // binding twice is one binding
		e.bind(c, transport.Binding{Source: x, Destination: q2, RoutingKey: "k2"})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k1", Body: []byte("one")})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k2", Body: []byte("two")})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k3", Body: []byte("nobody")})
		d := e.get(c, q1, true)
		if string(d.Body) != "one" || d.Exchange != x || d.RoutingKey != "k1" {
			e.t.Fatalf("q1 got %q from exchange %q with key %q, want \"one\" from %q with \"k1\"", d.Body, d.Exchange, d.RoutingKey, x)
		}
		e.empty(c, q1)
		e.wantBodies("q2", e.drain(c, q2), "two")

		e.bind(c, transport.Binding{Source: x, Destination: q2, RoutingKey: "k1"})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k1", Body: []byte("both")})
		e.wantBodies("q1 with two queues bound by k1", e.drain(c, q1), "both")
		e.wantBodies("q2 with two queues bound by k1", e.drain(c, q2), "both")
	}},
	{name: "Unbind", need: transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeDirect)
		q1, q2 := e.queue(c, nil), e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: q1, RoutingKey: "k"})
		e.bind(c, transport.Binding{Source: x, Destination: q2, RoutingKey: "k"})
		if err := c.Unbind(e.ctx(), transport.Binding{Source: x, Destination: q1, RoutingKey: "k"}); err != nil {
			e.t.Fatalf("unbind: %v", err)
		}
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k", Body: []byte("after unbind")})
		e.empty(c, q1)
		e.wantBodies("the queue still bound", e.drain(c, q2), "after unbind")
		// Removing a binding that is not there is done already.
		if err := c.Unbind(e.ctx(), transport.Binding{Source: x, Destination: q1, RoutingKey: "k"}); err != nil {
			e.t.Fatalf("unbind again: %v", err)
		}
		if err := c.Unbind(e.ctx(), transport.Binding{Source: x, Destination: q2, RoutingKey: "never"}); err != nil {
			e.t.Fatalf("unbind a key never bound: %v", err)
		}
	}},
}

var publishChecks = []check{
	{name: "PropertiesAndHeaders", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		body := make([]byte, 4*256)
		for i := range body {
			body[i] = byte(i)
		}
		p := &transport.Publishing{
			RoutingKey: q,
			Body:       body,
			Headers:    map[string]any{"x-string": "v", "x-int": int64(42), "x-bool": true},
			Properties: transport.Properties{
				ContentType:     "application/x-test",
				ContentEncoding: "binary",
				DeliveryMode:    transport.Transient,
				CorrelationID:   "corr-1",
				ReplyTo:         "reply-queue",
				MessageID:       "msg-1",
				Timestamp:       ts,
				Type:            "test.type",
				AppID:           "transporttest",
			},
		}
		want := p.Properties
		e.publish(c, p)
		d := e.get(c, q, true)
		if !bytes.Equal(d.Body, body) {
			e.t.Errorf("body changed on the way: %d bytes, want %d", len(d.Body), len(body))
		}
		got := d.Properties
		if !got.Timestamp.Equal(ts) {
			e.t.Errorf("Timestamp = %v, want %v", got.Timestamp, ts)
		}
		got.Timestamp = want.Timestamp
		if got != want {
			e.t.Errorf("properties:\n got %+v\nwant %+v", got, want)
		}
		if d.Exchange != "" || d.RoutingKey != q || d.Redelivered {
			e.t.Errorf("delivery: exchange %q, routing key %q, redelivered %t; want \"\", %q, false", d.Exchange, d.RoutingKey, d.Redelivered, q)
		}
		e.sameHeaders("headers", d.Headers, map[string]any{"x-string": "v", "x-int": int64(42), "x-bool": true})
	}},
	{name: "DeliveryModeDefaultsToPersistent", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "x")
		if d := e.get(c, q, true); d.Properties.DeliveryMode != transport.Persistent {
			e.t.Fatalf("DeliveryMode 0 arrived as %d, want Persistent (%d)", d.Properties.DeliveryMode, transport.Persistent)
		}
	}},
	{name: "FIFO", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		want := numbered(20)
		e.send(c, q, want...)
		e.wantInOrder("order", e.drain(c, q), want...)
	}},
}

var getChecks = []check{
	{name: "EmptyAndMissing", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		_, err := c.Get(e.ctx(), q, false)
		e.wantErr(err, transport.ErrEmpty, "get from an empty queue")
		// A transport whose queues exist only as their messages cannot
		// tell a missing queue from an empty one.
		_, err = c.Get(e.ctx(), e.name("missing"), true)
		e.wantEither(err, "get from a missing queue", transport.ErrNotFound, transport.ErrEmpty)
		e.send(c, q, "still works")
		e.wantBodies("after a get from a missing queue", e.drain(c, q), "still works")
	}},
	{name: "AckRejectRequeue", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3")
		d1, d2 := e.get(c, q, false), e.get(c, q, false)
		if d1.Tag == d2.Tag || d1.ConsumerTag != "" || d1.Redelivered {
			e.t.Fatalf("got %q (tag %d, consumer tag %q, redelivered %t) and %q (tag %d)",
				d1.Body, d1.Tag, d1.ConsumerTag, d1.Redelivered, d2.Body, d2.Tag)
		}
		d3 := e.get(c, q, true)
		e.wantInOrder("three gets", []string{string(d1.Body), string(d2.Body), string(d3.Body)}, "1", "2", "3")
		e.reject(d2, true)
		e.ack(d1)
		d := e.get(c, q, true)
		if string(d.Body) != string(d2.Body) || !d.Redelivered {
			e.t.Fatalf("after a requeue: %q, redelivered %t; want \"2\", redelivered", d.Body, d.Redelivered)
		}
		e.empty(c, q)
		e.close(c)
		e.empty(e.conn(), q) // the ack held, and the auto-acked messages are gone
	}},
}

var consumeChecks = []check{
	{name: "Deliveries", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Tag: "conformance"})
		bodies, ds := e.recvBodies(sub, 3)
		e.wantInOrder("deliveries", bodies, "1", "2", "3")
		e.send(c, q, "4") // published while consuming
		ds = append(ds, e.recv(sub))
		tags := map[uint64]bool{}
		for _, d := range ds {
			e.checkDelivery(d, q, false)
			if d.Redelivered || d.ConsumerTag == "" || d.ConsumerTag != ds[0].ConsumerTag || !strings.HasPrefix(d.ConsumerTag, "conformance") {
				e.t.Errorf("delivery %q: redelivered %t, consumer tag %q; want a first delivery with one tag starting with the spec's", d.Body, d.Redelivered, d.ConsumerTag)
			}
			if tags[d.Tag] {
				e.t.Errorf("delivery tag %d given twice", d.Tag)
			}
			tags[d.Tag] = true
		}
		if string(ds[3].Body) != "4" {
			e.t.Errorf("the message published while consuming arrived as %q", ds[3].Body)
		}
		for _, d := range ds {
			e.ack(d)
		}
		e.cancel(sub)
		if rest := e.ended(sub); len(rest) != 0 {
			e.t.Errorf("%d deliveries after Cancel, from an empty queue", len(rest))
		}
		if err := sub.Err(); err != nil {
			e.t.Errorf("Err after Cancel = %v, want nil", err)
		}
		if err := sub.Cancel(e.ctx()); err != nil {
			e.t.Errorf("second Cancel: %v", err)
		}
	}},
	{name: "SeveralQueues", run: func(e *env) {
		c := e.conn()
		q1, q2 := e.queue(c, nil), e.queue(c, nil)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q1, q2}, Tag: "two"})
		e.send(c, q1, "for q1")
		e.send(c, q2, "for q2")
		got := map[string]*transport.Delivery{}
		for range 2 {
			d := e.recv(sub)
			got[string(d.Body)] = d
			e.ack(d)
		}
		a, b := got["for q1"], got["for q2"]
		if a == nil || b == nil {
			e.t.Fatalf("got %v, want one message from each queue", got)
		}
		if a.Queue != q1 || b.Queue != q2 {
			e.t.Errorf("Queue fields %q and %q, want %q and %q", a.Queue, b.Queue, q1, q2)
		}
		if a.ConsumerTag == b.ConsumerTag {
			e.t.Errorf("both queues' consumers have the tag %q; the driver makes it unique per queue", a.ConsumerTag)
		}
		e.cancel(sub)
		e.ended(sub)
	}},
	{name: "CancelReturnsWhatWasNotDelivered", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		want := numbered(10)
		e.send(c, q, want...)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 3})
		got := []*transport.Delivery{e.recv(sub)}
		e.cancel(sub)
		got = append(got, e.ended(sub)...)
		if len(got) > 3 {
			e.t.Errorf("%d delivered with a prefetch of 3", len(got))
		}
		// Delivered messages stay unsettled until settled: acks after
		// Cancel work.
		var bodies []string
		for _, d := range got {
			e.ack(d)
			bodies = append(bodies, string(d.Body))
		}
		if err := sub.Err(); err != nil {
			e.t.Errorf("Err after Cancel = %v, want nil", err)
		}
		for _, d := range e.drainDeliveries(c, q) {
			if d.Redelivered {
				e.t.Errorf("%q was never handed over, yet came back marked redelivered", d.Body)
			}
			bodies = append(bodies, string(d.Body))
		}
		slices.SortFunc(bodies, func(a, b string) int { return cmpInt(a, b) })
		e.wantBodies("every message, delivered once or back in the queue", bodies, want...)
	}},
	{name: "AutoAck", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3")
		// Prefetch does not bound auto-acked deliveries.
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, AutoAck: true, Prefetch: 1})
		bodies, ds := e.recvBodies(sub, 3)
		e.wantInOrder("auto-acked deliveries", bodies, "1", "2", "3")
		for _, d := range ds {
			e.checkDelivery(d, q, true)
		}
		e.close(c)
		e.empty(e.conn(), q) // nothing comes back
	}},
	{name: "Prefetch", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3", "4", "5")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 2})
		bodies, ds := e.recvBodies(sub, 2)
		if len(bodies) != 2 {
			e.t.Fatalf("the first two: got %q", bodies)
		}
		e.wantFirst("the first two", bodies, "1", "2", "3", "4", "5")
		e.quiet(sub)
		if n := e.ready(c, q); n != 3 {
			e.t.Errorf("with 2 unsettled at a prefetch of 2, the queue holds %d ready, want 3", n)
		}
		e.ack(ds[0])
		if d := e.recv(sub); (!e.s.o.unordered && string(d.Body) != "3") || slices.Contains(bodies, string(d.Body)) {
			e.t.Fatalf("after one ack: %q, want \"3\"", d.Body)
		}
		e.quiet(sub)
		if n := e.ready(c, q); n != 2 {
			e.t.Errorf("after one ack and one more delivery, the queue holds %d ready, want 2", n)
		}
		// A requeue frees a slot as an ack does.
		e.reject(ds[1], true)
		d := e.recv(sub)
		e.quiet(sub)
		e.ack(d)
	}},
	{name: "Redelivered", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "x")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		d := e.recv(sub)
		if d.Redelivered {
			e.t.Fatal("first delivery marked redelivered")
		}
		e.reject(d, true)
		d = e.recv(sub)
		if string(d.Body) != "x" || !d.Redelivered {
			e.t.Fatalf("after a requeue: %q, redelivered %t; want \"x\", redelivered", d.Body, d.Redelivered)
		}
		e.ack(d)
		e.cancel(sub)
		e.ended(sub)
	}},
}

var settleChecks = []check{
	{name: "AckMultiple", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3", "4")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		_, ds := e.recvBodies(sub, 4)
		if err := ds[2].Acknowledger.Ack(ds[2].Tag, true); err != nil {
			e.t.Fatalf("ack multiple up to the third: %v", err)
		}
		err := ds[0].Acknowledger.Ack(ds[0].Tag, false)
		e.wantErr(err, transport.ErrPrecondition, "ack of a delivery an ack multiple settled")
		e.ack(ds[3])
		e.send(c, q, "5", "6")
		_, ds = e.recvBodies(sub, 2)
		if err := ds[0].Acknowledger.Ack(0, true); err != nil {
			e.t.Fatalf("ack multiple with tag 0: %v", err)
		}
		e.cancel(sub)
		e.ended(sub)
		e.close(c)
		e.empty(e.conn(), q) // every ack held
	}},
	{name: "RejectDrops", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "x")
		e.reject(e.get(c, q, false), false)
		e.close(c)
		e.empty(e.conn(), q)
	}},
	{name: "RequeueKeepsTheMessage", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("x"), Headers: map[string]any{"h": "v"},
			Properties: transport.Properties{ContentType: "text/plain", MessageID: "id-1"}})
		d := e.get(c, q, false)
		d.Body[0] = 'X' // a delivery is its receiver's: the broker's copy stays
		e.reject(d, true)
		d = e.get(c, q, true)
		if string(d.Body) != "x" || !d.Redelivered || d.Properties.ContentType != "text/plain" || d.Properties.MessageID != "id-1" {
			e.t.Fatalf("requeued: %q, redelivered %t, %+v", d.Body, d.Redelivered, d.Properties)
		}
		e.sameHeaders("requeued headers", d.Headers, map[string]any{"h": "v"})
	}},
	{name: "AfterCancel", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 2})
		_, ds := e.recvBodies(sub, 2)
		e.cancel(sub)
		e.ended(sub)
		e.ack(ds[0])
		e.reject(ds[1], true)
		d := e.get(c, q, true)
		want := "2"
		if e.s.o.unordered {
			want = string(ds[1].Body)
		}
		if string(d.Body) != want || !d.Redelivered {
			e.t.Fatalf("requeued after Cancel: %q, redelivered %t", d.Body, d.Redelivered)
		}
	}},
}

var closeChecks = []check{
	{name: "UnsettledComeBack", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3")
		e.get(c, q, false)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		e.recvBodies(sub, 2)
		e.close(c)
		back := e.collect(e.conn(), q, 3)
		for _, d := range back {
			if !d.Redelivered {
				e.t.Errorf("%q came back not marked redelivered", d.Body)
			}
		}
		bodies := bodiesOf(back)
		slices.Sort(bodies)
		e.wantBodies("after Close", bodies, "1", "2", "3")
	}},
	{name: "ClosedConnection", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		select {
		case <-c.Done():
			e.t.Fatal("Done closed on an open connection")
		default:
		}
		e.close(c)
		select {
		case <-c.Done():
		case <-time.After(e.s.o.timeout):
			e.t.Fatal("Done not closed after Close")
		}
		if err := c.Err(); err != nil {
			e.t.Errorf("Err after Close = %v, want nil", err)
		}
		if err := c.Close(); err != nil {
			e.t.Errorf("second Close = %v, want nil", err)
		}
		e.ended(sub)
		e.wantErr(sub.Err(), transport.ErrClosed, "a subscription's Err after its connection closed")
		e.wantErr(c.Publish(e.ctx(), &transport.Publishing{RoutingKey: q, Body: []byte("x")}), transport.ErrClosed, "Publish after Close")
		_, err := c.Get(e.ctx(), q, true)
		e.wantErr(err, transport.ErrClosed, "Get after Close")
		_, err = c.DeclareQueue(e.ctx(), transport.Queue{Name: q})
		e.wantErr(err, transport.ErrClosed, "DeclareQueue after Close")
		_, err = c.Consume(e.ctx(), transport.ConsumeSpec{Queues: []string{q}})
		e.wantErr(err, transport.ErrClosed, "Consume after Close")
		_, err = c.PurgeQueue(e.ctx(), q)
		e.wantErr(err, transport.ErrClosed, "PurgeQueue after Close")
		_, err = c.DeleteQueue(e.ctx(), q, false, false)
		e.wantErr(err, transport.ErrClosed, "DeleteQueue after Close")
		if e.has(transport.FeatureDirect) {
			x := e.name("x")
			e.wantErr(c.DeclareExchange(e.ctx(), transport.Exchange{Name: x, Type: transport.ExchangeDirect}), transport.ErrClosed, "DeclareExchange after Close")
			e.wantErr(c.Bind(e.ctx(), transport.Binding{Source: x, Destination: q}), transport.ErrClosed, "Bind after Close")
			e.wantErr(c.Unbind(e.ctx(), transport.Binding{Source: x, Destination: q}), transport.ErrClosed, "Unbind after Close")
			e.wantErr(c.DeleteExchange(e.ctx(), x, false), transport.ErrClosed, "DeleteExchange after Close")
		}
		if bp, ok := c.(transport.BatchPublisher); ok {
			err := bp.PublishBatch(e.ctx(), []*transport.Publishing{{RoutingKey: q, Body: []byte("x")}})
			e.wantErr(err, transport.ErrClosed, "PublishBatch after Close")
		}
		e.empty(e.conn(), q)
	}},
}

var purgeChecks = []check{
	{name: "ReadyOnly", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		if n, err := c.PurgeQueue(e.ctx(), q); err != nil || n != 0 {
			e.t.Fatalf("purge of an empty queue: %d, %v", n, err)
		}
		e.send(c, q, "1", "2", "3")
		held := e.get(c, q, false)
		n, err := c.PurgeQueue(e.ctx(), q)
		if err != nil || n != 2 {
			e.t.Fatalf("purge: %d, %v; want the 2 ready messages", n, err)
		}
		e.empty(c, q)
		// An unsettled message is not purged.
		e.reject(held, true)
		e.wantBodies("the unsettled message after purge and requeue", e.drain(c, q), string(held.Body))
		if !e.s.o.unordered && string(held.Body) != "1" {
			e.t.Fatalf("the first Get returned %q, want \"1\"", held.Body)
		}
	}},
}

var deleteChecks = []check{
	{name: "Queue", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3")
		_, err := c.DeleteQueue(e.ctx(), q, false, true)
		e.wantErr(err, transport.ErrInUse, "delete a queue with messages if empty")
		if n := e.ready(c, q); n != 3 {
			e.t.Fatalf("after a refused delete the queue holds %d, want 3", n)
		}
		n, err := c.DeleteQueue(e.ctx(), q, false, false)
		if err != nil || n != 3 {
			e.t.Fatalf("delete: %d, %v; want the 3 messages", n, err)
		}
		_, err = c.DeclareQueue(e.ctx(), transport.Queue{Name: q, Passive: true})
		e.wantErr(err, transport.ErrNotFound, "passive declare of a deleted queue")
		// Deleting a queue that is not there is done already.
		if n, err := c.DeleteQueue(e.ctx(), e.name("missing"), false, false); err != nil || n != 0 {
			e.t.Fatalf("delete of a missing queue: %d, %v; want 0, nil", n, err)
		}
		if n, err := c.DeleteQueue(e.ctx(), q, false, true); err != nil || n != 0 {
			e.t.Fatalf("second delete, if empty: %d, %v; want 0, nil", n, err)
		}
	}},
	{name: "QueueIfUnused", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		_, err := c.DeleteQueue(e.ctx(), q, true, false)
		if errors.Is(err, transport.ErrNotSupported) {
			// A broker that does not know its consumers (Redis) cannot
			// honour ifUnused, and says so.
			e.cancel(sub)
			return
		}
		e.wantErr(err, transport.ErrInUse, "delete a consumed queue if unused")
		e.ready(c, q) // still there
		e.cancel(sub)
		e.ended(sub)
		if _, err := c.DeleteQueue(e.ctx(), q, true, false); err != nil {
			e.t.Fatalf("delete if unused once the consumer is gone: %v", err)
		}
		_, err = c.DeclareQueue(e.ctx(), transport.Queue{Name: q, Passive: true})
		e.wantErr(err, transport.ErrNotFound, "passive declare of a deleted queue")
	}},
	{name: "Exchange", need: transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeDirect)
		q := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: q, RoutingKey: "k"})
		err := c.DeleteExchange(e.ctx(), x, true)
		e.wantErr(err, transport.ErrInUse, "delete an exchange with a binding if unused")
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k", Body: []byte("still routed")})
		e.wantBodies("after a refused delete", e.drain(c, q), "still routed")
		if err := c.DeleteExchange(e.ctx(), x, false); err != nil {
			e.t.Fatalf("delete exchange: %v", err)
		}
		err = c.DeclareExchange(e.ctx(), transport.Exchange{Name: x, Type: transport.ExchangeDirect, Passive: true})
		e.wantErr(err, transport.ErrNotFound, "passive declare of a deleted exchange")
		if err := c.DeleteExchange(e.ctx(), x, false); err != nil {
			e.t.Fatalf("delete of a missing exchange: %v, want nil", err)
		}
		e.ready(c, q) // the queue stays
	}},
}

var concurrencyChecks = []check{
	{name: "ManyPublishersAndConsumers", run: func(e *env) {
		const publishers, each = 8, 25
		pub, con1, con2 := e.conn(), e.conn(), e.conn()
		q := e.queue(pub, nil)
		var (
			mu    sync.Mutex
			seen  = map[string]int{}
			total = publishers * each
			all   = make(chan struct{})
		)
		record := func(body string) {
			mu.Lock()
			defer mu.Unlock()
			seen[body]++
			if len(seen) == total {
				close(all)
			}
		}
		subs := []transport.Subscription{
			e.consume(con1, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 5}),
			e.consume(con1, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 1}),
			e.consume(con2, transport.ConsumeSpec{Queues: []string{q}}),
		}
		var consumers sync.WaitGroup
		for _, sub := range subs {
			consumers.Add(1)
			go func() {
				defer consumers.Done()
				for d := range sub.Deliveries() {
					record(string(d.Body))
					if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
						e.t.Errorf("ack: %v", err)
					}
				}
			}()
		}
		consumers.Add(1)
		stopGetting := make(chan struct{})
		go func() { // and one that gets
			defer consumers.Done()
			ctx := context.Background() // Get does not wait; stopGetting ends the loop
			for {
				select {
				case <-stopGetting:
					return
				default:
				}
				d, err := con2.Get(ctx, q, true)
				switch {
				case errors.Is(err, transport.ErrEmpty):
					time.Sleep(time.Millisecond)
				case err != nil:
					e.t.Errorf("get: %v", err)
					return
				default:
					record(string(d.Body))
				}
			}
		}()
		var publishing sync.WaitGroup
		for p := range publishers {
			publishing.Add(1)
			go func() {
				defer publishing.Done()
				for i := range each {
					err := pub.Publish(e.ctx(), &transport.Publishing{RoutingKey: q, Confirm: e.has(transport.FeatureConfirms),
						Body: fmt.Appendf(nil, "%d-%d", p, i)})
					if err != nil {
						e.t.Errorf("publish: %v", err)
						return
					}
				}
			}()
		}
		publishing.Wait()
		select {
		case <-all:
		case <-time.After(e.s.o.timeout):
			mu.Lock()
			e.t.Errorf("received %d distinct messages of %d", len(seen), total)
			mu.Unlock()
		}
		close(stopGetting)
		for _, sub := range subs {
			e.cancel(sub)
		}
		consumers.Wait()
		for body, n := range seen {
			if n != 1 {
				e.t.Errorf("%q received %d times", body, n)
			}
		}
		e.empty(pub, q)
	}},
}

var batchChecks = []check{
	{name: "InOrder", run: func(e *env) {
		c := e.conn()
		bp, ok := c.(transport.BatchPublisher)
		if !ok {
			e.t.Skip("the connection is not a transport.BatchPublisher")
		}
		q := e.queue(c, nil)
		if err := bp.PublishBatch(e.ctx(), nil); err != nil {
			e.t.Fatalf("empty batch: %v", err)
		}
		want := numbered(200)
		var ps []*transport.Publishing
		for _, b := range want {
			ps = append(ps, &transport.Publishing{RoutingKey: q, Confirm: e.has(transport.FeatureConfirms), Body: []byte(b)})
		}
		if err := bp.PublishBatch(e.ctx(), ps); err != nil {
			e.t.Fatalf("PublishBatch: %v", err)
		}
		var got []string
		e.eventually("the batch in the queue", func() bool {
			got = append(got, e.drain(c, q)...)
			return len(got) >= len(want)
		})
		e.wantInOrder("the batch", got, want...)
	}},
	{name: "OneFails", need: transport.FeatureMandatory | transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		bp, ok := c.(transport.BatchPublisher)
		if !ok {
			e.t.Skip("the connection is not a transport.BatchPublisher")
		}
		q := e.queue(c, nil)
		x := e.exchange(c, transport.ExchangeDirect)
		confirm := e.has(transport.FeatureConfirms)
		err := bp.PublishBatch(e.ctx(), []*transport.Publishing{
			{RoutingKey: q, Confirm: confirm, Body: []byte("1")},
			{RoutingKey: q, Confirm: confirm, Body: []byte("2")},
			{Exchange: x, RoutingKey: "nobody", Mandatory: true, Confirm: confirm, Body: []byte("unroutable")},
			{RoutingKey: q, Confirm: confirm, Body: []byte("4")},
		})
		e.wantErr(err, transport.ErrUnroutable, "a batch with an unroutable mandatory message")
		// It says which failed, so that a relay (kombu.Shovel) settles each
		// message by its own fate.
		var be *transport.BatchError
		if !errors.As(err, &be) {
			e.t.Fatalf("a batch with an unroutable mandatory message: %v (%T) is not a *transport.BatchError", err, err)
		}
		if len(be.Errs) != 4 || be.Errs[0] != nil || be.Errs[1] != nil || be.Errs[3] != nil ||
			!errors.Is(be.Errs[2], transport.ErrUnroutable) {
			e.t.Fatalf("BatchError.Errs = %v; want only the third message's error, ErrUnroutable", be.Errs)
		}
		got := e.drain(c, q)
		if !slices.Equal(got, []string{"1", "2", "4"}) {
			e.t.Fatalf("after the failed batch the queue holds %q; want the three routable messages, in order", got)
		}
	}},
}

// numbered returns "0", "1", ... up to n-1.
func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// cmpInt orders decimal strings by value.
func cmpInt(a, b string) int {
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x - y
}
