package sqs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

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

	var mu sync.Mutex
	sentAt := map[string]time.Time{} // body: when its publish began
	confirmed := map[string]bool{}
	got := map[string]int{}
	gotAt := map[string]time.Time{}
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			mu.Lock()
			b := string(d.Body)
			got[b]++
			if got[b] == 1 {
				gotAt[b] = time.Now()
			}
			mu.Unlock()
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
			mu.Lock()
			sentAt[body] = time.Now()
			mu.Unlock()
			cx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			err := pub.Publish(cx, &transport.Publishing{RoutingKey: q, Body: []byte(body), Confirm: true})
			cancel()
			mu.Lock()
			if err == nil {
				confirmed[body] = true
			} else {
				failed++
			}
			mu.Unlock()
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for b := range confirmed {
			if got[b] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep((testVisibility + 2) * time.Second)
	_ = sub.Cancel(ctx(t))

	mu.Lock()
	defer mu.Unlock()
	lost, dup, recovered := 0, 0, 0
	for b := range confirmed {
		if got[b] == 0 {
			lost++
			t.Errorf("confirmed %s never consumed", b)
		}
	}
	for b, n := range got {
		dup += n - 1
		if !confirmed[b] {
			recovered++
		}
	}
	// Time to recover: the fault removed, to the first message whose
	// publish began after it consumed.
	var first time.Time
	for b, at := range sentAt {
		if at.After(upAt) && got[b] > 0 && (first.IsZero() || gotAt[b].Before(first)) {
			first = gotAt[b]
		}
	}
	if first.IsZero() {
		t.Fatal("no message published after the restart was consumed")
	}
	var firstSent time.Time
	for b, at := range sentAt {
		if at.After(upAt) && confirmed[b] && (firstSent.IsZero() || at.Before(firstSent)) {
			firstSent = at
		}
	}
	// The consumer side dominates the recovery: its receives back off up
	// to 2 s while the emulator is down (package virtual).
	t.Logf("the first confirmed publish after the restart began %v after it", firstSent.Sub(upAt).Round(time.Millisecond))
	if failed == 0 {
		t.Error("no publish failed while the emulator was down: the fault did not happen")
	}
	if sub.Err() != nil && len(got) == 0 {
		t.Errorf("subscription: %v", sub.Err())
	}
	verdict := "pass"
	if t.Failed() {
		verdict = "fail"
	}
	t.Logf("FAULT ROW | goaws (in process) listener and connections closed, queues kept, for %v, producer and Consume running | sqs | %d | %d | %d | %d | %d | %v | %s",
		down, len(sentAt), len(confirmed), lost, dup, recovered, first.Sub(upAt).Round(time.Millisecond), verdict)
}
