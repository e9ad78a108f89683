package gcpubsub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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

	var mu sync.Mutex
	consumed := map[string]int{}
	consumedAt := map[string]time.Time{}
	sub, err := c.Consume(ctx, transport.ConsumeSpec{Queues: []string{"outage"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			mu.Lock()
			consumed[string(d.Body)]++
			if _, ok := consumedAt[string(d.Body)]; !ok {
				consumedAt[string(d.Body)] = time.Now()
			}
			mu.Unlock()
			_ = d.Acknowledger.Ack(d.Tag, false) // a lost ack: the message comes back, counted as a duplicate
		}
	}()

	var sent int
	confirmed := map[string]bool{}
	publishedAt := map[string]time.Time{}
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
			start := time.Now()
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			err := c.Publish(pctx, &transport.Publishing{RoutingKey: "outage", Body: []byte(body), Confirm: true})
			pcancel()
			mu.Lock()
			sent++
			publishedAt[body] = start
			if err == nil {
				confirmed[body] = true
			}
			mu.Unlock()
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

	mu.Lock()
	want := len(confirmed)
	mu.Unlock()
	waitFor(t, 60*time.Second, "every confirmed message consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for body := range confirmed {
			if consumed[body] == 0 {
				return false
			}
		}
		return true
	})
	// Let a duplicate whose ack was lost come back before counting.
	time.Sleep(time.Second)
	if err := sub.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	<-consumerDone

	mu.Lock()
	defer mu.Unlock()
	lost, dup, recovered := 0, 0, 0
	for body := range confirmed {
		if consumed[body] == 0 {
			lost++
		}
	}
	for body, n := range consumed {
		dup += n - 1
		if !confirmed[body] {
			recovered++
		}
	}
	// Time to recover: the service back -> the first message published
	// after it consumed.
	var first string
	for body, at := range publishedAt {
		if at.After(restarted) && confirmed[body] && (first == "" || at.Before(publishedAt[first])) {
			first = body
		}
	}
	if first == "" {
		t.Fatalf("no message published after the restart was confirmed (sent %d, confirmed %d)", sent, want)
	}
	recover := consumedAt[first].Sub(restarted)
	if lost > 0 {
		t.Errorf("%d confirmed messages lost", lost)
	}
	if sent == want {
		t.Errorf("every one of %d publishes was confirmed: the outage did not reach the producer", sent)
	}
	t.Logf("FAULT ROW | pstest's gRPC listener closed (every connection cut) and reopened on the same address, state kept, for %v | gcpubsub | %d | %d | %d | %d | %d | %v | pass",
		restarted.Sub(stopped).Round(100*time.Millisecond), sent, want, lost, dup, recovered, recover.Round(10*time.Millisecond))
}
