package kafkatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/kafka"
)

// TestRecordsMatchKombuLayout checks what the transport stores against
// kombu/transport/confluentkafka.py (Kombu 5.5):
//   - _put: producer.produce(queue, str_to_bytes(dumps(message))): the
//     topic is the sanitized queue name (sanitize_queue_name drops '@'),
//     the value the JSON envelope, no key, no headers;
//   - _new_queue: NewTopic(queue, num_partitions=1, replication_factor=1);
//   - _get_consumer: group.id "<queue>-consumer-group",
//     auto.offset.reset earliest, enable.auto.commit False, and a commit
//     once the message is acked (QoS.ack);
//   - _get: loads(message.value()): a record Python wrote is read as its
//     envelope.
func TestRecordsMatchKombuLayout(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	_, adm := admin(t, c)
	conn := open(t, url(c, ""))
	defer conn.Close()

	queue := unique("celery@host") // Celery's worker queues hold '@'
	topic := kafka.TopicName(queue)
	if want := queue[:6] + queue[7:]; topic != want {
		t.Fatalf("topic %q, want %q", topic, want)
	}
	if _, err := conn.DeclareQueue(ctx, transport.Queue{Name: queue}); err != nil {
		t.Fatal(err)
	}
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	td := tds[topic]
	if td.Err != nil || len(td.Partitions) != 1 || td.Partitions.NumReplicas() != 1 {
		t.Fatalf("topic %q: err %v, %d partitions, replication %d; Kombu makes 1 and 1", topic, td.Err, len(td.Partitions), td.Partitions.NumReplicas())
	}

	publish(t, ctx, conn, queue, "hello")
	recs := readAll(t, ctx, c, topic, 1)
	r := recs[0]
	if r.Key != nil || len(r.Headers) != 0 {
		t.Fatalf("record has key %q and headers %v; Kombu writes neither", r.Key, r.Headers)
	}
	var env struct {
		Body            string         `json:"body"`
		ContentEncoding string         `json:"content-encoding"`
		ContentType     string         `json:"content-type"`
		Headers         map[string]any `json:"headers"`
		Properties      struct {
			DeliveryInfo struct {
				Exchange   string `json:"exchange"`
				RoutingKey string `json:"routing_key"`
			} `json:"delivery_info"`
			BodyEncoding string `json:"body_encoding"`
			DeliveryTag  string `json:"delivery_tag"`
			DeliveryMode int    `json:"delivery_mode"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Value, &env); err != nil {
		t.Fatalf("value is not Kombu's JSON envelope: %v: %s", err, r.Value)
	}
	if env.Body != "aGVsbG8=" || env.Properties.BodyEncoding != "base64" || env.ContentType != "text/plain" ||
		env.Properties.DeliveryInfo.RoutingKey != queue || env.Properties.DeliveryTag == "" || env.Properties.DeliveryMode != 2 {
		t.Fatalf("envelope %s", r.Value)
	}

	// A record as Python's Kombu writes it (json.dumps of the envelope).
	py := `{"body": "ZnJvbSBweXRob24=", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, ` +
		`"properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "` + queue + `"}, ` +
		`"priority": 0, "body_encoding": "base64", "delivery_tag": "2f9e5a52-7b1c-4a8e-9d8e-1c2b3a4d5e6f"}}`
	raw, _ := admin(t, c)
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(py)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	sub, err := conn.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello", "from python"} {
		d := receive(t, ctx, sub)
		if string(d.Body) != want || d.Queue != queue {
			t.Fatalf("got %q from %q, want %q", d.Body, d.Queue, want)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
	if got := committedOffsets(t, ctx, conn, adm, topic); got[0] != 2 {
		t.Fatalf("group %s-consumer-group committed %v, want partition 0 at 2", topic, got)
	}
}

// TestCommitsCoalesced: acks are committed in the background without a
// Close or a count of the queue, at most every commit_interval or once
// commit_every records were settled; a Close commits what is settled and
// not committed yet.
func TestCommitsCoalesced(t *testing.T) {
	c := startCluster(t, 1)
	ctx := ctxT(t, 60*time.Second)
	_, adm := admin(t, c)
	// committed reads the group's offset of partition 0 straight from the
	// brokers: unlike committedOffsets, it makes the connection flush
	// nothing.
	committed := func(queue string) int64 {
		t.Helper()
		resp, err := adm.FetchOffsets(ctx, queue+"-consumer-group")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := resp.Lookup(queue, 0); ok && o.Err == nil {
			return o.At
		}
		return -1
	}
	consumeAck := func(conn transport.Conn, queue string, n, acks int) {
		t.Helper()
		for i := range n {
			publish(t, ctx, conn, queue, fmt.Sprint(i))
		}
		sub, err := conn.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: n})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			d := receive(t, ctx, sub)
			if i < acks {
				if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	t.Run("eventually, without close", func(t *testing.T) {
		conn := open(t, url(c, "commit_interval=0.2"))
		defer conn.Close()
		queue := unique("commit-later")
		consumeAck(conn, queue, 3, 3)
		eventually(t, ctxT(t, 5*time.Second), "acks committed in the background", func() bool { return committed(queue) == 3 })
	})
	t.Run("after commit_every acks", func(t *testing.T) {
		conn := open(t, url(c, "commit_interval=3600&commit_every=2"))
		defer conn.Close()
		queue := unique("commit-every")
		consumeAck(conn, queue, 3, 2)
		eventually(t, ctxT(t, 5*time.Second), "two acks committed", func() bool { return committed(queue) == 2 })
	})
	t.Run("on close", func(t *testing.T) {
		conn := open(t, url(c, "commit_interval=3600&commit_every=1000"))
		queue := unique("commit-close")
		consumeAck(conn, queue, 3, 0)
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		// The records come again, to a connection whose first commit goes
		// at once (none was made for an interval) and whose next waits.
		conn = open(t, url(c, "commit_interval=3600&commit_every=1000"))
		sub, err := conn.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 3})
		if err != nil {
			t.Fatal(err)
		}
		ds := []*transport.Delivery{receive(t, ctx, sub), receive(t, ctx, sub), receive(t, ctx, sub)}
		if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); err != nil {
			t.Fatal(err)
		}
		eventually(t, ctxT(t, 5*time.Second), "the first ack committed", func() bool { return committed(queue) == 1 })
		if err := ds[1].Acknowledger.Ack(ds[1].Tag, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if got := committed(queue); got != 1 {
			_ = conn.Close()
			t.Fatalf("committed %d before commit_interval or commit_every acks: acks are not coalesced", got)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		if got := committed(queue); got != 2 {
			t.Fatalf("after Close: committed %d, want 2 (the settled records)", got)
		}
	})
}

// TestAcksCommitInOrder acks out of order: a partition's offset moves
// only past records that are all settled.
func TestAcksCommitInOrder(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	_, adm := admin(t, c)
	conn := open(t, url(c, ""))
	defer conn.Close()
	queue := unique("inorder")
	for i := range 5 {
		publish(t, ctx, conn, queue, fmt.Sprint(i))
	}
	sub, err := conn.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 5})
	if err != nil {
		t.Fatal(err)
	}
	ds := make([]*transport.Delivery, 5)
	for i := range ds {
		ds[i] = receive(t, ctx, sub)
		if string(ds[i].Body) != fmt.Sprint(i) {
			t.Fatalf("delivery %d is %q", i, ds[i].Body)
		}
	}
	ack := func(i int) {
		t.Helper()
		if err := ds[i].Acknowledger.Ack(ds[i].Tag, false); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		ack  int
		want int64 // committed offset after it
	}{{2, 0}, {3, 0}, {0, 1}, {1, 4}, {4, 5}}
	for _, s := range steps {
		ack(s.ack)
		got := committedOffsets(t, ctx, conn, adm, queue)[0] // 0 when none
		if got != s.want {
			t.Fatalf("after acking offset %d: committed %d, want %d", s.ack, got, s.want)
		}
	}
}

// TestRequeueAndReject: a requeued record comes back marked redelivered
// before the records after it, and holds the partition's commit until it
// is acked; a record rejected without requeue goes to "<queue>.dlq", with
// the reason, and is committed past only then.
func TestRequeueAndReject(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	_, adm := admin(t, c)
	conn := open(t, url(c, ""))
	defer conn.Close()
	queue := unique("requeue")
	for _, b := range []string{"a", "b", "c"} {
		publish(t, ctx, conn, queue, b)
	}
	sub, err := conn.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	a := receive(t, ctx, sub)
	if err := a.Acknowledger.Reject(a.Tag, true); err != nil {
		t.Fatal(err)
	}
	a2 := receive(t, ctx, sub)
	if string(a2.Body) != "a" || !a2.Redelivered {
		t.Fatalf("after requeue got %q redelivered=%v, want \"a\" redelivered", a2.Body, a2.Redelivered)
	}
	if got := committedOffsets(t, ctx, conn, adm, queue); got[0] > 0 {
		t.Fatalf("committed %v while offset 0 is unsettled", got)
	}
	if err := a2.Acknowledger.Ack(a2.Tag, false); err != nil {
		t.Fatal(err)
	}
	b := receive(t, ctx, sub)
	if string(b.Body) != "b" {
		t.Fatalf("got %q, want b", b.Body)
	}
	rr, ok := b.Acknowledger.(transport.ReasonRejecter)
	if !ok {
		t.Fatal("the acknowledger is not a ReasonRejecter")
	}
	if err := rr.RejectWithReason(b.Tag, "handler failed: boom"); err != nil {
		t.Fatal(err)
	}
	dl := readAll(t, ctx, c, queue+kafka.DLQSuffix, 1)[0]
	headers := map[string]string{}
	for _, h := range dl.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers[transport.ErrorHeader] != "handler failed: boom" || headers["kombu_offset"] != "1" || headers["kombu_queue"] != queue {
		t.Fatalf("dead letter headers %v", headers)
	}
	if got := committedOffsets(t, ctx, conn, adm, queue); got[0] != 2 {
		t.Fatalf("committed %v, want 2 once a is acked and b dead-lettered", got)
	}
	cc := receive(t, ctx, sub)
	if string(cc.Body) != "c" {
		t.Fatalf("got %q, want c", cc.Body)
	}
}

// TestCloseMarksUnsettledRedelivered: what a closed connection left
// unsettled is delivered again, by the group's next member, marked
// redelivered (from the commit metadata), and what it acked is not.
func TestCloseMarksUnsettledRedelivered(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	queue := unique("close")
	first := open(t, url(c, ""))
	for _, b := range []string{"a", "b", "c", "d"} {
		publish(t, ctx, first, queue, b)
	}
	sub, err := first.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 4})
	if err != nil {
		t.Fatal(err)
	}
	var ds []*transport.Delivery
	for range 3 {
		ds = append(ds, receive(t, ctx, sub))
	}
	if err := ds[1].Acknowledger.Ack(ds[1].Tag, false); err != nil { // b, out of order
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := open(t, url(c, ""))
	defer second.Close()
	sub2, err := second.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		body        string
		redelivered bool
	}{{"a", true}, {"b", true}, {"c", true}, {"d", false}}
	for _, w := range want {
		d := receive(t, ctx, sub2)
		if string(d.Body) != w.body || d.Redelivered != w.redelivered {
			t.Fatalf("got %q redelivered=%v, want %q redelivered=%v", d.Body, d.Redelivered, w.body, w.redelivered)
		}
	}
}

