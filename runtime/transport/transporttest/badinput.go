package transporttest

import (
	"errors"
	"maps"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// What every driver must survive: each ends in the error the contract
// names, the connection stays usable, and nothing else is lost.
var badInputChecks = []check{
	{name: "PublishToDeletedExchange", need: transport.FeatureDirect, run: func(e *env) {
		c := e.conn()
		x := e.exchange(c, transport.ExchangeDirect)
		q := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: x, Destination: q, RoutingKey: "k"})
		e.send(c, q, "before")
		held := e.get(c, q, false)
		if err := c.DeleteExchange(e.ctx(), x, false); err != nil {
			e.t.Fatalf("delete exchange: %v", err)
		}
		p := &transport.Publishing{Exchange: x, RoutingKey: "k", Body: []byte("lost"), Confirm: e.has(transport.FeatureConfirms)}
		err := c.Publish(e.ctx(), p)
		if err != nil {
			// A transport that keeps exchanges in its connections (Kombu's
			// virtual transports) finds no binding: unroutable.
			e.wantEither(err, "publish to a deleted exchange", transport.ErrNotFound, transport.ErrUnroutable)
		} else if e.has(transport.FeatureConfirms) && !e.exchangesAreVirtual(c) {
			e.t.Fatalf("a confirmed publish to a deleted exchange succeeded")
		}
		if e.has(transport.FeatureMandatory) {
			p.Mandatory = true
			e.wantEither(c.Publish(e.ctx(), p), "mandatory publish to a deleted exchange", transport.ErrNotFound, transport.ErrUnroutable)
		}
		// Nothing else is lost: the connection works, the unsettled message
		// settles, the queue keeps what it had.
		e.send(c, q, "after")
		e.reject(held, true)
		got := e.drain(c, q)
		if len(got) != 2 || !slices.Contains(got, "before") || !slices.Contains(got, "after") {
			e.t.Fatalf("after the failed publish the queue holds %q, want \"before\" and \"after\"", got)
		}
	}},
	{name: "PublishToDeletedQueue", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		if _, err := c.DeleteQueue(e.ctx(), q, false, false); err != nil {
			e.t.Fatalf("delete queue: %v", err)
		}
		p := &transport.Publishing{RoutingKey: q, Body: []byte("to nowhere"), Confirm: e.has(transport.FeatureConfirms), Mandatory: e.has(transport.FeatureMandatory)}
		err := c.Publish(e.ctx(), p)
		switch {
		case err != nil:
			e.wantErr(err, transport.ErrUnroutable, "mandatory publish to a deleted queue")
			e.declare(c, transport.Queue{Name: q})
			e.empty(c, q)
		default:
			// A transport whose queues exist only as their messages cannot
			// tell a deleted queue from an empty one: it keeps the message
			// for the queue of that name, where nothing is lost. Without
			// Mandatory, AMQP drops it.
			e.declare(c, transport.Queue{Name: q})
			got := e.drain(c, q)
			if e.has(transport.FeatureMandatory) && (len(got) != 1 || got[0] != "to nowhere") {
				e.t.Fatalf("a mandatory publish to a deleted queue succeeded, and the queue declared again holds %q", got)
			}
		}
		e.send(c, q, "after")
		e.wantBodies("the queue declared again", e.drain(c, q), "after")
	}},
	{name: "SettleTwice", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3", "4")
		d1 := e.get(c, q, false)
		e.ack(d1)
		e.wantErr(d1.Acknowledger.Ack(d1.Tag, false), transport.ErrPrecondition, "a second ack")
		e.wantErr(d1.Acknowledger.Reject(d1.Tag, true), transport.ErrPrecondition, "a reject after an ack")
		e.wantErr(d1.Acknowledger.Ack(d1.Tag+1000, false), transport.ErrPrecondition, "an ack of a tag never delivered")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 1})
		d2 := e.recv(sub)
		e.reject(d2, true)
		e.wantErr(d2.Acknowledger.Reject(d2.Tag, true), transport.ErrPrecondition, "a second reject")
		e.wantErr(d2.Acknowledger.Ack(d2.Tag, false), transport.ErrPrecondition, "an ack after a reject")
		// The refusals cost nothing: later deliveries settle, and every
		// message is there once.
		var bodies []string
		for range 3 {
			d := e.recv(sub)
			bodies = append(bodies, string(d.Body))
			e.ack(d)
		}
		e.cancel(sub)
		e.ended(sub)
		if !slices.Contains(bodies, "2") || !slices.Contains(bodies, "3") || !slices.Contains(bodies, "4") {
			if every := append([]string{string(d1.Body)}, bodies...); !e.s.o.unordered || !sameSet(every, "1", "2", "3", "4") {
				e.t.Fatalf("after the refused settlements: %q, want 2, 3 and 4 once each", bodies)
			}
		}
		e.close(c)
		e.empty(e.conn(), q)
	}},
	{name: "SettleAfterClose", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.send(c, q, "got", "consumed")
		got := e.get(c, q, false)
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		consumed := e.recv(sub)
		e.close(c)
		e.wantErr(got.Acknowledger.Ack(got.Tag, false), transport.ErrClosed, "ack of a Get delivery after Close")
		e.wantErr(consumed.Acknowledger.Ack(consumed.Tag, false), transport.ErrClosed, "ack of a delivery after Close")
		e.wantErr(consumed.Acknowledger.Reject(consumed.Tag, false), transport.ErrClosed, "reject of a delivery after Close")
		// The settlements did not happen: both messages came back.
		bodies := bodiesOf(e.collect(e.conn(), q, 2))
		slices.Sort(bodies)
		e.wantBodies("after Close", bodies, "consumed", "got")
	}},
	{name: "QueueDeletedUnderConsumer", run: func(e *env) {
		c := e.conn()
		q, other := e.queue(c, nil), e.queue(c, nil)
		e.send(c, q, "1", "2")
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q, other}, Prefetch: 1})
		d := e.recv(sub)
		if _, err := c.DeleteQueue(e.ctx(), q, false, false); err != nil {
			e.t.Fatalf("delete queue: %v", err)
		}
		e.ended(sub)
		e.wantErr(sub.Err(), transport.ErrNotFound, "Err of a subscription whose queue was deleted")
		// What was delivered still settles, and the connection works.
		e.ack(d)
		if err := sub.Cancel(e.ctx()); err != nil {
			e.t.Fatalf("Cancel of an ended subscription: %v", err)
		}
		e.wantErr(sub.Err(), transport.ErrNotFound, "Err after Cancel of a subscription the broker ended")
		e.send(c, other, "after")
		e.wantBodies("the other queue", e.drain(c, other), "after")
	}},
	{name: "ZeroLengthBody", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		e.publish(c, &transport.Publishing{RoutingKey: q})
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte{}, Properties: transport.Properties{ContentType: "application/octet-stream"}})
		for range 2 {
			if d := e.get(c, q, true); len(d.Body) != 0 {
				e.t.Fatalf("an empty body arrived as %q", d.Body)
			}
		}
		sub := e.consume(c, transport.ConsumeSpec{Queues: []string{q}})
		e.send(c, q, "")
		d := e.recv(sub)
		if len(d.Body) != 0 {
			e.t.Fatalf("an empty body arrived as %q", d.Body)
		}
		e.ack(d)
		e.cancel(sub)
	}},
	{name: "NestedHeaders", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		headers := func() map[string]any {
			return map[string]any{
				"string": "text",
				"int":    7,
				"int32":  int32(-32),
				"int64":  int64(math.MaxInt64 - 1),
				"uint8":  uint8(200),
				"float":  1.5,
				"true":   true,
				"false":  false,
				"nil":    nil,
				"time":   when,
				"list":   []any{int64(1), "two", true, []any{int64(3)}, map[string]any{"in": "list"}},
				"table": map[string]any{
					"key":  "value",
					"deep": map[string]any{"n": int64(5), "when": when, "list": []any{"x"}},
				},
			}
		}
		sent := headers()
		e.publish(c, &transport.Publishing{RoutingKey: q, Body: []byte("nested"), Headers: sent})
		// The driver keeps nothing the publishing points to but the body:
		// changing the headers after Publish changes nothing delivered.
		sent["string"] = "changed"
		sent["list"].([]any)[1] = "changed"
		sent["table"].(map[string]any)["deep"].(map[string]any)["n"] = int64(-1)
		d := e.get(c, q, false)
		e.sameHeaders("nested headers", d.Headers, headers())
		// A delivery belongs to its receiver: changing it changes nothing
		// the broker keeps.
		if deep, ok := d.Headers["table"].(map[string]any)["deep"].(map[string]any); ok {
			deep["n"] = int64(-2)
		}
		d.Headers["string"] = "mine"
		e.reject(d, true)
		e.sameHeaders("nested headers after a requeue", e.get(c, q, true).Headers, headers())
	}},
	{name: "UnsupportedHeaderValue", run: func(e *env) {
		c := e.conn()
		q := e.queue(c, nil)
		type opaque struct{ X int }
		for name, h := range map[string]map[string]any{
			"a struct":                {"v": opaque{1}},
			"a channel in a table":    {"t": map[string]any{"v": make(chan int)}},
			"a function in a list":    {"l": []any{"ok", func() {}}},
			"a complex number":        {"v": complex(1, 2)},
			"a struct pointer nested": {"t": map[string]any{"l": []any{&opaque{2}}}},
		} {
			err := c.Publish(e.ctx(), &transport.Publishing{RoutingKey: q, Body: []byte("bad"), Headers: h, Confirm: e.has(transport.FeatureConfirms)})
			e.wantErr(err, transport.ErrNotSupported, "a header holding "+name)
		}
		e.empty(c, q)
		e.send(c, q, "after")
		e.wantBodies("after the refused publishes", e.drain(c, q), "after")
	}},
}

