package redis_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

func TestDirectLayout(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "orders", Type: transport.ExchangeDirect, Durable: true})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q1"})
	transporttest.Bind(t, c, transport.Binding{Source: "orders", Destination: "q1", RoutingKey: "placed"})

	members, err := e.raw.SMembers(context.Background(), e.prefix+"_kombu.binding.orders").Result()
	if err != nil || !slices.Equal(members, []string{"placed" + sep + sep + "q1"}) {
		t.Fatalf("binding set %q, %v", members, err)
	}
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "orders", RoutingKey: "placed", Body: []byte(`{"id": 1}`),
		Headers:    map[string]any{"trace": "abc"},
		Properties: transport.Properties{ContentType: "application/json", ContentEncoding: "utf-8", CorrelationID: "c1"}})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "orders", RoutingKey: "other", Body: []byte(`x`)}) // unroutable: dropped

	items := e.list("q1")
	if len(items) != 1 {
		t.Fatalf("q1 holds %d messages", len(items))
	}
	raw := items[0]
	tag := prop(envelope(t, raw), "properties", "delivery_tag").(string)
	want := `{"body": "eyJpZCI6IDF9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"trace": "abc"}, ` +
		`"properties": {"correlation_id": "c1", "delivery_mode": 2, "delivery_info": {"exchange": "orders", "routing_key": "placed"}, ` +
		`"priority": 0, "body_encoding": "base64", "delivery_tag": "` + tag + `"}}`
	if raw != want {
		t.Errorf("stored envelope\n got  %s\n want %s", raw, want)
	}
	if len(tag) != 36 || tag[14] != '4' {
		t.Errorf("delivery tag %q is not a UUID4", tag)
	}
	if got := e.keys(); !sameSet(got, []string{"q1", "_kombu.binding.orders"}) {
		t.Errorf("keys %q", got)
	}

	d, err := c.Get(context.Background(), "q1", false)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != `{"id": 1}` || d.Exchange != "orders" || d.RoutingKey != "placed" || d.Queue != "q1" ||
		d.Properties.CorrelationID != "c1" || d.Properties.DeliveryMode != 2 || d.Headers["trace"] != "abc" || d.Redelivered {
		t.Errorf("delivery %+v", d)
	}
	// Taken and recorded in one step: the unacked entry is Kombu's
	// [message, exchange, routing_key], naming the queue it came from.
	un := e.unacked()
	if un[tag] != "["+raw+`, "", "q1"]` {
		t.Errorf("unacked[%s] = %q", tag, un[tag])
	}
	if z := e.unackedIndex(); len(z) != 1 || z[0].Member != tag || time.Since(time.Unix(int64(z[0].Score), 0)) > time.Minute {
		t.Errorf("unacked_index %v", z)
	}
	ack(t, d)
	transporttest.Eventually(t, "the ack to reach Redis", func() bool { return len(e.unacked()) == 0 && len(e.unackedIndex()) == 0 })
}

func TestTopicMatchesAsKombu(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "tx", Type: transport.ExchangeTopic, Durable: true})
	for q, key := range map[string]string{"star": "a.*", "hash": "a.#", "mid": "a.*.#", "exact": "a.b"} {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
		transporttest.Bind(t, c, transport.Binding{Source: "tx", Destination: q, RoutingKey: key})
	}
	members, _ := e.raw.SMembers(context.Background(), e.prefix+"_kombu.binding.tx").Result()
	if !slices.Contains(members, "a.*.#"+sep+`^a\..*?[^\.]\..*?$`+sep+"mid") {
		t.Errorf("binding members %q lack Kombu's pattern for a.*.#", members)
	}
	for _, rk := range []string{"a", "a.b", "a.b.c", "b.c"} {
		transporttest.Publish(t, c, &transport.Publishing{Exchange: "tx", RoutingKey: rk, Body: []byte(rk)})
	}
	// Kombu's regexes: "*" matches one or more words; "a.#" needs "a.".
	want := map[string][]string{
		"star":  {"a.b", "a.b.c"},
		"hash":  {"a.b", "a.b.c"},
		"mid":   {"a.b.c"},
		"exact": {"a.b"},
	}
	for q, bodies := range want {
		var got []string
		for _, raw := range e.list(q) {
			got = append(got, prop(envelope(t, raw), "properties", "delivery_info", "routing_key").(string))
		}
		if !slices.Equal(got, bodies) {
			t.Errorf("queue %s got %q, want %q", q, got, bodies)
		}
	}
	// Each queue's copy has its own delivery tag.
	a, b := e.list("star")[1], e.list("hash")[1]
	if prop(envelope(t, a), "properties", "delivery_tag") == prop(envelope(t, b), "properties", "delivery_tag") {
		t.Error("two queues' copies share a delivery tag")
	}
}

