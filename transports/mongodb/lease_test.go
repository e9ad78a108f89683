package mongodb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// A handler that outlives visibility_timeout keeps its message: the
// consumer's connection extends the lease every third of it, so a second
// consumer, on another connection and taking all along (which also puts
// back messages whose lease ran out), gets nothing; once acked, the
// message is gone for good, and it was never marked redelivered.
func TestLongHandlerKeepsItsMessage(t *testing.T) {
	s := ferret(t)
	const lease = 2 * time.Second
	url := "mongodb://" + s.addr + "/lease?polling_interval=0.05&visibility_timeout=2"
	open := func() transport.Conn {
		c, err := openURL(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, second := open(), open()
	defer first.Close()
	defer second.Close()
	q := uniq("lease-")
	if _, err := first.DeclareQueue(context.Background(), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	if err := first.Publish(context.Background(), &transport.Publishing{RoutingKey: q, Body: []byte("slow work"), Confirm: true}); err != nil {
		t.Fatal(err)
	}
	sub, err := first.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Cancel(context.Background()) }()
	var d *transport.Delivery
	select {
	case d = <-sub.Deliveries():
	case <-time.After(10 * time.Second):
		t.Fatal("the first consumer got nothing")
	}
	if d.Redelivered {
		t.Error("a first delivery is marked redelivered")
	}
	// The handler runs for three and a half leases.
	end := time.Now().Add(lease*3 + lease/2)
	gets := 0
	for time.Now().Before(end) {
		m, err := second.Get(context.Background(), q, false)
		gets++
		if err == nil {
			t.Fatalf("after %d gets the second consumer got %q (redelivered %v) while the first one's handler runs", gets, m.Body, m.Redelivered)
		}
		if !errors.Is(err, transport.ErrEmpty) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	// Past another lease: an ack that did not land would let it come back.
	end = time.Now().Add(lease + lease/2)
	for time.Now().Before(end) {
		if m, err := second.Get(context.Background(), q, false); err == nil {
			t.Fatalf("the acked message came back: %q (redelivered %v)", m.Body, m.Redelivered)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d gets by the second consumer during the %v handler found nothing", gets, lease*3+lease/2)
}
