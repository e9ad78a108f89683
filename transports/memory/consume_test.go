package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

func TestRoundRobinRespectsPrefetch(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	a := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	b := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 1})
	send(t, c, "q", "1", "2", "3", "4")
	da, db := recv(t, a), recv(t, b)
	if string(da.Body) != "1" || string(db.Body) != "2" {
		t.Fatalf("a got %q, b got %q", da.Body, db.Body)
	}
	if err := db.Acknowledger.Ack(db.Tag, false); err != nil {
		t.Fatal(err)
	}
	if d := recv(t, b); string(d.Body) != "3" {
		t.Fatalf("b got %q, want 3 while a is at its limit", d.Body)
	}
	if got := ready(t, c, "q"); got != 1 {
		t.Fatalf("ready = %d, want 1", got)
	}
}

func TestPublishCopiesBody(t *testing.T) {
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	body := []byte("original")
	headers := map[string]any{"k": "v"}
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: body, Headers: headers})
	copy(body, "CHANGED!")
	headers["k"] = "changed"
	d := get(t, c, "q", true)
	if string(d.Body) != "original" || d.Headers["k"] != "v" {
		t.Fatalf("got %q %v", d.Body, d.Headers)
	}
}

// Deliveries keep small bodies in room allocated with them, in tiers (see
// newEnvelope): every size around a tier's edge arrives whole, whether the
// delivery was made as the message was published to a queue with a
// consumer or when it was taken from a queue without one, and a consumer
// changing its copy changes nothing for a redelivery.
func TestBodySizesAroundDeliveryRoom(t *testing.T) {
	c := dial(t)
	// A connection makes a message's delivery as it publishes it when its
	// last message found a consumer: pub publishes only to the queue that
	// has one.
	pub := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "consumed"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "idle"})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"consumed"}, Prefetch: 1})
	for _, n := range []int{0, 1, 63, 64, 65, 103, 104, 105, 127, 128, 129, 255, 256, 257, 511, 512, 513, 4096} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(n + i)
		}
		transporttest.Publish(t, pub, &transport.Publishing{RoutingKey: "consumed", Body: slices.Clone(body)})
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "idle", Body: slices.Clone(body)})
		d := recv(t, s)
		if !bytes.Equal(d.Body, body) {
			t.Fatalf("%d bytes, published to a queue with a consumer: got %d bytes, not the body", n, len(d.Body))
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
		d = get(t, c, "idle", false)
		if !bytes.Equal(d.Body, body) {
			t.Fatalf("%d bytes, taken from a queue: got %d bytes, not the body", n, len(d.Body))
		}
		for i := range d.Body {
			d.Body[i]++
		}
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
			t.Fatal(err)
		}
		if d := get(t, c, "idle", true); !bytes.Equal(d.Body, body) || !d.Redelivered {
			t.Fatalf("%d bytes, redelivered after the first delivery's body changed: got %d bytes (redelivered %v), not the body", n, len(d.Body), d.Redelivered)
		}
	}
}

func TestCancelReturnsUndeliveredMessages(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}})
	send(t, c, "q", "1", "2", "3", "4", "5")
	_, ds := recvBodies(t, s, 2)
	// The subscription goes on to hold "3", being handed over to a reader
	// that is not reading, and "4" in its buffer; Cancel must put both back,
	// unmarked.
	transporttest.Eventually(t, "the subscription to take 3 and 4", func() bool { return ready(t, c, "q") == 1 })
	if err := s.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	closed(t, s)
	if s.Err() != nil {
		t.Errorf("Err after Cancel = %v", s.Err())
	}
	var got []string
	for range 3 {
		d := get(t, c, "q", true)
		if d.Redelivered {
			t.Errorf("%q marked redelivered", d.Body)
		}
		got = append(got, string(d.Body))
	}
	if !slices.Equal(got, []string{"3", "4", "5"}) {
		t.Fatalf("queue holds %q", got)
	}
	// Delivered messages stay unsettled and can still be settled.
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); err != nil {
		t.Fatal(err)
	}
	if err := ds[1].Acknowledger.Reject(ds[1].Tag, true); err != nil {
		t.Fatal(err)
	}
	if d := get(t, c, "q", true); string(d.Body) != "2" || !d.Redelivered {
		t.Fatalf("rejected after cancel: %q redelivered %v", d.Body, d.Redelivered)
	}
	if err := s.Cancel(ctx); err != nil {
		t.Errorf("second Cancel: %v", err)
	}
}

func TestCloseRequeuesUnsettledInOrder(t *testing.T) {
	a, b := dial(t), dial(t)
	transporttest.DeclareQueue(t, a, transport.Queue{Name: "q"})
	send(t, a, "q", "1", "2", "3", "4", "5")
	sa := consume(t, a, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 3})
	_, ds := recvBodies(t, sa, 3)
	got := get(t, a, "q", false) // "4", unsettled through Get
	if string(got.Body) != "4" {
		t.Fatalf("get: %q", got.Body)
	}
	if err := ds[1].Acknowledger.Ack(ds[1].Tag, false); err != nil { // "2" is done
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	closed(t, sa)
	if err := ds[0].Acknowledger.Ack(ds[0].Tag, false); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("ack after close: %v, want ErrClosed", err)
	}
	sb := consume(t, b, transport.ConsumeSpec{Queues: []string{"q"}})
	bodies, rds := recvBodies(t, sb, 4)
	if !slices.Equal(bodies, []string{"1", "3", "4", "5"}) {
		t.Fatalf("redelivered %q, want the unsettled ones back at their places", bodies)
	}
	for i, d := range rds {
		if want := i < 3; d.Redelivered != want {
			t.Errorf("%q: redelivered %v, want %v", d.Body, d.Redelivered, want)
		}
	}
}

