package transporttest

import (
	"slices"

	"github.com/kombu-go/kombu/runtime/transport"
)

// The optional inspection interfaces (QueuePeeker, QueueLister), checked
// where the connection implements them; skipped otherwise.
var inspectChecks = []check{
	{name: "PeekTakesNothing", run: func(e *env) {
		c := e.conn()
		p, ok := c.(transport.QueuePeeker)
		if !ok {
			e.t.Skipf("%T does not implement transport.QueuePeeker", c)
		}
		q := e.queue(c, nil)
		e.send(c, q, "1", "2", "3")
		ds, err := p.PeekQueue(e.ctx(), q, 2)
		if err != nil {
			e.t.Fatalf("PeekQueue: %v", err)
		}
		got := bodiesOf(ds)
		if e.s.o.unordered {
			slices.Sort(got)
			if len(got) != 2 || !slices.Contains([]string{"1", "2", "3"}, got[0]) {
				e.t.Fatalf("PeekQueue(2) = %q, want two of 1, 2, 3", got)
			}
		} else if !slices.Equal(got, []string{"1", "2"}) {
			e.t.Fatalf("PeekQueue(2) = %q, want [1 2], the next to be delivered first", got)
		}
		for _, d := range ds {
			if d.Acknowledger != nil || d.Redelivered || d.Queue != q {
				e.t.Errorf("peeked %q: Acknowledger %v, Redelivered %v, Queue %q; want nil, false, %q", d.Body, d.Acknowledger, d.Redelivered, d.Queue, q)
			}
		}
		if n := e.ready(c, q); n != 3 {
			e.t.Fatalf("after PeekQueue the queue holds %d ready messages, want 3", n)
		}
		d := e.get(c, q, true)
		if d.Redelivered {
			e.t.Errorf("a peeked message comes back marked redelivered")
		}
		if !e.s.o.unordered && string(d.Body) != "1" {
			e.t.Errorf("after PeekQueue, Get returns %q, want 1", d.Body)
		}
		if ds, err := p.PeekQueue(e.ctx(), q, 10); err != nil || len(ds) != 2 {
			e.t.Errorf("PeekQueue(10) of a queue of 2 = %d messages, %v", len(ds), err)
		}
	}},
	{name: "ListQueues", run: func(e *env) {
		c := e.conn()
		l, ok := c.(transport.QueueLister)
		if !ok {
			e.t.Skipf("%T does not implement transport.QueueLister", c)
		}
		ex := e.exchange(c, transport.ExchangeDirect)
		q := e.queue(c, nil)
		e.bind(c, transport.Binding{Source: ex, Destination: q, RoutingKey: q})
		e.send(c, q, "a", "b")
		infos, err := l.ListQueues(e.ctx())
		if err != nil {
			e.t.Fatalf("ListQueues: %v", err)
		}
		i := slices.IndexFunc(infos, func(in transport.QueueInfo) bool { return in.Name == q })
		if i < 0 {
			e.t.Fatalf("ListQueues does not list %q (%d queues listed)", q, len(infos))
		}
		if infos[i].Messages != 2 {
			e.t.Errorf("ListQueues: %q holds %d messages, want 2", q, infos[i].Messages)
		}
	}},
}
