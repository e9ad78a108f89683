package transporttest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// directReplyTo is RabbitMQ's pseudo-queue for direct reply-to.
const directReplyTo = "amq.rabbitmq.reply-to"

// The optional parts of the contract, each run where Features claims it.
var featureChecks = []check{
	{name: "LivePrefetch", need: transport.FeatureLivePrefetch, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		want := numbered(12)
		e.send(c, q, want...)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 1})
		ps, ok := sub.(transport.PrefetchSetter)
		if !ok {
			e.t.Fatalf("the driver claims LivePrefetch, but its subscription (%T) has no SetPrefetch", sub)
		}
		setPrefetch := func(n int) {
			e.t.Helper()
			if err := ps.SetPrefetch(e.ctx(), n); err != nil {
				e.t.Fatalf("SetPrefetch(%d): %v", n, err)
			}
		}
		var got []string
		var unsettled []*transport.Delivery
		// arrive takes what arrives until nothing more does, and checks
		// how many that was.
		arrive := func(least, most int) {
			e.t.Helper()
			n := 0
			for {
				select {
				case d, ok := <-sub.Deliveries():
					if !ok {
						e.t.Fatalf("deliveries closed early: %v", sub.Err())
					}
					got = append(got, string(d.Body))
					unsettled = append(unsettled, d)
					n++
					continue
				case <-time.After(quietPeriod):
				}
				break
			}
			if n < least || n > most {
				e.t.Fatalf("%d arrived, want %d to %d (got so far %q)", n, least, most, got)
			}
		}
		settleAll := func() {
			e.t.Helper()
			for _, d := range unsettled {
				e.ack(d)
			}
			unsettled = nil
		}
		arrive(1, 1)
		// Raised, it lets more arrive before any is settled: 2 more, or up
		// to 3 where the unsettled delivery counts against the prefetch it
		// was made under (RabbitMQ's per-consumer basic.qos).
		setPrefetch(3)
		arrive(2, 3)
		settleAll() // settled after the change, as before it
		arrive(3, 3)
		// Lowered, it takes nothing back, and holds back the deliveries
		// after it until fewer than it are unsettled: none arrive, or at
		// most the new prefetch where the earlier ones count apart.
		setPrefetch(1)
		arrive(0, 1)
		settleAll()
		arrive(1, 1)
		setPrefetch(1) // the same again changes nothing
		for len(got) < len(want) {
			settleAll()
			arrive(1, 1)
		}
		settleAll()
		e.wantInOrder("every message once, in the queue's order, across the changes", got, want...)
		e.cancel(sub)
		e.ended(sub)
		if err := ps.SetPrefetch(e.ctx(), 5); err != nil {
			e.t.Errorf("SetPrefetch after Cancel: %v, want nil", err)
		}
		e.empty(c, q)
	}},
	{name: "Topic", need: transport.FeatureTopic, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeTopic)
		created, all := e.queue(c, nil), e.queue(c, nil)
		// Patterns and keys on which AMQP and Kombu's virtual transports
		// agree (they differ on "*" against several words and on "a.#"
		// against "a").
		e.bind(c, transport.Binding{Source: x, Destination: created, RoutingKey: "orders.*.created"})
		e.bind(c, transport.Binding{Source: x, Destination: all, RoutingKey: "orders.#"})
		for _, key := range []string{"orders.eu.created", "orders.eu.paid", "billing.eu.created"} {
			e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: key, Body: []byte(key)})
		}
		e.wantBodies("orders.*.created", e.drain(c, created), "orders.eu.created")
		e.wantBodies("orders.#", e.drain(c, all), "orders.eu.created", "orders.eu.paid")
	}},
	{name: "Fanout", need: transport.FeatureFanout, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeFanout)
		q1, q2 := e.queue(c, nil), e.queue(c, nil)
		// Bound and published with one key: Kombu's Redis transport matches
		// a fanout message's key against the binding keys (fanout_patterns).
		for _, key := range []string{"", "broadcast"} {
			e.bind(c, transport.Binding{Source: x, Destination: q1, RoutingKey: key})
			e.bind(c, transport.Binding{Source: x, Destination: q2, RoutingKey: key})
			e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: key, Body: []byte("to all")})
			for _, q := range []string{q1, q2} {
				// One copy each, though q2 has two bindings the second time.
				if d := e.collect(c, q, 1)[0]; string(d.Body) != "to all" || d.Exchange != x {
					e.t.Errorf("%s got %q from %q", q, d.Body, d.Exchange)
				}
			}
			if err := c.Unbind(e.ctx(), transport.Binding{Source: x, Destination: q1, RoutingKey: key}); err != nil {
				e.t.Fatalf("unbind: %v", err)
			}
		}
		e.publish(c, &transport.Publishing{Exchange: x, Body: []byte("to q2")})
		e.collect(c, q2, 1)
		e.empty(c, q1)
	}},
	{name: "Headers", need: transport.FeatureHeaders, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeHeaders)
		allOf, anyOf := e.queue(c, nil), e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: allOf, Arguments: map[string]any{"x-match": "all", "kind": "order", "region": "eu"}})
		e.bind(c, transport.Binding{Source: x, Destination: anyOf, Arguments: map[string]any{"x-match": "any", "kind": "order", "region": "eu"}})
		for _, m := range []struct {
			body    string
			headers map[string]any
		}{
			{"both", map[string]any{"kind": "order", "region": "eu"}},
			{"kind", map[string]any{"kind": "order", "region": "us"}},
			{"neither", map[string]any{"kind": "invoice"}},
		} {
			e.publish(c, &transport.Publishing{Exchange: x, Headers: m.headers, Body: []byte(m.body)})
		}
		e.wantBodies("x-match all", e.drain(c, allOf), "both")
		e.wantBodies("x-match any", e.drain(c, anyOf), "both", "kind")
	}},
	{name: "ExchangeBindings", need: transport.FeatureExchangeBindings | transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		src, dst := e.exchange(c, transport.ExchangeDirect), e.exchange(c, transport.ExchangeDirect)
		q := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: dst, Destination: q, RoutingKey: "k"})
		e.bind(c, transport.Binding{Source: src, Destination: dst, DestinationIsExchange: true, RoutingKey: "k"})
		e.publish(c, &transport.Publishing{Exchange: src, RoutingKey: "k", Body: []byte("through")})
		e.publish(c, &transport.Publishing{Exchange: src, RoutingKey: "other", Body: []byte("not")})
		e.wantBodies("through two exchanges", bodiesOf(e.collect(c, q, 1)), "through")
		if err := c.Unbind(e.ctx(), transport.Binding{Source: src, Destination: dst, DestinationIsExchange: true, RoutingKey: "k"}); err != nil {
			e.t.Fatalf("unbind exchanges: %v", err)
		}
		e.publish(c, &transport.Publishing{Exchange: src, RoutingKey: "k", Body: []byte("after unbind")})
		e.empty(c, q)
	}},
	{name: "Priority", need: transport.FeaturePriority, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, map[string]any{"x-max-priority": 9})
		// One priority per step of Kombu's Redis buckets (0-2, 3-5, 6-8, 9).
		published := []uint8{3, 9, 0, 6}
		for _, p := range published {
			e.publish(c, &transport.Publishing{RoutingKey: q, Body: fmt.Appendf(nil, "p%d", p), Properties: transport.Properties{Priority: p}})
		}
		var want []string
		order := slices.Sorted(slices.Values(published))
		if !e.s.o.lowestPriorityFirst {
			slices.Reverse(order)
		}
		for _, p := range order {
			want = append(want, fmt.Sprintf("p%d", p))
		}
		var got []string
		for range published {
			d := e.get(c, q, true)
			if want := "p" + fmt.Sprint(d.Properties.Priority); string(d.Body) != want {
				e.t.Errorf("%q arrived with priority %d", d.Body, d.Properties.Priority)
			}
			got = append(got, string(d.Body))
		}
		e.wantBodies("by priority", got, want...)
	}},
	{name: "QueueTTL", need: transport.FeatureTTL, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, map[string]any{"x-message-ttl": 20})
		e.send(c, q, "expires")
		e.eventually("the message to expire", func() bool { return e.ready(c, q) == 0 })
		e.empty(c, q)
	}},
	{name: "MessageExpiration", need: transport.FeatureTTL, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("expires"), Properties: transport.Properties{Expiration: 20 * time.Millisecond}})
		e.eventually("the message to expire", func() bool { return e.ready(c, q) == 0 })
		e.empty(c, q)
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("lives"), Properties: transport.Properties{Expiration: time.Minute}})
		if d := e.get(c, q, true); d.Properties.Expiration != time.Minute {
			e.t.Errorf("Expiration arrived as %v, want 1m", d.Properties.Expiration)
		}
	}},
	{name: "QueueExpires", need: transport.FeatureTTL, run: func(e *env) {
		c := e.conn()
		const expires = 100 * time.Millisecond
		q := e.queue(c, map[string]any{"x-expires": expires.Milliseconds()})
		// A passive declaration counts as a use, so look less often than
		// the queue expires.
		e.eventuallyEvery(3*expires, "the unused queue to expire", func() bool {
			_, err := c.DeclareQueue(e.ctx(), transport.Queue{Name: q, Passive: true})
			if err != nil && !errors.Is(err, transport.ErrNotFound) {
				e.t.Fatalf("passive declare: %v", err)
			}
			return err != nil
		})
	}},
	{name: "DeadLetterOnReject", need: transport.FeatureDeadLetter | transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		dlx := e.exchange(c, transport.ExchangeDirect)
		dead := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: dlx, Destination: dead, RoutingKey: "dead"})
		q := e.queue(c, map[string]any{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"})
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("poison"), Headers: map[string]any{"keep": "me"}})
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("requeued")})
		poison, requeued := e.get(c, q, false), e.get(c, q, false)
		if string(poison.Body) != "poison" && e.s.o.unordered {
			// The broker may hand them out in either order.
			poison, requeued = requeued, poison
		}
		if string(poison.Body) != "poison" || string(requeued.Body) != "requeued" {
			e.t.Fatalf("got %q then %q, want \"poison\" then \"requeued\"", poison.Body, requeued.Body)
		}
		e.reject(poison, false)
		e.reject(requeued, true) // a requeue is not a death
		d := e.collect(c, dead, 1)[0]
		if string(d.Body) != "poison" || d.Exchange != dlx || d.RoutingKey != "dead" {
			e.t.Fatalf("dead letter %q from %q with key %q, want \"poison\" from %q with \"dead\"", d.Body, d.Exchange, d.RoutingKey, dlx)
		}
		if d.Headers["keep"] != "me" {
			e.t.Errorf("the dead letter lost its headers: %v", d.Headers)
		}
		e.checkDeath(d, q, "rejected", "")
		e.wantBodies("the requeued message", e.drain(c, q), "requeued")
	}},
	{name: "DeadLetterToTheDefaultExchange", need: transport.FeatureDeadLetter, run: func(e *env) {
		c := e.conn()
		dead := e.queue(c, nil)
		q := e.queue(c, map[string]any{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
		e.send(c, q, "poison")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		e.reject(e.recv(sub), false)
		e.checkDeath(e.collect(c, dead, 1)[0], q, "rejected", "")
		e.cancel(sub)
	}},
	{name: "DeadLetterOnExpiry", need: transport.FeatureDeadLetter | transport.FeatureTTL, run: func(e *env) {
		c := e.conn()
		dead := e.queue(c, nil)
		q := e.queue(c, map[string]any{"x-message-ttl": 20, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
		e.send(c, q, "late")
		e.checkDeath(e.collect(c, dead, 1)[0], q, "expired", "")
	}},
	{name: "MaxLength", need: transport.FeatureMaxLength, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, map[string]any{"x-max-length": 2})
		e.send(c, q, "1", "2", "3", "4")
		e.wantBodies("x-max-length 2 keeps the newest", e.drain(c, q), "3", "4")
		qb := e.queue(c, map[string]any{"x-max-length-bytes": 10})
		e.send(c, qb, "aaaa", "bbbb", "cccc")
		e.wantBodies("x-max-length-bytes 10 keeps the newest", e.drain(c, qb), "bbbb", "cccc")
	}},
	{name: "MaxLengthDeadLetters", need: transport.FeatureMaxLength | transport.FeatureDeadLetter, run: func(e *env) {
		c := e.conn()
		dead := e.queue(c, nil)
		q := e.queue(c, map[string]any{"x-max-length": 1, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
		e.send(c, q, "dropped", "kept")
		e.wantBodies("x-max-length 1", e.drain(c, q), "kept")
		d := e.collect(c, dead, 1)[0]
		if string(d.Body) != "dropped" {
			e.t.Fatalf("dead-lettered %q", d.Body)
		}
		e.checkDeath(d, q, "maxlen", "")
	}},
	{name: "Confirms", need: transport.FeatureConfirms, run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		for i := range 10 {
			if err := c.Publish(e.ctx(), &transport.Publishing{RoutingKey: q, Confirm: true, Body: fmt.Append(nil, i)}); err != nil {
				e.t.Fatalf("confirmed publish: %v", err)
			}
			// Confirmed means in the queue, at once.
			if n := e.ready(c, q); n != i+1 {
				e.t.Fatalf("after %d confirmed publishes the queue holds %d", i+1, n)
			}
		}
	}},
	{name: "Mandatory", need: transport.FeatureMandatory | transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeDirect)
		q := e.queue(c, nil)
		for _, confirm := range []bool{true, false} {
			err := c.Publish(e.ctx(), &transport.Publishing{Exchange: x, RoutingKey: "k", Mandatory: true, Confirm: confirm && e.has(transport.FeatureConfirms), Body: []byte("x")})
			e.wantErr(err, transport.ErrUnroutable, fmt.Sprintf("an unroutable mandatory publish (confirm %t)", confirm))
		}
		// Without Mandatory, an unroutable message is dropped.
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k", Body: []byte("dropped")})
		e.bind(c, transport.Binding{Source: x, Destination: q, RoutingKey: "k"})
		e.publish(c, &transport.Publishing{Exchange: x, RoutingKey: "k", Mandatory: true, Body: []byte("routed")})
		e.wantBodies("the routed mandatory message only", e.drain(c, q), "routed")
		if e.has(transport.FeatureFanout) {
			f := e.exchange(c, transport.ExchangeFanout)
			err := c.Publish(e.ctx(), &transport.Publishing{Exchange: f, Mandatory: true, Confirm: e.has(transport.FeatureConfirms), Body: []byte("x")})
			e.wantErr(err, transport.ErrUnroutable, "a mandatory publish to a fanout exchange without bindings")
		}
	}},
	{name: "QuorumQueue", need: transport.FeatureQueueTypes, run: func(e *env) {
		c := e.conn()
		q := e.declare(c, transport.Queue{Name: "new", Durable: true, Arguments: map[string]any{"x-queue-type": "quorum"}})
		e.send(c, q, "1", "2")
		d := e.get(c, q, false)
		e.reject(d, true)
		got := e.drainDeliveries(c, q)
		if len(got) != 2 {
			e.t.Fatalf("quorum queue holds %d messages, want 2", len(got))
		}
	}},
	{name: "StreamQueue", need: transport.FeatureQueueTypes, run: func(e *env) {
		c := e.conn()
		e.declare(c, transport.Queue{Name: "new", Durable: true, Arguments: map[string]any{"x-queue-type": "stream"}})
	}},
	{name: "DirectReplyTo", need: transport.FeatureDirectReplyTo, run: func(e *env) {
		client, server := e.conn(), e.conn()
		q := e.queue(server, nil)
		replies := e.consume(client, transport.ConsumeSpec{Queues: []string{directReplyTo}, AutoAck: true})
		e.publish(client, &transport.Publishing{RoutingKey: q, Body: []byte("request"), Properties: transport.Properties{ReplyTo: directReplyTo, CorrelationID: "c1"}})
		req := e.get(server, q, true)
		if !strings.HasPrefix(req.Properties.ReplyTo, directReplyTo) {
			e.t.Fatalf("the request's ReplyTo arrived as %q", req.Properties.ReplyTo)
		}
		e.publish(server, &transport.Publishing{RoutingKey: req.Properties.ReplyTo, Body: []byte("reply"), Properties: transport.Properties{CorrelationID: "c1"}})
		d := e.recv(replies)
		if string(d.Body) != "reply" || d.Properties.CorrelationID != "c1" || d.Acknowledger != nil {
			e.t.Fatalf("reply %q, correlation id %q", d.Body, d.Properties.CorrelationID)
		}
		e.cancel(replies)
	}},
}