// With exact_bindings, a binding changed by another client is used by the
// very next publish, as in Kombu.
func TestBindingAddedByAnotherClientRoutesAtOnce(t *testing.T) {
	e := newEnv(t)
	c := e.dial("exact_bindings=true")
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dx", Type: transport.ExchangeDirect, Durable: true})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.Bind(t, c, transport.Binding{Source: "dx", Destination: "q", RoutingKey: "k"})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "dx", RoutingKey: "k", Body: []byte("1")}) // caches the bindings
	// A Python process binds another queue, and removes ours.
	ctx := context.Background()
	e.raw.SAdd(ctx, e.prefix+"_kombu.binding.dx", "k"+sep+sep+"py")
	e.raw.SRem(ctx, e.prefix+"_kombu.binding.dx", "k"+sep+sep+"q")
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "dx", RoutingKey: "k", Body: []byte("2")})
	if n := len(e.list("q")); n != 1 {
		t.Errorf("q holds %d, want only the first", n)
	}
	if n := len(e.list("py")); n != 1 {
		t.Errorf("py holds %d, want the second", n)
	}
	// Mandatory: nothing bound with this key.
	err := c.Publish(ctx, &transport.Publishing{Exchange: "dx", RoutingKey: "none", Mandatory: true, Body: []byte("3")})
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Errorf("mandatory unroutable publish: %v", err)
	}
	// Batches route with the same check.
	e.raw.SAdd(ctx, e.prefix+"_kombu.binding.dx", "b"+sep+sep+"q")
	var ps []*transport.Publishing
	for range 100 {
		ps = append(ps, &transport.Publishing{Exchange: "dx", RoutingKey: "b", Body: []byte("b")})
	}
	if err := c.(transport.BatchPublisher).PublishBatch(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if n := len(e.list("q")); n != 101 {
		t.Errorf("q holds %d after the batch, want 101", n)
	}
}

// By default a connection watches the binding sets and trusts its cached
// copy until Redis announces a change: a binding changed by another client
// is used once the announcement arrives, at most verifyInterval (2 s)
// later, normally within a millisecond or so. Each publish here records
// when it started; every publish that started after the bound must have
// taken the new route, and the measured delay is logged.
func TestBindingChangedByAnotherClientRoutesOnceAnnounced(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "wx", Type: transport.ExchangeDirect, Durable: true})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "old"})
	transporttest.Bind(t, c, transport.Binding{Source: "wx", Destination: "old", RoutingKey: "k"})
	// Publish until the route is trusted: a plain LPUSH, no script.
	for range 50 {
		transporttest.Publish(t, c, &transport.Publishing{Exchange: "wx", RoutingKey: "k", Body: []byte("warm")})
		time.Sleep(5 * time.Millisecond)
	}
	if !kredis.RouteTrusted(c, "wx") {
		t.Fatal("the route is not trusted after 50 publishes: the watch never started")
	}
	const bound = 2*time.Second + 100*time.Millisecond
	// Another client moves the binding from old to new.
	e.raw.SAdd(ctx, e.prefix+"_kombu.binding.wx", "k"+sep+sep+"new")
	e.raw.SRem(ctx, e.prefix+"_kombu.binding.wx", "k"+sep+sep+"old")
	changed := time.Now()
	var lastOld, firstNew time.Duration = -1, -1
	for i := 0; time.Since(changed) < bound+200*time.Millisecond; i++ {
		started := time.Since(changed)
		before := len(e.list("old"))
		transporttest.Publish(t, c, &transport.Publishing{Exchange: "wx", RoutingKey: "k", Body: []byte("m")})
		if len(e.list("old")) > before {
			lastOld = started
			if started > bound {
				t.Fatalf("a publish started %v after the binding moved still took the old route (bound %v)", started, bound)
			}
		} else if firstNew < 0 {
			firstNew = started
		}
	}
	if firstNew < 0 {
		t.Fatal("no publish took the new route")
	}
	if !kredis.RouteTrusted(c, "wx") {
		t.Error("the new route is not trusted: every publish pays the check")
	}
	t.Logf("last publish on the old route started %v after the change, first on the new one %v after", lastOld, firstNew)
}

