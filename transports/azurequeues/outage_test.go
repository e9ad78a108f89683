package azurequeues_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/azurequeues/azuritetest"
)

// TestOutage stops Azurite (storing on disk with --location, not
// --inMemoryPersistence) while a producer publishes with confirmation and
// a consumer (the transport's Consume, acking each message) runs, then
// starts it again on the same port over the same folder. Neither is
// restarted: both recover on the connection they had. Every confirmed
// message is consumed (lost = 0); duplicates (messages whose ack failed
// during the outage come back after their visibility timeout) are counted,
// as are messages consumed whose publish was not confirmed. A message
// taken with Get before the outage is acknowledged after it.
func TestOutage(t *testing.T) {
	bin, err := findAzurite()
	if err != nil {
		startAzurite(t) // skips, or fails under KOMBU_REQUIRE_BROKERS
		return
	}
	port, err := azuritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &azurite{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	run := func() {
		t.Helper()
		if a.cmd, err = azuritetest.Launch(bin, port, dir, "--location", dir); err != nil {
			t.Fatal(err)
		}
	}
	run()
	t.Cleanup(a.stop)

	// A short visibility timeout: a message whose ack failed in the
	// outage comes back within seconds.
	const visibility = 3 * time.Second
	c := open(t, a.url("?polling_interval=0.05&visibility_timeout=3"))
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "outage"})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "outage-held"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "outage-held", Body: []byte("held")})
	held, err := c.Get(context.Background(), "outage-held", false)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu          sync.Mutex
		consumed    = map[int]int{}       // id: deliveries
		consumedAt  = map[int]time.Time{} // id: first delivery
		confirmed   = map[int]bool{}
		publishedAt = map[int]time.Time{} // id: when its publish began
		sent        int
		ackFailures int
	)
	sub, err := c.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{"outage"}, Prefetch: 8})
	if err != nil {
		t.Fatal(err)
	}
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			id, err := strconv.Atoi(string(d.Body))
			if err != nil {
				t.Errorf("a foreign body %q", d.Body)
				continue
			}
			mu.Lock()
			consumed[id]++
			if consumed[id] == 1 {
				consumedAt[id] = time.Now()
			}
			mu.Unlock()
			// A handler slower than the producer: a backlog is queued
			// when Azurite stops, and a handler runs across the stop.
			time.Sleep(100 * time.Millisecond)
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				mu.Lock()
				ackFailures++
				mu.Unlock()
			}
		}
	}()

	stopProducing := make(chan struct{})
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		for id := 0; ; id++ {
			select {
			case <-stopProducing:
				return
			default:
			}
			mu.Lock()
			sent++
			publishedAt[id] = time.Now()
			mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.Publish(ctx, &transport.Publishing{RoutingKey: "outage", Body: []byte(strconv.Itoa(id)), Confirm: true})
			cancel()
			if err == nil {
				mu.Lock()
				confirmed[id] = true
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	time.Sleep(2 * time.Second)
	// Stopped as a service is (SIGTERM): Azurite's disk store saves on
	// shutdown (a SIGKILL loses the last seconds' writes: the emulator's
	// limit, not the transport's).
	mu.Lock()
	backlog := 0
	for id := range confirmed {
		if consumed[id] == 0 {
			backlog++
		}
	}
	mu.Unlock()
	stoppedAt := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_ = a.cmd.Wait()
	a.cmd = nil
	exited := time.Since(stoppedAt)
	time.Sleep(3 * time.Second)
	run()
	restartedAt := time.Now()
	down := restartedAt.Sub(stoppedAt)
	time.Sleep(3 * time.Second)
	close(stopProducing)
	<-producerDone

	if err := held.Acknowledger.Ack(held.Tag, false); err != nil {
		t.Errorf("ack across the outage: %v", err)
	}

	// Every confirmed message consumed; then long enough for those whose
	// ack failed to come back as duplicates.
	waitFor(t, 60*time.Second, "every confirmed message to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id := range confirmed {
			if consumed[id] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(visibility + 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sub.Cancel(ctx); err != nil {
		t.Errorf("cancel: %v", err)
	}
	<-consumerDone
	if err := sub.Err(); err != nil {
		t.Errorf("the subscription ended with %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	lost, dups, recovered := 0, 0, 0
	for id := range sent {
		switch {
		case confirmed[id] && consumed[id] == 0:
			lost++
			t.Errorf("confirmed message %d lost", id)
		case !confirmed[id] && consumed[id] > 0:
			recovered++
		}
		if consumed[id] > 1 {
			dups += consumed[id] - 1
		}
	}
	// Time to recover: from the restart to the consumption of the first
	// message whose publish began after it and was confirmed.
	first := -1
	for id := range sent {
		if confirmed[id] && !publishedAt[id].Before(restartedAt) {
			first = id
			break
		}
	}
	if first < 0 {
		t.Fatal("no message published after the restart was confirmed")
	}
	recover := consumedAt[first].Sub(restartedAt)
	if lost != 0 {
		t.Fatalf("%d confirmed messages lost", lost)
	}
	t.Logf("sent %d, confirmed %d, consumed %d distinct, ack failures %d; at the stop %d confirmed were not yet consumed; Azurite exited %v after SIGTERM, listened again %v after it",
		sent, len(confirmed), len(consumed), ackFailures, backlog, exited.Round(100*time.Millisecond), down.Round(100*time.Millisecond))
	t.Logf("FAULT ROW | Azurite (queue service, --location on disk) stopped with SIGTERM under a running confirmed producer and Consume, restarted on the same port and folder; down %.1f s (SIGTERM to listening again) | azurequeues | %d | %d | %d | %d | %d | %.2f s | pass",
		down.Seconds(), sent, len(confirmed), lost, dups, recovered, recover.Seconds())
}

// waitFor polls until cond holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