// checkDeath checks the x-death record a dead letter carries: its first
// entry names the queue it died in and why, with a count of 1, and the
// exchange it was published to.
func (e *env) checkDeath(d *transport.Delivery, queue, reason, exchange string) {
	e.t.Helper()
	deaths, ok := d.Headers["x-death"].([]any)
	if !ok || len(deaths) == 0 {
		e.t.Fatalf("dead letter %q: x-death is %T %v, want a list of tables", d.Body, d.Headers["x-death"], d.Headers["x-death"])
	}
	death, ok := deaths[0].(map[string]any)
	if !ok {
		e.t.Fatalf("dead letter %q: x-death[0] is %T, want a table", d.Body, deaths[0])
	}
	count, isInt := asInt(death["count"])
	if death["queue"] != queue || death["reason"] != reason || death["exchange"] != exchange || !isInt || count != 1 {
		e.t.Errorf("dead letter %q: x-death[0] = %v; want queue %q, reason %q, exchange %q, count 1", d.Body, death, queue, reason, exchange)
	}
	// One type on every transport: RabbitMQ sends an AMQP timestamp, and
	// a driver that stores the record as text gives it back as a time.
	if at, ok := death["time"].(time.Time); !ok || time.Since(at) > time.Hour || time.Until(at) > time.Minute {
		e.t.Errorf("dead letter %q: x-death[0] time is %T %v, want a recent time.Time", d.Body, death["time"], death["time"])
	}
	if d.Headers["x-first-death-queue"] != queue || d.Headers["x-first-death-reason"] != reason {
		e.t.Errorf("dead letter %q: x-first-death-queue %v, x-first-death-reason %v; want %q, %q",
			d.Body, d.Headers["x-first-death-queue"], d.Headers["x-first-death-reason"], queue, reason)
	}
}

