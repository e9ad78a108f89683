package gcpubsub_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestOutage stops the service under a connection for a few seconds, with
// a producer publishing (confirmed) and a consumer consuming on it
// throughout, and checks that nothing confirmed is lost. pstest keeps
// nothing across a new server, so the outage is its gRPC listener closed
// (every connection cut) and opened again on the same address, in front of
// the same pstest state: topics, subscriptions and messages stay, as a
// real service's do. While it is down, calls fail within their context;
// after, the same connection works again (gRPC reconnects).
func TestOutage(t *testing.T) {
	const down = 3 * time.Second
	f := startFront(t)
	// A 10 s ack deadline (Pub/Sub's least): a message whose ack was lost
	// in the outage comes back soon, as a duplicate.
	c := open(t, f.Addr, "&polling_interval=0.05&ack_deadline_seconds=10")
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "outage"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	l := brokertest.NewLedger() // by body
	sub, err := c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"outage"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			l.Consumed(string(d.Body))
			_ = d.Acknowledger.Ack(d.Tag, false) // a lost ack: the message comes back, counted as a duplicate
		}
	}()

	stopProducing := make(chan struct{})
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		for i := 0; ; i++ {
			select {
			case <-stopProducing:
				return
			default:
			}
			body := fmt.Sprintf("m%d", i)
			l.Sent(body)
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			err := c.Publish(pctx, &transport.Publishing{RoutingKey: "outage", Body: []byte(body), Confirm: true})
			pcancel()
			if err == nil {
				l.Confirmed(body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	time.Sleep(time.Second)
	f.stop()
	stopped := time.Now()
	// While it is down, a call fails within its context.
	gctx, gcancel := context.WithTimeout(ctx, time.Second)
	_, err = c.Get(gctx, "outage", false)
	gcancel()
	if err == nil || errors.Is(err, transport.ErrClosed) || time.Since(stopped) > 4*time.Second {
		t.Errorf("get with the service down: %v after %v", err, time.Since(stopped))
	}
	time.Sleep(down - time.Since(stopped))
	f.start()
	restarted := time.Now()
	time.Sleep(3 * time.Second)
	close(stopProducing)
	<-producerDone

	const wait = 60 * time.Second
	wctx, wcancel := context.WithTimeout(ctx, wait)
	defer wcancel()
	if l.WaitConsumed(wctx) != 0 {
		t.Fatalf("timed out after %v waiting for every confirmed message consumed", wait)
	}
	// Let a duplicate whose ack was lost come back before counting.
	time.Sleep(time.Second)
	if err := sub.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	<-consumerDone

	tl := l.Tally()
	// Time to recover: the service back -> the first message published
	// after it consumed.
	_, _, firstConsumed, ok := l.FirstConfirmedSentAfter(restarted)
	if !ok {
		t.Fatalf("no message published after the restart was confirmed (sent %d, confirmed %d)", tl.Sent, tl.Confirmed)
	}
	recover := firstConsumed.Sub(restarted)
	if tl.Lost > 0 {
		t.Errorf("%d confirmed messages lost", tl.Lost)
	}
	if tl.Sent == tl.Confirmed {
		t.Errorf("every one of %d publishes was confirmed: the outage did not reach the producer", tl.Sent)
	}
	tl.LogRow(t, fmt.Sprintf("pstest's gRPC listener closed (every connection cut) and reopened on the same address, state kept, for %v", restarted.Sub(stopped).Round(100*time.Millisecond)),
		"gcpubsub", recover.Round(10*time.Millisecond).String(), true)
}
