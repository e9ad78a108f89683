package azurequeues_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
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

	l := brokertest.NewLedger() // by body, the message number
	var ackFailures atomic.Int64
	sub, err := c.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{"outage"}, Prefetch: 8})
	if err != nil {
		t.Fatal(err)
	}
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for d := range sub.Deliveries() {
			if _, err := strconv.Atoi(string(d.Body)); err != nil {
				t.Errorf("a foreign body %q", d.Body)
				continue
			}
			l.Consumed(string(d.Body))
			// A handler slower than the producer: a backlog is queued
			// when Azurite stops, and a handler runs across the stop.
			time.Sleep(100 * time.Millisecond)
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				ackFailures.Add(1)
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
			body := strconv.Itoa(id)
			l.Sent(body)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := c.Publish(ctx, &transport.Publishing{RoutingKey: "outage", Body: []byte(body), Confirm: true})
			cancel()
			if err == nil {
				l.Confirmed(body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	time.Sleep(2 * time.Second)
	// Stopped as a service is (SIGTERM): Azurite's disk store saves on
	// shutdown (a SIGKILL loses the last seconds' writes: the emulator's
	// limit, not the transport's).
	backlog := l.Missing()
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
	const wait = 60 * time.Second
	wctx, wcancel := context.WithTimeout(context.Background(), wait)
	defer wcancel()
	if l.WaitConsumed(wctx) != 0 {
		t.Fatalf("timed out after %v waiting for every confirmed message to be consumed", wait)
	}
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

	tl := l.Tally()
	for _, id := range tl.LostIDs {
		t.Errorf("confirmed message %s lost", id)
	}
	// Time to recover: from the restart to the consumption of the first
	// message whose publish began after it and was confirmed.
	_, _, firstConsumed, ok := l.FirstConfirmedSentAfter(restartedAt)
	if !ok {
		t.Fatal("no message published after the restart was confirmed")
	}
	recover := firstConsumed.Sub(restartedAt)
	if tl.Lost != 0 {
		t.Fatalf("%d confirmed messages lost", tl.Lost)
	}
	t.Logf("sent %d, confirmed %d, consumed %d distinct, ack failures %d; at the stop %d confirmed were not yet consumed; Azurite exited %v after SIGTERM, listened again %v after it",
		tl.Sent, tl.Confirmed, tl.Consumed, ackFailures.Load(), backlog, exited.Round(100*time.Millisecond), down.Round(100*time.Millisecond))
	tl.LogRow(t, fmt.Sprintf("Azurite (queue service, --location on disk) stopped with SIGTERM under a running confirmed producer and Consume, restarted on the same port and folder; down %.1f s (SIGTERM to listening again)", down.Seconds()),
		"azurequeues", fmt.Sprintf("%.2f s", recover.Seconds()), true)
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
