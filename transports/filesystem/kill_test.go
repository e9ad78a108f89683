//go:build unix

package filesystem_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// childEnv makes the test binary a consumer that takes one message from
// the folder and queue named in it, says so, and hangs in its "handler"
// until it is killed.
const childEnv = "KOMBU_FILESYSTEM_TEST_CONSUMER"

// drainEnv makes the test binary a consumer that acks and prints every
// message of the folder and queue named in it until none came for two
// seconds.
const drainEnv = "KOMBU_FILESYSTEM_TEST_DRAIN"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(consumeAndHang(spec))
	}
	if spec := os.Getenv(drainEnv); spec != "" {
		os.Exit(drain(spec))
	}
	os.Exit(m.Run())
}

func drain(spec string) int {
	url, queue, _ := strings.Cut(spec, " ")
	c, err := dial(url)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer c.Close()
	sub, err := c.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 5})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	for {
		select {
		case d := <-sub.Deliveries():
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				fmt.Println("error:", err)
				return 1
			}
			fmt.Printf("got %s\n", d.Body)
		case <-time.After(2 * time.Second):
			return 0
		}
	}
}

func consumeAndHang(spec string) int {
	url, queue, _ := strings.Cut(spec, " ")
	c, err := dial(url)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	sub, err := c.Consume(context.Background(), transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 1})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	d := <-sub.Deliveries()
	fmt.Printf("took %s\n", d.Body)
	select {} // the handler never returns
}

// startConsumer starts a child consumer and waits until it has taken a
// message, which it returns.
func startConsumer(t *testing.T, url, queue string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+url+" "+queue)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
	}()
	select {
	case l := <-line:
		body, ok := strings.CutPrefix(l, "took ")
		if !ok {
			t.Fatalf("the child consumer says %q", l)
		}
		return cmd, body
	case <-time.After(transporttest.DefaultTimeout):
		t.Fatal("the child consumer took nothing")
	}
	return nil, ""
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no Close, no defer
		t.Fatal(err)
	}
	cmd.Wait()
}

// A consumer killed in the middle of its handler loses nothing: the next
// connection to open restores the message it held, marked redelivered;
// and a connection already open restores it within its recovery period.
func TestKilledConsumerLosesNothing(t *testing.T) {
	dir := t.TempDir()
	url := "filesystem://" + dir + "?polling_interval=0.05"
	c := open(t, url)
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "work", Body: []byte("first")})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "work", Body: []byte("second")})

	t.Run("Restart", func(t *testing.T) {
		child, took := startConsumer(t, url, "work")
		if took != "first" {
			t.Fatalf("the child took %q", took)
		}
		kill(t, child)
		// Held by the dead child: neither ready nor lost.
		if files := messageFiles(t, dir); len(files) != 1 {
			t.Fatalf("with the first message taken, the folder holds %q", files)
		}
		restarted := open(t, url)
		d := get(t, restarted, "work")
		if string(d.Body) != "first" || !d.Redelivered {
			t.Fatalf("after the restart: %q, redelivered %t; want \"first\", redelivered", d.Body, d.Redelivered)
		}
		if err := d.Acknowledger.Reject(d.Tag, true); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("LiveConsumer", func(t *testing.T) {
		child, took := startConsumer(t, url, "work")
		if took != "first" {
			t.Fatalf("the child took %q", took)
		}
		// The connection opened before the child recovers its message
		// once it is gone, and its consumer gets it.
		sub, err := c.Consume(ctx(t), transport.ConsumeSpec{Queues: []string{"work"}, Prefetch: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Cancel(ctx(t))
		d := <-sub.Deliveries()
		if string(d.Body) != "second" {
			t.Fatalf("the live consumer got %q first, want \"second\"", d.Body)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
		kill(t, child)
		select {
		case d := <-sub.Deliveries():
			if string(d.Body) != "first" || !d.Redelivered {
				t.Fatalf("after the kill: %q, redelivered %t", d.Body, d.Redelivered)
			}
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * transporttest.DefaultTimeout):
			t.Fatal("the message the killed consumer held was not restored")
		}
		// The recovery removes the gone consumer's folder and lock once
		// its messages are back.
		transporttest.Eventually(t, "only the live connection's folder and lock in the taken folder", func() bool {
			taken, _ := os.ReadDir(filepath.Join(dir, ".kombu-go", "taken"))
			return len(taken) == 2
		})
	})
}

// Consumers in several processes share a queue: each message is taken by
// exactly one of them.
func TestConsumersInManyProcesses(t *testing.T) {
	dir := t.TempDir()
	url := "filesystem://" + dir + "?polling_interval=0.05"
	const processes, messages = 3, 300
	type child struct {
		cmd  *exec.Cmd
		got  []string
		done chan struct{}
	}
	children := make([]*child, processes)
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), drainEnv+"="+url+" work")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: cmd, done: make(chan struct{})}
		children[i] = c
		ready := make(chan struct{})
		go func() {
			defer close(c.done)
			s := bufio.NewScanner(out)
			for s.Scan() {
				switch line := s.Text(); {
				case line == "ready":
					close(ready)
				case strings.HasPrefix(line, "got "):
					c.got = append(c.got, strings.TrimPrefix(line, "got "))
				default:
					t.Errorf("child %d: %s", i, line)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(transporttest.DefaultTimeout):
			t.Fatalf("child %d did not start consuming", i)
		}
	}
	c := open(t, url)
	for i := range messages {
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: "work", Body: []byte(fmt.Sprint(i))})
	}
	seen := map[string]int{}
	for i, ch := range children {
		if err := ch.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v", i, err)
		}
		<-ch.done
		for _, b := range ch.got {
			seen[b]++
		}
		t.Logf("child %d took %d messages", i, len(ch.got))
	}
	for i := range messages {
		if n := seen[fmt.Sprint(i)]; n != 1 {
			t.Errorf("message %d was taken %d times", i, n)
		}
	}
	wantEmpty(t, c, "work")
}
