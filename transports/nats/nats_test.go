package nats_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawJS is a bare client on the test's server, to look at what the
// transport stored.
func rawJS(t *testing.T, e env) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("nats://" + e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// An unreachable server: Open returns within its context with an error
// that names the address.
func TestUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u, _ := transport.Parse("nats://user:s3cret@127.0.0.1:1")
	start := time.Now()
	_, err := openWith(ctx, u)
	if err == nil {
		t.Fatal("connected to port 1")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Open took %v past a 2 s context", time.Since(start))
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %q: want the address, without the password", err)
	}
	t.Log(err)

	// A context that ends while connecting bounds Open too (10.255.255.1
	// is not routed: the connect would hang until its own timeout).
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	u2, _ := transport.Parse("nats://10.255.255.1:4222")
	start = time.Now()
	if _, err := openWith(ctx2, u2); err == nil {
		t.Fatal("connected to an unrouted address")
	} else {
		t.Log(err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Open took %v past a 300 ms context", time.Since(start))
	}
}

// Names and options the transport or the server cannot take fail with
// typed errors before anything is sent.
func TestBadNames(t *testing.T) {
	e := newEnv(t)
	c := e.open(t, "")
	defer c.Close()
	long := strings.Repeat("q", 250)
	_, err := c.DeclareQueue(tctx(t), transport.Queue{Name: long})
	if !errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("a 250-byte queue name: %v, want ErrNotSupported", err)
	}
	for _, q := range []string{"stream_prefix=a.b", "subject_prefix=a.*", "subject_prefix=a..b", "ack_wait=0", "storage=tape", "nope=1"} {
		if _, err := openURL("nats://" + e.addr + "?" + q); !errors.Is(err, transport.ErrInvalidURL) {
			t.Errorf("%s: %v, want ErrInvalidURL", q, err)
		}
	}
	// Queue names with subject syntax in them are escaped, never sent as
	// wildcards: "a.*" and "a.>" are two queues of their own.
	for _, q := range []string{"a.*", "a.>", "a b", "a_2E_2A"} {
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: q, Body: []byte(q)})
	}
	for _, q := range []string{"a.*", "a.>", "a b", "a_2E_2A"} {
		d, err := c.Get(tctx(t), q, true)
		if err != nil || string(d.Body) != q {
			t.Fatalf("queue %q: %v %v", q, d, err)
		}
	}
}

// A subject the server refuses: another stream already captures the
// subjects of the transport's queues. Declaring a queue fails with the
// server's reason; nothing is published into the foreign stream.
func TestServerRefusesSubject(t *testing.T) {
	e := newEnv(t)
	_, js := rawJS(t, e)
	foreign := e.prefix + "_FOREIGN"
	if _, err := js.CreateStream(tctx(t), jetstream.StreamConfig{Name: foreign, Subjects: []string{strings.ToLower(e.prefix) + ".q.>"}}); err != nil {
		t.Fatal(err)
	}
	c := e.open(t, "")
	defer c.Close()
	_, err := c.DeclareQueue(tctx(t), transport.Queue{Name: "taken"})
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("declare a queue whose subject another stream holds: %v", err)
	}
	t.Log(err)
	err = c.Publish(tctx(t), &transport.Publishing{RoutingKey: "taken", Body: []byte("x"), Confirm: true})
	if err == nil {
		t.Fatal("a publish into another stream's subject was confirmed")
	}
	t.Log(err)
	st, _ := js.Stream(tctx(t), foreign)
	if info, _ := st.Info(tctx(t)); info.State.Msgs != 0 {
		t.Fatalf("the foreign stream got %d messages", info.State.Msgs)
	}
}

// A message over the server's max_payload fails before it is sent with
// ErrLimitExceeded; in a batch it fails alone.
func TestOversize(t *testing.T) {
	e := newEnv(t)
	c := e.open(t, "")
	defer c.Close()
	nc, _ := rawJS(t, e)
	limit := int(nc.MaxPayload())
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "big"})
	err := c.Publish(tctx(t), &transport.Publishing{RoutingKey: "big", Body: make([]byte, limit), Confirm: true})
	if !errors.Is(err, transport.ErrLimitExceeded) || !strings.Contains(err.Error(), fmt.Sprint(limit)) {
		t.Fatalf("a %d-byte body: %v, want ErrLimitExceeded naming max_payload", limit, err)
	}
	t.Log(err)
	ps := []*transport.Publishing{
		{RoutingKey: "big", Body: []byte("1"), Confirm: true},
		{RoutingKey: "big", Body: make([]byte, limit), Confirm: true},
		{RoutingKey: "big", Body: []byte("3"), Confirm: true},
	}
	err = c.(transport.BatchPublisher).PublishBatch(tctx(t), ps)
	var be *transport.BatchError
	if !errors.As(err, &be) || be.Errs[0] != nil || !errors.Is(be.Errs[1], transport.ErrLimitExceeded) || be.Errs[2] != nil {
		t.Fatalf("batch: %v", err)
	}
	info := transporttest.DeclareQueue(t, c, transport.Queue{Name: "big", Passive: true})
	if info.Messages != 2 {
		t.Fatalf("%d messages stored, want 2", info.Messages)
	}
}