func TestQueueDeletedWhileConsuming(t *testing.T) {
	c, admin := dial(t), dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "other"})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q", "other"}})
	send(t, c, "other", "kept")
	d := recv(t, s)
	if _, err := admin.DeleteQueue(context.Background(), "q", false, false); err != nil {
		t.Fatal(err)
	}
	closed(t, s)
	wantErr(t, s.Err(), transport.ErrNotFound, `queue "q" was deleted`)
	// The subscription's consumer on the other queue is gone too, and its
	// delivery can still be settled.
	if info, _ := c.DeclareQueue(context.Background(), transport.Queue{Name: "other", Passive: true}); info.Consumers != 0 {
		t.Errorf("other has %d consumers", info.Consumers)
	}
	if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, c, "other"); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("other holds %q", got)
	}
}

func TestConsumeErrors(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	_, err := c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"q", "missing"}})
	wantErr(t, err, transport.ErrNotFound, `queue "missing"`)
	if info, _ := c.DeclareQueue(ctx, transport.Queue{Name: "q", Passive: true}); info.Consumers != 0 {
		t.Fatalf("failed consume left %d consumers", info.Consumers)
	}
	_, err = c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"q"}, Arguments: map[string]any{"x-priority": 10}})
	wantErr(t, err, transport.ErrNotSupported, "x-priority")

	ex := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Exclusive: true})
	_, err = c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"q"}})
	wantErr(t, err, transport.ErrResourceLocked, `queue "q" has an exclusive consumer`)
	ex.Cancel(ctx)
	consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}})
	_, err = c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"q"}, Exclusive: true})
	wantErr(t, err, transport.ErrResourceLocked, "cannot be consumed exclusively")
}

// TestConcurrentExactlyOnce runs publishers, consumers and a connection that
// closes with messages unsettled, and checks every message is acked exactly
// once.
func TestConcurrentExactlyOnce(t *testing.T) {
	const publishers, perPublisher, consumers = 4, 500, 3
	setup := dial(t)
	transporttest.DeclareQueue(t, setup, transport.Queue{Name: "q"})
	ctx := context.Background()

	var mu sync.Mutex
	acked := map[string]int{}
	total := publishers * perPublisher
	allAcked := make(chan struct{})
	var once sync.Once
	record := func(d *transport.Delivery) {
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			if !errors.Is(err, transport.ErrClosed) {
				t.Errorf("ack: %v", err)
			}
			return
		}
		mu.Lock()
		defer mu.Unlock()
		acked[string(d.Body)]++
		if len(acked) == total {
			once.Do(func() { close(allAcked) })
		}
	}

	var wg sync.WaitGroup
	var conns []transport.Conn
	for i := range consumers {
		c := dial(t)
		conns = append(conns, c)
		s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 5 * i})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range s.Deliveries() {
				record(d)
			}
		}()
	}
	// A consumer that takes messages, settles none and disconnects: after ten
	// messages, or once publishing is over if it got fewer.
	published := make(chan struct{})
	quitter := dial(t)
	qs := consume(t, quitter, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 20})
	go func() {
		defer quitter.Close()
		for range 10 {
			select {
			case <-qs.Deliveries():
			case <-published:
				return
			}
		}
	}()
	// And one polling with Get.
	getter := dial(t)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-allAcked:
				return
			default:
			}
			d, err := getter.Get(ctx, "q", false)
			switch {
			case err == nil:
				record(d)
			case errors.Is(err, transport.ErrEmpty):
				time.Sleep(100 * time.Microsecond)
			default:
				t.Errorf("get: %v", err)
				return
			}
		}
	}()

	var pubs sync.WaitGroup
	for p := range publishers {
		c := dial(t)
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := range perPublisher {
				body := []byte(fmt.Sprintf("%d-%d", p, i))
				if err := c.Publish(ctx, &transport.Publishing{RoutingKey: "q", Body: body}); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	pubs.Wait()
	close(published)
	select {
	case <-allAcked:
	case <-time.After(10 * time.Second):
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		t.Fatalf("only %d of %d messages acked", n, total)
	}
	mu.Lock()
	for body, n := range acked {
		if n != 1 {
			t.Errorf("%s acked %d times", body, n)
		}
	}
	mu.Unlock()
	for _, c := range conns {
		c.Close() // ends the subscriptions, so the consumer goroutines finish
	}
	wg.Wait()
}

func TestThroughput(t *testing.T) {
	const n = 20_000
	c := dial(t)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "q"})
	s := consume(t, c, transport.ConsumeSpec{Queues: []string{"q"}, Prefetch: 100})
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		for i := range n {
			d := <-s.Deliveries()
			if want := strconv.Itoa(i); string(d.Body) != want {
				done <- fmt.Errorf("message %d is %q", i, d.Body)
				return
			}
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range n {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "q", Body: []byte(strconv.Itoa(i))})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages published and consumed in %v", n, time.Since(start))
}