// TestRebalance: a second connection joining a queue's group takes
// partitions. The first one's unsettled records of revoked partitions are
// not committed by its late acks: they are delivered again (at least
// once), and every record is in the end acked and committed.
func TestRebalance(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxT(t, 120*time.Second)
	_, adm := admin(t, c)
	const n = 60
	raw := url(c, "num_partitions=4&polling_interval=0.05")
	a := open(t, raw)
	defer a.Close()
	queue := unique("rebalance")
	if _, err := a.DeclareQueue(ctx, transport.Queue{Name: queue}); err != nil {
		t.Fatal(err)
	}
	var pubs []*transport.Publishing
	for i := range n {
		pubs = append(pubs, &transport.Publishing{RoutingKey: queue, Body: fmt.Appendf(nil, "%d", i), Confirm: true})
	}
	if err := a.(transport.BatchPublisher).PublishBatch(ctx, pubs); err != nil {
		t.Fatal(err)
	}
	// Keyless records are spread over the partitions one by one, as
	// librdkafka spreads them under Kombu.
	ends, err := adm.ListEndOffsets(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(lo kadm.ListedOffset) {
		if lo.Offset != n/4 {
			t.Errorf("partition %d holds %d records, want %d", lo.Partition, lo.Offset, n/4)
		}
	})

	var mu sync.Mutex
	seen := map[string]int{}
	// a holds its first 10 deliveries unsettled until b has joined.
	subA, err := a.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	var held []*transport.Delivery
	for range 10 {
		d := receive(t, ctx, subA)
		held = append(held, d)
		seen[string(d.Body)]++
	}
	b := open(t, raw)
	defer b.Close()
	subB, err := b.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	gotB := make(chan struct{})
	consume := func(sub transport.Subscription, signal chan struct{}) {
		for d := range sub.Deliveries() {
			mu.Lock()
			seen[string(d.Body)]++
			mu.Unlock()
			if signal != nil {
				select {
				case <-signal:
				default:
					close(signal)
				}
			}
			_ = d.Acknowledger.Ack(d.Tag, false)
		}
	}
	go consume(subB, gotB)
	select {
	case <-gotB:
	case <-ctx.Done():
		t.Fatal("the second member never got a delivery")
	}
	// The held deliveries' partitions were revoked (range assignment is
	// eager): their acks must not commit.
	for _, d := range held {
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
	go consume(subA, nil)
	eventually(t, ctx, "every record acked and committed", func() bool {
		mu.Lock()
		all := len(seen) == n
		mu.Unlock()
		if !all {
			return false
		}
		resp, err := adm.FetchOffsets(ctx, queue+"-consumer-group")
		if err != nil {
			return false
		}
		var sum int64
		for _, o := range resp[queue] {
			sum += o.At
		}
		return sum == n
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if seen[fmt.Sprint(i)] == 0 {
			t.Fatalf("record %d never delivered", i)
		}
	}
	t.Logf("%d records, %d deliveries (a's revoked ones again)", n, func() int {
		s := 0
		for _, v := range seen {
			s += v
		}
		return s
	}())
}

// killable is a kfake listener that keeps the connections it accepted,
// so that a broker can be killed: its listener closed (RemoveNode) and
// its clients' connections cut.
type killable struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *killable) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *killable) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
}