func TestPrioritiesLowerFirst(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "pq"})
	for _, p := range []uint8{9, 5, 0, 3, 7, 200, 2} {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "pq", Body: []byte{'0' + p%10}, Properties: transport.Properties{Priority: p}})
	}
	if got := e.keys(); !sameSet(got, []string{"pq", "pq" + sep + "3", "pq" + sep + "6", "pq" + sep + "9"}) {
		t.Errorf("keys %q", got)
	}
	if n := len(e.list("pq" + sep + "9")); n != 2 {
		t.Errorf("bucket 9 holds %d, want 2 (9 and 200)", n)
	}
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"pq"}, Prefetch: 10})
	bodies, ds := recvBodies(t, s, 7)
	// Bucket 0 (0, 2), bucket 3 (5, 3), bucket 6 (7), bucket 9 (9, 200), FIFO within each.
	if want := []string{"0", "2", "5", "3", "7", "9", "0"}; !slices.Equal(bodies, want) {
		t.Errorf("order %q, want %q", bodies, want)
	}
	if ds[6].Properties.Priority != 200 {
		t.Errorf("priority %d, want 200 kept in the properties", ds[6].Properties.Priority)
	}
}

func TestRoundRobinAcrossQueues(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "r1"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "r2"})
	send(t, c, "r1", "a1", "a2", "a3")
	send(t, c, "r2", "b1", "b2", "b3")
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"r1", "r2"}, Prefetch: 6})
	bodies, _ := recvBodies(t, s, 6)
	if want := []string{"a1", "b1", "a2", "b2", "a3", "b3"}; !slices.Equal(bodies, want) {
		t.Errorf("order %q, want %q", bodies, want)
	}
}

func TestPurgeSizeDelete(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := context.Background()
	if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "never", Passive: true}); !errors.Is(err, transport.ErrNotFound) {
		t.Errorf("passive declare of a queue without messages: %v", err)
	}
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "x", Type: transport.ExchangeDirect, Durable: true})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "sq"})
	transporttest.Bind(t, c, transport.Binding{Source: "x", Destination: "sq", RoutingKey: "k"})
	e.raw.SAdd(ctx, e.prefix+"_kombu.binding.other", "z"+sep+sep+"sq", "z"+sep+sep+"keep")
	for p := range uint8(10) {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "sq", Body: []byte("m"), Properties: transport.Properties{Priority: p}})
	}
	info, err := c.DeclareQueue(ctx, transport.Queue{Name: "sq", Passive: true})
	if err != nil || info.Messages != 10 {
		t.Fatalf("passive declare: %+v, %v", info, err)
	}
	if _, err := c.DeleteQueue(ctx, "sq", false, true); !errors.Is(err, transport.ErrInUse) {
		t.Errorf("delete if empty: %v", err)
	}
	if _, err := c.DeleteQueue(ctx, "sq", true, false); !errors.Is(err, transport.ErrNotSupported) {
		t.Errorf("delete if unused: %v", err)
	}
	n, err := c.PurgeQueue(ctx, "sq")
	if err != nil || n != 10 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	for p := range uint8(3) {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "sq", Body: []byte("m"), Properties: transport.Properties{Priority: p * 4}})
	}
	n, err = c.DeleteQueue(ctx, "sq", false, false)
	if err != nil || n != 3 {
		t.Fatalf("delete: %d, %v", n, err)
	}
	// The lists and every binding of the queue are gone; others stay.
	if got := e.keys(); !sameSet(got, []string{"_kombu.binding.other"}) {
		t.Errorf("keys after delete %q", got)
	}
	if m, _ := e.raw.SMembers(ctx, e.prefix+"_kombu.binding.other").Result(); !slices.Equal(m, []string{"z" + sep + sep + "keep"}) {
		t.Errorf("other exchange's bindings %q", m)
	}
	if err := c.DeleteExchange(ctx, "other", true); !errors.Is(err, transport.ErrInUse) {
		t.Errorf("delete exchange if unused: %v", err)
	}
	if err := c.DeleteExchange(ctx, "other", false); err != nil || len(e.keys()) != 0 {
		t.Errorf("delete exchange: %v, keys %q", err, e.keys())
	}
}