// Messages that are not Kombu envelopes reach the decode-error handler,
// and are kept in the dead-letter stream with their queue and reason; the
// consumer goes on to the next message.
func TestNotAnEnvelope(t *testing.T) {
	e := newEnv(t)
	_, js := rawJS(t, e)
	conn, err := kombu.Dial(tctx(t), e.url(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queue := "bad.input"
	if _, err := (kombu.Queue{Name: queue}).Declare(tctx(t), conn); err != nil {
		t.Fatal(err)
	}
	subject := strings.ToLower(e.prefix) + ".q.bad_2Einput"
	for _, raw := range []string{"hello, not an envelope", `{"body": "trunc`} {
		if _, err := js.Publish(tctx(t), subject, []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	if err := kombu.NewProducer(conn).Publish(tctx(t), map[string]any{"ok": true}, kombu.WithRoutingKey(queue)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var decodeErrors []string
	handled := make(chan map[string]any, 1)
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: queue},
		Handler: kombu.Typed(func(ctx context.Context, m *map[string]any, msg *kombu.Message) error {
			handled <- *m
			return nil
		}),
	}}, kombu.WithDecodeErrorHandler(func(msg *kombu.Message, err error) {
		mu.Lock()
		decodeErrors = append(decodeErrors, err.Error())
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	select {
	case m := <-handled:
		if m["ok"] != true {
			t.Fatalf("the good message decoded as %v", m)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the consumer did not get past the bad messages")
	}
	stop()
	<-done
	mu.Lock()
	if len(decodeErrors) != 2 {
		t.Fatalf("the decode-error handler saw %d messages: %q", len(decodeErrors), decodeErrors)
	}
	mu.Unlock()
	dead := deadMessages(t, js, e.prefix+"_DEAD", 2)
	for _, m := range dead {
		if m.Header.Get("Kombu-Queue") != queue || m.Header.Get("Kombu-Reason") == "" {
			t.Errorf("dead-lettered %q with headers %v", m.Data, m.Header)
		}
		t.Logf("dead-lettered %q: %s", m.Data, m.Header.Get("Kombu-Reason"))
	}
}

// deadMessages waits for n messages in the dead-letter stream and returns
// them.
func deadMessages(t *testing.T, js jetstream.JetStream, stream string, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	var st jetstream.Stream
	transporttest.Eventually(t, fmt.Sprintf("%d messages in %s", n, stream), func() bool {
		var err error
		if st, err = js.Stream(context.Background(), stream); err != nil {
			return false
		}
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == uint64(n)
	})
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); len(out) < n && seq < 1000; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

// With max_deliver the server stops delivering a message after that many
// deliveries; the transport moves it, on the server's advisory, to the
// dead-letter stream and out of its queue.
func TestMaxDeliverDeadLetters(t *testing.T) {
	e := newEnv(t)
	_, js := rawJS(t, e)
	c := e.open(t, "&max_deliver=2")
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "poison"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "poison", Body: []byte("poison")})
	for i := 0; i < 2; i++ {
		d, err := c.Get(tctx(t), "poison", false)
		if err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
			t.Fatal(err)
		}
	}
	// A third take asks the server, which announces that it gave up.
	if d, err := c.Get(tctx(t), "poison", false); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("a third delivery: %v, %v", d, err)
	}
	dead := deadMessages(t, js, e.prefix+"_DEAD", 1)
	if !bytes.Contains(dead[0].Data, []byte("cG9pc29u")) || !strings.Contains(dead[0].Header.Get("Kombu-Reason"), "max_deliver") {
		t.Fatalf("dead-lettered %q, %v", dead[0].Data, dead[0].Header)
	}
	st, _ := js.Stream(tctx(t), e.prefix+"_poison")
	transporttest.Eventually(t, "the poison message out of its queue's stream", func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
}

// A message held longer than the ack wait is not handed to another
// consumer: the store tells the server it is in progress.
func TestLongHandlerKeepsItsMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a message for 3.5 s")
	}
	e := newEnv(t)
	c1 := e.open(t, "&ack_wait=1")
	defer c1.Close()
	c2 := e.open(t, "&ack_wait=1")
	defer c2.Close()
	transporttest.DeclareQueue(t, c1, transport.Queue{Name: "long"})
	transporttest.Publish(t, c1, &transport.Publishing{RoutingKey: "long", Body: []byte("slow")})
	d, err := c1.Get(tctx(t), "long", false)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	if d2, err := c2.Get(tctx(t), "long", false); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("a second consumer got the held message: %v, %v", d2, err)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
}

