package azurequeues_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestOutage stops Azurite (persisting to disk) mid-stream and starts it
// again on the same address: the connection opened before works after,
// publishes that failed during the outage succeed when retried, a message
// taken before the outage is acknowledged after it, and nothing confirmed
// is lost.
func TestOutage(t *testing.T) {
	bin, err := findAzurite()
	if err != nil {
		startAzurite(t) // skips, or fails under KOMBU_REQUIRE_BROKERS
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir := t.TempDir()
	a := &azurite{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	run := func() {
		cmd := exec.Command(bin, "--disableTelemetry", "--silent", "--location", dir,
			"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(port))
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		a.cmd = cmd
		waitFor(t, 30*time.Second, "Azurite to listen", func() bool {
			c, err := net.DialTimeout("tcp", a.addr, 200*time.Millisecond)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		})
	}
	run()
	t.Cleanup(a.stop)

	c := open(t, a.url("?polling_interval=0.05"))
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "outage"})
	publish := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.Publish(ctx, &transport.Publishing{RoutingKey: "outage", Body: fmt.Appendf(nil, "%d", i), Confirm: true})
	}
	const n = 40
	confirmed := map[string]bool{}
	for i := range n / 2 {
		if err := publish(i); err != nil {
			t.Fatal(err)
		}
		confirmed[fmt.Sprint(i)] = true
	}
	held, err := c.Get(context.Background(), "outage", false)
	if err != nil {
		t.Fatal(err)
	}

	// Stopped as a service is (SIGTERM): Azurite's disk store keeps only
	// what it saved, and saves on shutdown (a SIGKILL loses the last
	// seconds' writes: the emulator's limit, not the transport's).
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_ = a.cmd.Wait()
	a.cmd = nil
	if err := publish(-1); err == nil {
		t.Fatal("a publish with Azurite stopped succeeded")
	}
	run()

	for i := n / 2; i < n; i++ {
		var err error
		for range 20 { // the application's retry
			if err = publish(i); err == nil {
				confirmed[fmt.Sprint(i)] = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("publish %d after the restart: %v", i, err)
		}
	}
	if err := held.Acknowledger.Ack(held.Tag, false); err != nil {
		t.Fatalf("ack across the outage: %v", err)
	}
	delete(confirmed, string(held.Body))
	got := map[string]int{}
	for {
		d, err := c.Get(context.Background(), "outage", true)
		if err != nil {
			break
		}
		got[string(d.Body)]++
	}
	for body := range confirmed {
		if got[body] == 0 {
			t.Errorf("confirmed message %s lost", body)
		}
	}
	t.Logf("confirmed %d, consumed %d distinct after the outage", len(confirmed)+1, len(got))
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