func bodiesOf(ds []*transport.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Body)
	}
	return out
}

// What a driver that does not claim a feature must do: refuse it with
// ErrNotSupported, and leave nothing behind.
var notSupportedChecks = []check{
	{name: "Direct", run: func(e *env) { e.refusesExchangeType(transport.FeatureDirect, transport.ExchangeDirect) }},
	{name: "Topic", run: func(e *env) { e.refusesExchangeType(transport.FeatureTopic, transport.ExchangeTopic) }},
	{name: "Fanout", run: func(e *env) { e.refusesExchangeType(transport.FeatureFanout, transport.ExchangeFanout) }},
	{name: "Headers", run: func(e *env) { e.refusesExchangeType(transport.FeatureHeaders, transport.ExchangeHeaders) }},
	{name: "ExchangeBindings", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureExchangeBindings)
		c := e.conn()
		typ := claimedExchangeType(e)
		a, b := e.exchange(c, typ), e.exchange(c, typ)
		err := c.Bind(e.ctx(), transport.Binding{Source: a, Destination: b, DestinationIsExchange: true})
		e.wantErr(err, transport.ErrNotSupported, "an exchange-to-exchange binding")
	}},
	{name: "Priority", run: func(e *env) {
		e.skipIfClaimed(transport.FeaturePriority)
		e.refusesQueueArgument("x-max-priority", 9)
		e.refusesPublish("a message priority", func(p *transport.Publishing) { p.Priority = 5 })
	}},
	{name: "TTL", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureTTL)
		e.refusesQueueArgument("x-message-ttl", 1000)
		e.refusesQueueArgument("x-expires", 60000)
		e.refusesPublish("a message expiration", func(p *transport.Publishing) { p.Expiration = time.Minute })
	}},
	{name: "DeadLetter", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureDeadLetter)
		e.refusesQueueArgument("x-dead-letter-exchange", "")
	}},
	{name: "MaxLength", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureMaxLength)
		e.refusesQueueArgument("x-max-length", 10)
		e.refusesQueueArgument("x-max-length-bytes", 1000)
	}},
	{name: "Confirms", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureConfirms)
		e.refusesPublish("a publisher confirm", func(p *transport.Publishing) { p.Confirm = true })
	}},
	{name: "Mandatory", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureMandatory)
		e.refusesPublish("a mandatory publish", func(p *transport.Publishing) { p.Mandatory = true })
	}},
	{name: "QueueTypes", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureQueueTypes)
		e.refusesQueueArgument("x-queue-type", "quorum")
		e.refusesQueueArgument("x-queue-type", "stream")
	}},
	{name: "Delay", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureDelay)
		e.refusesPublish("a delayed delivery", func(p *transport.Publishing) { p.Delay = time.Second })
	}},
	{name: "LivePrefetch", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureLivePrefetch)
		c := e.conn()
		q := e.queue(c, nil)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 1})
		if ps, ok := sub.(transport.PrefetchSetter); ok {
			e.wantErr(ps.SetPrefetch(e.ctx(), 2), transport.ErrNotSupported, "SetPrefetch without LivePrefetch")
		}
		e.cancel(sub)
		e.ended(sub)
	}},
	{name: "DirectReplyTo", run: func(e *env) {
		e.skipIfClaimed(transport.FeatureDirectReplyTo)
		c := e.conn()
		sub, err := c.Consume(e.ctx(), transport.ConsumeSpec{Queues: []string{directReplyTo}, AutoAck: true})
		if err == nil {
			sub.Cancel(e.ctx())
		}
		e.wantErr(err, transport.ErrNotSupported, "consuming "+directReplyTo)
	}},
}