// A binding made on one connection routes the publishes of another (the
// bucket's watcher brings it over), and a queue deleted on one leaves the
// other's table.
func TestBindingsSharedAcrossConnections(t *testing.T) {
	e := newEnv(t)
	a := e.open(t, "")
	defer a.Close()
	b := e.open(t, "")
	defer b.Close()
	for _, c := range []transport.Conn{a, b} {
		if err := c.DeclareExchange(tctx(t), transport.Exchange{Name: "orders", Type: transport.ExchangeTopic}); err != nil {
			t.Fatal(err)
		}
	}
	transporttest.DeclareQueue(t, a, transport.Queue{Name: "placed"})
	if err := a.Bind(tctx(t), transport.Binding{Source: "orders", Destination: "placed", RoutingKey: "order.*"}); err != nil {
		t.Fatal(err)
	}
	sent := 0
	transporttest.Eventually(t, "b routes through a's binding", func() bool {
		err := b.Publish(tctx(t), &transport.Publishing{Exchange: "orders", RoutingKey: "order.placed", Mandatory: true, Confirm: true, Body: []byte("x")})
		if err == nil {
			sent++
		}
		return err == nil
	})
	if info := transporttest.DeclareQueue(t, b, transport.Queue{Name: "placed", Passive: true}); info.Messages != sent {
		t.Fatalf("%d messages in the queue, %d sent", info.Messages, sent)
	}
	if _, err := a.DeleteQueue(tctx(t), "placed", false, false); err != nil {
		t.Fatal(err)
	}
	transporttest.Eventually(t, "b sees the binding gone with its queue", func() bool {
		err := b.Publish(tctx(t), &transport.Publishing{Exchange: "orders", RoutingKey: "order.placed", Mandatory: true, Confirm: true, Body: []byte("x")})
		return errors.Is(err, transport.ErrUnroutable)
	})
}

// A publish to a queue this connection made or found goes without the
// expected-stream header (the stream keeps a message's headers, and every
// consumer decodes them); one to a queue it does not know yet carries it,
// so that a foreign stream holding the subject refuses it
// (TestServerRefusesSubject).
func TestKnownQueuePublishesWithoutHeader(t *testing.T) {
	e := newEnv(t)
	_, js := rawJS(t, e)
	c := e.open(t, "")
	defer c.Close()
	for _, body := range []string{"first", "second"} {
		if err := c.Publish(tctx(t), &transport.Publishing{RoutingKey: "hdr", Body: []byte(body), Confirm: true}); err != nil {
			t.Fatal(err)
		}
	}
	name, err := js.StreamNameBySubject(tctx(t), strings.ToLower(e.prefix)+".q.hdr")
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(tctx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]bool{1: true, 2: false} {
		m, err := st.GetMsg(tctx(t), seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(jetstream.ExpectedStreamHeader) != ""; got != want {
			t.Errorf("message %d (%s) has the expected-stream header: %v, want %v", seq, m.Data, got, want)
		}
	}
}

// A pipelined batch keeps Publish's confirms: a queue whose stream
// another stream replaced since this connection found it fails each
// message with ErrPrecondition (the ack names the other stream), and a
// queue with no stream yet gets one and every message, in order.
func TestBatchConfirms(t *testing.T) {
	e := newEnv(t)
	_, js := rawJS(t, e)
	c := e.open(t, "")
	defer c.Close()
	bp := c.(transport.BatchPublisher)
	batch := func(queue string, bodies ...string) []*transport.Publishing {
		ps := make([]*transport.Publishing, len(bodies))
		for i, b := range bodies {
			ps[i] = &transport.Publishing{RoutingKey: queue, Body: []byte(b), Confirm: true}
		}
		return ps
	}

	// A queue made by the batch's messages.
	if err := bp.PublishBatch(tctx(t), batch("fresh", "1", "2", "3")); err != nil {
		t.Fatalf("a batch to a queue with no stream yet: %v", err)
	}
	for _, want := range []string{"1", "2", "3"} {
		d, err := c.Get(tctx(t), "fresh", true)
		if err != nil || string(d.Body) != want {
			t.Fatalf("got %q, %v; want %q", d.Body, err, want)
		}
	}

	// The queue's stream deleted behind the connection's back, and its
	// subject taken by another stream.
	subject := strings.ToLower(e.prefix) + ".q.moved"
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "moved"})
	name, err := js.StreamNameBySubject(tctx(t), subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(tctx(t), name); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(tctx(t), jetstream.StreamConfig{Name: e.prefix + "_THIEF", Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
	err = bp.PublishBatch(tctx(t), batch("moved", "a", "b"))
	var be *transport.BatchError
	if !errors.As(err, &be) || len(be.Errs) != 2 {
		t.Fatalf("a batch into another stream: %v, want a BatchError of 2", err)
	}
	for i, err := range be.Errs {
		if !errors.Is(err, transport.ErrPrecondition) {
			t.Errorf("message %d: %v, want ErrPrecondition", i, err)
		}
	}
	t.Log(err)
}