// exchangesAreVirtual reports whether exchanges live only in the memory of
// the connections that declare them (Kombu's virtual transports): then a
// deleted exchange is one with no bindings, to which a publish is dropped
// rather than refused. It declares a fresh exchange on c and checks whether
// a second connection can see it.
func (e *env) exchangesAreVirtual(c transport.Conn) bool {
	x := e.exchange(c, transport.ExchangeDirect)
	err := e.conn().DeclareExchange(e.ctx(), transport.Exchange{Name: x, Type: transport.ExchangeDirect, Passive: true})
	return errors.Is(err, transport.ErrNotFound)
}

// sameSet reports whether got holds want's strings once each, in any order.
func sameSet(got []string, want ...string) bool {
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// sameHeaders checks that every header in want arrived with the same value
// in got (a driver may add headers of its own, such as x-death or Kombu's
// redelivered). Values compare as they travel: integers by value whatever
// their Go type, time.Time to the second, either as a time.Time or as the
// ISO 8601 text Kombu's JSON envelope carries.
func (e *env) sameHeaders(what string, got, want map[string]any) {
	e.t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		v, ok := got[k]
		if !ok {
			e.t.Errorf("%s: header %q missing (got %v)", what, k, got)
			continue
		}
		if !sameValue(v, want[k]) {
			e.t.Errorf("%s: header %q = %T %#v, want %T %#v", what, k, v, v, want[k], want[k])
		}
	}
}

func sameValue(got, want any) bool {
	if w, ok := asInt(want); ok {
		g, ok := asInt(got)
		return ok && g == w
	}
	switch w := want.(type) {
	case time.Time:
		switch g := got.(type) {
		case time.Time:
			return g.Unix() == w.Unix()
		case string:
			t, err := time.Parse(time.RFC3339Nano, g)
			return err == nil && t.Unix() == w.Unix()
		}
		return false
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !sameValue(gv, wv) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

// asInt returns v as an int64 if it is an integer of any Go type.
func asInt(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() > math.MaxInt64 {
			return 0, false
		}
		return int64(rv.Uint()), true
	}
	return 0, false
}