// TestBrokerKilledMidStream publishes with confirms and consumes while
// brokers are killed (the leader of a partition, then the group
// coordinator: each taken out of the cluster and its connections cut):
// every confirmed message arrives.
func TestBrokerKilledMidStream(t *testing.T) {
	var mu sync.Mutex
	listeners := map[string]*killable{}
	c := startCluster(t, 3, kfake.ListenFn(func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		k := &killable{Listener: ln}
		mu.Lock()
		listeners[ln.Addr().String()] = k
		mu.Unlock()
		return k, nil
	}))
	addrs := c.ListenAddrs() // broker i is node i
	kill := func(node int32) {
		t.Helper()
		if err := c.RemoveNode(node); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		listeners[addrs[node]].cut()
		mu.Unlock()
	}
	ctx := ctxT(t, 180*time.Second)
	raw := url(c, "num_partitions=3&replication_factor=3&polling_interval=0.05")
	pub := open(t, raw)
	defer pub.Close()
	cons := open(t, raw)
	defer cons.Close()
	queue := unique("kill")
	if _, err := pub.DeclareQueue(ctx, transport.Queue{Name: queue}); err != nil {
		t.Fatal(err)
	}
	sub, err := cons.Consume(ctx, transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 20})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	go func() {
		for d := range sub.Deliveries() {
			mu.Lock()
			got[string(d.Body)] = true
			mu.Unlock()
			_ = d.Acknowledger.Ack(d.Tag, false)
		}
	}()

	var confirmed []string
	failed := 0
	send := func(i int) {
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		body := fmt.Sprint(i)
		err := pub.Publish(pctx, &transport.Publishing{RoutingKey: queue, Body: []byte(body), Confirm: true})
		if err == nil {
			confirmed = append(confirmed, body)
		} else {
			failed++
			t.Logf("publish %d failed (not confirmed, may be lost): %v", i, err)
		}
	}
	for i := range 100 {
		send(i)
	}
	victim := c.LeaderFor(queue, 0)
	coordinator := c.CoordinatorFor(queue + "-consumer-group")
	kill(victim)
	t.Logf("killed broker %d (leader of partition 0; the group coordinator is %d)", victim, coordinator)
	for i := 100; i < 200; i++ {
		send(i)
		if i == 150 && coordinator != victim {
			kill(coordinator)
			t.Logf("killed broker %d (the group coordinator)", coordinator)
		}
	}
	if len(confirmed) < 150 {
		t.Fatalf("only %d of 200 publishes confirmed", len(confirmed))
	}
	eventually(t, ctx, "every confirmed message delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range confirmed {
			if !got[b] {
				return false
			}
		}
		return true
	})
	t.Logf("%d confirmed, %d failed, all confirmed delivered", len(confirmed), failed)
}

