package sqs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
)

// The emulator stops and starts again while a producer publishes with
// confirms and a consumer (Consume, acking each message) runs: every
// confirmed publish is consumed, and the test counts duplicates (an ack
// whose delete failed while down: SQS delivers the message again once its
// visibility runs out) and messages consumed whose publish was not
// confirmed. goaws keeps its queues in the process, so "stopped" means
// its listener and every open connection closed, as a broker's restart
// or a network outage looks to the client; it does not lose state.
func TestEmulatorRestart(t *testing.T) {
	g := startGoaws(t)
	pub, con := g.open(t, ""), g.open(t, "")
	defer pub.Close()
	defer con.Close()
	q := uniq("restart-")
	if _, err := pub.DeclareQueue(ctx(t), transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	sub, err := con.Consume(ctx(t), transport.ConsumeSpec{Queues: []string{q}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}

	l := brokertest.NewLedger() // by body
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			l.Consumed(string(d.Body))
			_ = d.Acknowledger.Ack(d.Tag, false)
		}
	}()

	stopProducer := make(chan struct{})
	producerDone := make(chan struct{})
	failed := 0
	go func() {
		defer close(producerDone)
		for i := 0; ; i++ {
			select {
			case <-stopProducer:
				return
			default:
			}
			body := fmt.Sprintf("m-%05d", i)
			l.Sent(body)
			cx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			err := pub.Publish(cx, &transport.Publishing{RoutingKey: q, Body: []byte(body), Confirm: true})
			cancel()
			if err == nil {
				l.Confirmed(body)
			} else {
				failed++ // read after producerDone closes
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	const down = 2 * time.Second
	time.Sleep(time.Second)
	g.Stop()
	time.Sleep(down)
	g.Start(t)
	upAt := time.Now()
	time.Sleep(2 * time.Second)
	close(stopProducer)
	<-producerDone

	// Every confirmed message consumed; then a visibility timeout and a
	// little more, for the redeliveries of acks whose deletes failed.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	l.WaitConsumed(wctx)
	wcancel()
	time.Sleep((testVisibility + 2) * time.Second)
	_ = sub.Cancel(ctx(t))

	tl := l.Tally()
	for _, b := range tl.LostIDs {
		t.Errorf("confirmed %s never consumed", b)
	}
	// Time to recover: the fault removed, to the first message whose
	// publish began after it consumed.
	first, ok := l.FirstConsumedSentAfter(upAt)
	if !ok {
		t.Fatal("no message published after the restart was consumed")
	}
	_, firstSent, _, _ := l.FirstConfirmedSentAfter(upAt)
	// The consumer side dominates the recovery: its receives back off up
	// to 2 s while the emulator is down (package virtual).
	t.Logf("the first confirmed publish after the restart began %v after it", firstSent.Sub(upAt).Round(time.Millisecond))
	if failed == 0 {
		t.Error("no publish failed while the emulator was down: the fault did not happen")
	}
	if sub.Err() != nil && tl.Consumed == 0 {
		t.Errorf("subscription: %v", sub.Err())
	}
	tl.LogRow(t, fmt.Sprintf("goaws (in process) listener and connections closed, queues kept, for %v, producer and Consume running", down),
		"sqs", first.Sub(upAt).Round(time.Millisecond).String(), !t.Failed())
}
