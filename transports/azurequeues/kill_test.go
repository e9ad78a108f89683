package azurequeues_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// TestKilledConsumer: a consumer process killed with SIGKILL while it holds
// a message loses nothing: the message comes back, marked redelivered,
// once its visibility timeout ends (Kombu deletes at receive: the message
// would be gone).
func TestKilledConsumer(t *testing.T) {
	if url := os.Getenv("KOMBU_KILL_CHILD_URL"); url != "" {
		c := open(t, url)
		d, err := c.Get(context.Background(), "killed", false)
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("taken " + string(d.Body) + "\n")
		time.Sleep(time.Minute)
		return
	}
	a := startAzurite(t)
	url := a.url("?visibility_timeout=2&polling_interval=0.05")
	c := open(t, url)
	defer c.Close()
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "killed"})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "killed", Body: []byte("precious")})

	child := exec.Command(os.Args[0], "-test.run=^TestKilledConsumer$", "-test.count=1")
	child.Env = append(os.Environ(), "KOMBU_KILL_CHILD_URL="+url)
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
	transporttest.Eventually(t, "the killed consumer's message back", func() bool {
		d, err = c.Get(context.Background(), "killed", false)
		return err == nil
	})
	if string(d.Body) != "precious" || !d.Redelivered {
		t.Fatalf("came back %q, redelivered %t", d.Body, d.Redelivered)
	}
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
}