func (e *env) skipIfClaimed(f transport.Features) {
	if e.has(f) {
		e.t.Skipf("the driver claims %s", featureNames(f))
	}
}

// claimedExchangeType returns an exchange type the driver has, to declare
// the exchanges a refusal needs.
func claimedExchangeType(e *env) string {
	for _, x := range []struct {
		f   transport.Features
		typ string
	}{
		{transport.FeatureDirect, transport.ExchangeDirect},
		{transport.FeatureTopic, transport.ExchangeTopic},
		{transport.FeatureFanout, transport.ExchangeFanout},
		{transport.FeatureHeaders, transport.ExchangeHeaders},
	} {
		if e.has(x.f) {
			return x.typ
		}
	}
	e.t.Skip("the driver claims no exchange type")
	return ""
}

func (e *env) refusesExchangeType(f transport.Features, typ string) {
	e.t.Helper()
	e.skipIfClaimed(f)
	c := e.conn()
	name := e.name(typ)
	err := c.DeclareExchange(e.ctx(), transport.Exchange{Name: name, Type: typ})
	if err == nil {
		e.forgetLater("", name)
	}
	e.wantErr(err, transport.ErrNotSupported, "declaring a "+typ+" exchange")
}

// refusesQueueArgument checks that declaring a queue with the argument
// fails with ErrNotSupported and creates no queue.
func (e *env) refusesQueueArgument(name string, v any) {
	e.t.Helper()
	c := e.conn()
	q := e.name("q")
	_, err := c.DeclareQueue(e.ctx(), transport.Queue{Name: q, Arguments: map[string]any{name: v}})
	if err == nil {
		e.forgetLater(q, "")
	}
	e.wantErr(err, transport.ErrNotSupported, fmt.Sprintf("declaring a queue with %s=%v", name, v))
	_, err = c.DeclareQueue(e.ctx(), transport.Queue{Name: q, Passive: true})
	e.wantErr(err, transport.ErrNotFound, "passive declare of the queue whose declaration was refused")
}

// refusesPublish checks that a publish changed by set fails with
// ErrNotSupported and delivers nothing.
func (e *env) refusesPublish(what string, set func(*transport.Publishing)) {
	e.t.Helper()
	c := e.conn()
	q := e.queue(c, nil)
	p := &transport.Publishing{RoutingKey: q, Body: []byte("refused")}
	set(p)
	e.wantErr(c.Publish(e.ctx(), p), transport.ErrNotSupported, what)
	if bp, ok := c.(transport.BatchPublisher); ok {
		e.wantErr(bp.PublishBatch(e.ctx(), []*transport.Publishing{p}), transport.ErrNotSupported, what+" in a batch")
	}
	e.empty(c, q)
}