// TestBadInput: an unreachable broker list, a topic name Kafka refuses,
// an oversize record.
func TestBadInput(t *testing.T) {
	t.Run("UnreachableBrokers", func(t *testing.T) {
		u, err := transport.Parse("kafka://127.0.0.1:1?brokers=127.0.0.1:2&connection_wait_time_seconds=0.5")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = kafka.Driver{}.Open(context.Background(), u, transport.Config{})
		if !errors.Is(err, kafka.ErrBrokersUnavailable) {
			t.Fatalf("err = %v, want ErrBrokersUnavailable", err)
		}
		t.Logf("%v after %v", err, time.Since(start).Round(time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := (kafka.Driver{}).Open(ctx, u, transport.Config{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("with a cancelled context: err = %v", err)
		}
	})
	c := startCluster(t, 3)
	ctx := ctxT(t, 60*time.Second)
	conn := open(t, url(c, "max_record_bytes=2048"))
	defer conn.Close()
	t.Run("RefusedTopicName", func(t *testing.T) {
		for _, name := range []string{"has space", "slash/ed", "ü", strings.Repeat("a", 300)} {
			if _, err := conn.DeclareQueue(ctx, transport.Queue{Name: name}); !errors.Is(err, transport.ErrNotSupported) {
				t.Errorf("declare %q: err = %v, want ErrNotSupported", name, err)
			}
			err := conn.Publish(ctx, &transport.Publishing{RoutingKey: name, Body: []byte("x"), Confirm: true})
			if !errors.Is(err, transport.ErrNotSupported) {
				t.Errorf("publish to %q: err = %v, want ErrNotSupported", name, err)
			}
		}
	})
	t.Run("TopicTheBrokerRefuses", func(t *testing.T) {
		// A name Kafka's rules allow that this broker refuses (a policy,
		// a collision of "a.b" with "a_b"): the broker's
		// INVALID_TOPIC_EXCEPTION, answered here by kfake's control hook.
		refused := unique("refused")
		c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			req := kreq.(*kmsg.CreateTopicsRequest)
			if len(req.Topics) != 1 || req.Topics[0].Topic != refused {
				return nil, nil, false
			}
			c.KeepControl()
			resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic = refused
			rt.ErrorCode = kerr.InvalidTopicException.Code
			resp.Topics = append(resp.Topics, rt)
			return resp, nil, true
		})
		_, err := conn.DeclareQueue(ctx, transport.Queue{Name: refused})
		if !errors.Is(err, transport.ErrNotSupported) || !strings.Contains(err.Error(), refused) {
			t.Fatalf("err = %v, want ErrNotSupported naming the topic", err)
		}
		err = conn.Publish(ctx, &transport.Publishing{RoutingKey: refused, Body: []byte("x"), Confirm: true})
		if !errors.Is(err, transport.ErrNotSupported) {
			t.Fatalf("publish: err = %v, want ErrNotSupported", err)
		}
	})
	t.Run("Oversize", func(t *testing.T) {
		_, adm := admin(t, c)
		queue := unique("big")
		if _, err := conn.DeclareQueue(ctx, transport.Queue{Name: queue}); err != nil {
			t.Fatal(err)
		}
		err := conn.Publish(ctx, &transport.Publishing{RoutingKey: queue, Body: make([]byte, 4096), Confirm: true})
		if !errors.Is(err, transport.ErrLimitExceeded) {
			t.Fatalf("err = %v, want ErrLimitExceeded", err)
		}
		ends, err := adm.ListEndOffsets(ctx, queue)
		if err != nil {
			t.Fatal(err)
		}
		if lo, _ := ends.Lookup(queue, 0); lo.Offset != 0 {
			t.Fatalf("end offset %d: the oversize record was sent", lo.Offset)
		}
		// In a batch it fails alone.
		err = conn.(transport.BatchPublisher).PublishBatch(ctx, []*transport.Publishing{
			{RoutingKey: queue, Body: []byte("ok"), Confirm: true},
			{RoutingKey: queue, Body: make([]byte, 4096), Confirm: true},
		})
		var be *transport.BatchError
		if !errors.As(err, &be) || be.Errs[0] != nil || !errors.Is(be.Errs[1], transport.ErrLimitExceeded) {
			t.Fatalf("batch err = %v", err)
		}
	})
}
