package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
)

const natsServerBin = "/usr/sbin/nats-server"

// privateServer is a nats-server child of this test, with JetStream in a
// folder of its own, on a port of its own: the test kills and restarts
// it, never the shared one.
type privateServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startPrivateServer(t *testing.T) *privateServer {
	t.Helper()
	if _, err := os.Stat(natsServerBin); err != nil {
		brokertest.Unavailable(t, "no nats-server at "+natsServerBin+": "+err.Error())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &privateServer{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *privateServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *privateServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(natsServerBin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", s.dir)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("private nats-server on %s did not start: %v", s.addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the server with SIGKILL: no shutdown, what it acked must
// already be in its store.
func (s *privateServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestServerRestartLosesNothingConfirmed publishes confirmed, pipelined
// batches while a consumer acks what it gets, kills the server with
// SIGKILL mid-stream and starts it again on the same store. Every message
// whose publish was confirmed must come out: from the consumer before or
// after the restart, or from the queue afterwards.
func TestServerRestartLosesNothingConfirmed(t *testing.T) {
	srv := startPrivateServer(t)
	e := env{addr: srv.addr(), prefix: "KR"}
	pub := e.open(t, "&polling_interval=0.05")
	defer pub.Close()
	sub := e.open(t, "&polling_interval=0.05&ack_wait=5")
	defer sub.Close()
	const queue = "restart"
	if _, err := pub.DeclareQueue(tctx(t), transport.Queue{Name: queue, Durable: true}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	confirmed := map[string]bool{}
	received := map[string]int{}
	var failedBatches, failedMsgs int

	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		bp := pub.(transport.BatchPublisher)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			ps := make([]*transport.Publishing, 20)
			for i := range ps {
				ps[i] = &transport.Publishing{RoutingKey: queue, Confirm: true, Body: []byte(fmt.Sprintf("m-%d-%d", n, i))}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := bp.PublishBatch(ctx, ps)
			cancel()
			var be *transport.BatchError
			mu.Lock()
			switch {
			case err == nil:
				for _, p := range ps {
					confirmed[string(p.Body)] = true
				}
			case errors.As(err, &be):
				for i, p := range ps {
					if be.Errs[i] == nil {
						confirmed[string(p.Body)] = true
					} else {
						failedMsgs++
					}
				}
			default:
				failedBatches++
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()

	s, err := sub.Consume(tctx(t), transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 50})
	if err != nil {
		t.Fatal(err)
	}
	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		for d := range s.Deliveries() {
			mu.Lock()
			received[string(d.Body)]++
			mu.Unlock()
			_ = d.Acknowledger.Ack(d.Tag, false)
		}
	}()

	count := func() int { mu.Lock(); defer mu.Unlock(); return len(confirmed) }
	waitCount := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d messages confirmed, waiting for %d", count(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount(500)
	srv.kill()
	before := count()
	time.Sleep(time.Second)
	srv.start()
	waitCount(before + 500)
	close(stop)
	<-pubDone

	// What the consumer had not got yet: drain the queue (the consumer may
	// still be taking too; both count).
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for b := range confirmed {
			if received[b] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d confirmed messages never came out (subscription err %v)", missing, s.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = s.Cancel(context.Background())
	<-consDone
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, n := range received {
		if n > 1 {
			dups++
		}
	}
	t.Logf("confirmed %d (%d before the kill), failed batches %d, failed messages %d, received %d distinct, %d more than once",
		len(confirmed), before, failedBatches, failedMsgs, len(received), dups)
}

// TestBatchWaitsForAckRoom fills the connection's pipeline of outstanding
// acks (nats.go allows 4000) while the server is stopped (SIGSTOP): five
// batches of 1000 published at once on one connection must wait for room
// and all be confirmed once the server goes on (SIGCONT), not fail the
// messages past the 4000th after nats.go's 200 ms stall wait.
func TestBatchWaitsForAckRoom(t *testing.T) {
	srv := startPrivateServer(t)
	e := env{addr: srv.addr(), prefix: "KS"}
	c := e.open(t, "")
	defer c.Close()
	const queue = "stall"
	if _, err := c.DeclareQueue(tctx(t), transport.Queue{Name: queue, Durable: true}); err != nil {
		t.Fatal(err)
	}
	bp := c.(transport.BatchPublisher)
	const batches, size = 5, 1000

	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()

	errs := make(chan error, batches)
	for b := 0; b < batches; b++ {
		go func() {
			ps := make([]*transport.Publishing, size)
			for i := range ps {
				ps[i] = &transport.Publishing{RoutingKey: queue, Confirm: true, Body: []byte(fmt.Sprintf("m-%d-%d", b, i))}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs <- bp.PublishBatch(ctx, ps)
		}()
	}
	time.Sleep(1500 * time.Millisecond) // well past nats.go's 200 ms stall wait
	resume()
	for b := 0; b < batches; b++ {
		if err := <-errs; err != nil {
			var be *transport.BatchError
			if errors.As(err, &be) {
				for _, m := range be.Errs {
					if m != nil {
						t.Fatalf("a batch failed: %v (first failure: %v)", err, m)
					}
				}
			}
			t.Fatalf("a batch failed: %v", err)
		}
	}
	info, err := c.DeclareQueue(tctx(t), transport.Queue{Name: queue, Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	n := info.Messages
	if n != batches*size {
		t.Fatalf("queue holds %d messages, want %d", n, batches*size)
	}
}
