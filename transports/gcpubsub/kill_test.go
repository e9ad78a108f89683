package gcpubsub_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

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

// TestKilledConsumer: a consumer process killed with SIGKILL while it holds
// a message loses nothing: Pub/Sub delivers it again once its ack
// deadline (here Pub/Sub's least, 10 s) ends. The pstest server runs in
// this process; the child reaches it over gRPC.
func TestKilledConsumer(t *testing.T) {
	if addr := os.Getenv("KOMBU_KILL_CHILD_ADDR"); addr != "" {
		c := open(t, addr, "&ack_deadline_seconds=10")
		d, err := c.Get(context.Background(), "killed", false)
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("taken " + string(d.Body) + "\n")
		time.Sleep(time.Minute)
		return
	}
	if testing.Short() {
		t.Skip("waits for a 10 s ack deadline")
	}
	_, addr := startServer(t)
	c := open(t, addr, "&ack_deadline_seconds=10&polling_interval=0.05")
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "killed"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "killed", Body: []byte("precious")})

	child := exec.Command(os.Args[0], "-test.run=^TestKilledConsumer$", "-test.count=1")
	child.Env = append(os.Environ(), "KOMBU_KILL_CHILD_ADDR="+addr)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "taken precious") {
		_ = child.Process.Kill()
		t.Fatalf("child: %q, %v", line, err)
	}
	_ = child.Process.Signal(syscall.SIGKILL)
	_ = child.Wait()

	var d *transport.Delivery
	waitFor(t, 20*time.Second, "the killed consumer's message back", func() bool {
		d, err = c.Get(context.Background(), "killed", true)
		return err == nil
	})
	if string(d.Body) != "precious" {
		t.Fatalf("came back %q", d.Body)
	}
}

// TestLongHandler: a message held past its ack deadline is not delivered
// to another consumer: the store pushes the deadline back every quarter of
// it (at least every 5 s).
func TestLongHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a message for 13 s")
	}
	_, addr := startServer(t)
	c1 := open(t, addr, "&ack_deadline_seconds=10")
	defer c1.Close()
	c2 := open(t, addr, "&ack_deadline_seconds=10")
	defer c2.Close()
	transporttest.DeclareQueue(t, c1, transport.Queue{Name: "long"})
	transporttest.Publish(t, c1, &transport.Publishing{RoutingKey: "long", Body: []byte("slow")})
	d, err := c1.Get(context.Background(), "long", false)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(13 * time.Second)
	if d2, err := c2.Get(context.Background(), "long", false); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("a second consumer got the message held by the first: %v, %v", d2, err)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatalf("ack after 13 s: %v", err)
	}
}