// What Redis cannot do and no Feature names is refused too (the
// conformance suite checks the features the driver does not claim).
func TestUnsupported(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := context.Background()
	checks := map[string]error{
		"exclusive consumer": func() error {
			_, err := c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"q"}, Exclusive: true})
			return err
		}(),
		"internal exchange": c.DeclareExchange(ctx, transport.Exchange{Name: "i", Type: transport.ExchangeDirect, Internal: true}),
		"exchange arguments": c.DeclareExchange(ctx, transport.Exchange{Name: "a", Type: transport.ExchangeDirect,
			Arguments: map[string]any{"alternate-exchange": "amq.fanout"}}),
		"binding arguments": c.Bind(ctx, transport.Binding{Source: "amq.direct", Destination: "q", Arguments: map[string]any{"x-match": "all"}}),
	}
	for what, err := range checks {
		if !errors.Is(err, transport.ErrNotSupported) {
			t.Errorf("%s: %v, want ErrNotSupported", what, err)
		}
	}
	// Every Kombu queue on Redis has priority buckets: x-max-priority is
	// accepted and changes nothing.
	if _, err := c.DeclareQueue(ctx, transport.Queue{Name: "p", Arguments: map[string]any{"x-max-priority": int64(10)}}); err != nil {
		t.Errorf("x-max-priority: %v", err)
	}
}

func TestGlobalKeyprefixOnEveryKeyAndChannel(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	ctx := context.Background()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "fx", Type: transport.ExchangeFanout, Durable: true})
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: "dx", Type: transport.ExchangeDirect, Durable: true})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.Bind(t, c, transport.Binding{Source: "dx", Destination: "q", RoutingKey: "k"})
	transporttest.Bind(t, c, transport.Binding{Source: "fx", Destination: "q", RoutingKey: ""})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "dx", RoutingKey: "k", Body: []byte("1"), Properties: transport.Properties{Priority: 9}})
	d, err := c.Get(ctx, "q", false)
	if err != nil {
		t.Fatal(err)
	}
	// The restore lock is only there while a restore runs: take it as Kombu
	// would and look.
	got := e.keys()
	for _, k := range []string{"_kombu.binding.dx", "_kombu.binding.fx", "unacked", "unacked_index"} {
		if !slices.Contains(got, k) {
			t.Errorf("no %s%s among %q", e.prefix, k, got)
		}
	}
	ack(t, d)
	// Fanout channels carry the prefix too: /<db>.<exchange>.
	ps := e.raw.PSubscribe(ctx, e.prefix+"/*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "fx", Body: []byte("f")})
	transporttest.Publish(t, c, &transport.Publishing{Exchange: "fx", RoutingKey: "rk", Body: []byte("g")})
	db := strings.TrimPrefix(e.base[strings.LastIndex(e.base, "/"):], "/")
	for _, want := range []string{e.prefix + "/" + db + ".fx", e.prefix + "/" + db + ".fx/rk"} {
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := msg.(*goredis.Message); !ok || m.Channel != want {
			t.Errorf("message %v, want one on %s", msg, want)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
