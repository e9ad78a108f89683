package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// helperEnv set in the environment makes the test binary a consumer
// process (TestHelperProcess), as os/exec's tests re-execute themselves.
const helperEnv = "KOMBU_CHAOS_HELPER"

// queueOf builds the queue both the test and its child processes declare.
func queueOf(kind, name string) kombu.Queue {
	switch kind {
	case "quorum":
		return kombu.Queue{Name: name, Type: kombu.QueueQuorum}
	default:
		return kombu.Queue{Name: name} // durable classic, Kombu's default
	}
}

// TestHelperProcess is not a test: it is the consumer process the SIGKILL
// tests start by re-executing the test binary with helperEnv set. It prints
// "READY" once subscribed, "D <id> <redelivered>" when a delivery reaches the
// handler and "A <id> ok|<error>" after acking it. With HANG_AT=n, the
// handler of the n-th delivery prints "HANG <id>" and never returns, so that
// the test kills the process in the middle of a handler.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	os.Exit(helperConsumer())
}

func helperConsumer() int {
	env := func(k string) string { return os.Getenv("KOMBU_CHAOS_" + k) }
	prefetch, _ := strconv.Atoi(env("PREFETCH"))
	delay, _ := time.ParseDuration(env("DELAY"))
	hangAt, _ := strconv.Atoi(env("HANG_AT")) // the handler of this delivery (from 1) never returns
	var seen atomic.Int64
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // never outlive the suite
	defer cancel()
	conn, err := kombu.Dial(ctx, env("URL"), kombu.WithHeartbeat(2*time.Second), kombu.WithReconnectPolicy(fastRetry),
		kombu.WithConnectionName(env("NAME")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: dial:", err)
		return 2
	}
	defer conn.Close()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		out.Unlock()
	}
	h := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		id := idOf(msg)
		say("D %s %t", id, msg.Redelivered())
		if n := seen.Add(1); hangAt > 0 && n == int64(hangAt) {
			say("HANG %s", id)
			<-ctx.Done() // killed in here
			time.Sleep(time.Minute)
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		if err := msg.Ack(); err != nil {
			say("A %s %s", id, strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			say("A %s ok", id)
		}
		return nil
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: queueOf(env("KIND"), env("QUEUE")), Handler: h}},
		kombu.WithPrefetch(prefetch), kombu.WithShutdownTimeout(5*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: consumer:", err)
		return 2
	}
	say("READY")
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper: run:", err)
		return 1
	}
	return 0
}

// child is a consumer process started by the test.
type child struct {
	name  string
	cmd   *exec.Cmd
	led   *Ledger
	ready chan struct{}
	done  chan struct{}

	hung      chan struct{} // closed when the handler hangs (HANG_AT)
	stderr    syncBuffer
	mu        sync.Mutex
	open      map[string]*Delivery // delivered, ack not reported yet
	delivered atomic.Int64
	acked     atomic.Int64
	firstAt   atomic.Pointer[time.Time] // first delivery
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startChild starts a consumer process of queue (kind "classic" or
// "quorum") on url, recording its deliveries in led as consumer name, and
// waits until it is subscribed.
func startChild(t *testing.T, led *Ledger, name, url, kind, queue string, prefetch int, delay time.Duration, hangAt int) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.timeout=4m")
	cmd.Env = append(os.Environ(),
		helperEnv+"=consumer",
		"KOMBU_CHAOS_URL="+url,
		"KOMBU_CHAOS_NAME="+name,
		"KOMBU_CHAOS_KIND="+kind,
		"KOMBU_CHAOS_QUEUE="+queue,
		"KOMBU_CHAOS_PREFETCH="+strconv.Itoa(prefetch),
		"KOMBU_CHAOS_DELAY="+delay.String(),
		"KOMBU_CHAOS_HANG_AT="+strconv.Itoa(hangAt),
	)
	c := &child{name: name, cmd: cmd, led: led, ready: make(chan struct{}), done: make(chan struct{}), hung: make(chan struct{}),
		open: map[string]*Delivery{}}
	cmd.Stderr = &c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", name, err)
	}
	go c.read(stdout)
	t.Cleanup(func() { c.kill() })
	select {
	case <-c.ready:
	case <-c.done:
		t.Fatalf("child %s exited before subscribing: %s", name, c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("child %s did not subscribe within 30 s: %s", name, c.stderr.String())
	}
	return c
}

func (c *child) read(r io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		switch {
		case f[0] == "READY":
			close(c.ready)
		case f[0] == "HANG":
			close(c.hung)
		case f[0] == "D" && len(f) == 3:
			d := c.led.Delivered(c.name, f[1], f[2] == "true")
			c.mu.Lock()
			c.open[f[1]] = d
			c.mu.Unlock()
			now := time.Now()
			c.firstAt.CompareAndSwap(nil, &now)
			c.delivered.Add(1)
		case f[0] == "A" && len(f) == 3:
			c.mu.Lock()
			d := c.open[f[1]]
			delete(c.open, f[1])
			c.mu.Unlock()
			if d != nil {
				var err error
				if f[2] != "ok" {
					err = errors.New(f[2])
				}
				c.led.Acked(d, err)
			}
			c.acked.Add(1)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// inFlight returns the ids delivered to the handler and not acked.
func (c *child) inFlight() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.open {
		ids = append(ids, id)
	}
	return ids
}

// kill sends SIGKILL and waits for the process to end.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	_ = c.cmd.Wait()
}

// term asks the process to stop (SIGTERM) and waits up to 15 s, then kills
// it.
func (c *child) term() error {
	if c.cmd.ProcessState != nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.cmd.Wait()
	case <-time.After(15 * time.Second):
		c.kill()
		return errors.New("did not stop within 15 s of SIGTERM; killed")
	}
}
