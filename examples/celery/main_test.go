package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

const python = "/usr/bin/python3"

// The example against a real Python Celery worker (tasks.py), with a queue
// of the test's own: Go sends add and awaits its typed result, then Python
// calls the Go worker's greet.
func TestCeleryExampleOnRedis(t *testing.T) {
	url := brokertest.RedisURL(t)
	check(t, url, url)
}

func TestCeleryExampleOnAMQP(t *testing.T) {
	check(t, brokertest.AMQPURL(t), brokertest.RedisURL(t))
}

func TestCeleryExampleOnAMQPWithRPC(t *testing.T) {
	check(t, brokertest.AMQPURL(t), "rpc://")
}

func check(t *testing.T, broker, backend string) {
	if out, err := exec.Command(python, "-c", "import celery").CombinedOutput(); err != nil {
		brokertest.Unavailable(t, "Python Celery not available: "+string(bytes.TrimSpace(out)))
	}
	var b [6]byte
	rand.Read(b[:])
	queue := "kombu-example-celery-test-" + hex.EncodeToString(b[:])
	environ := append(os.Environ(), "CELERY_BROKER="+broker, "CELERY_BACKEND="+backend, "CELERY_QUEUE="+queue)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := kombu.Dial(ctx, broker); err == nil {
			kombu.Queue{Name: queue}.Delete(ctx, conn)
			kombu.Queue{Name: queue + "-go"}.Delete(ctx, conn)
			conn.Close()
		}
	})

	worker := exec.Command(python, "-m", "celery", "-A", "tasks", "worker", "-Q", queue, "--pool=solo", "-c", "1",
		"--without-heartbeat", "--without-mingle", "--without-gossip", "-n", queue+"@%h")
	worker.Env = environ
	var wout bytes.Buffer
	worker.Stdout, worker.Stderr = &wout, &wout
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		worker.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { worker.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			worker.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("python worker:\n%s", wout.String())
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, config{broker: broker, backend: backend, queue: queue, serve: true, ready: ready}, &out)
	}()
	<-ready
	greet := exec.Command(python, "tasks.py", "greet", "World")
	greet.Env = environ
	got, err := greet.CombinedOutput()
	if err != nil {
		t.Fatalf("python tasks.py greet: %v\n%s", err, got)
	}
	if strings.TrimSpace(string(got)) != "Hello, World (from Go)" {
		t.Errorf("python greet printed %q", got)
	}
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(out.String(), "serving") && time.Now().Before(deadline) {
		select {
		case err := <-errc:
			t.Fatalf("run: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	want := "python add(2, 40) = 42\nserving examples.tasks.greet on queue " + queue + "-go\n"
	if out.String() != want {
		t.Errorf("output %q; want %q", out.String(), want)
	}
}

// syncBuffer is written by run while the test reads it.
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
