package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// TestMain runs the example's main instead of the tests when a test runs
// this binary as the example program (see program).
func TestMain(m *testing.M) {
	if os.Getenv("KOMBU_SIMPLE_EXAMPLE_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const wantGet = `got job 1: wash the car
got job 2: buy milk
not a job, rejected: "[\"not\",\"a\",\"job\"]"
no job for 500ms: done
`

// On the in-process broker both sides run in this process.
func TestSimpleOnMemory(t *testing.T) {
	url := "memory:///simple-example-test"
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, url, "jobs", 500*time.Millisecond, &out, "put", "wash the car", "buy milk"); err != nil {
		t.Fatal(err)
	}
	putNotAJob(t, url, "jobs")
	if err := run(ctx, url, "jobs", 500*time.Millisecond, &out, "get"); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "put job 1: wash the car\nput job 2: buy milk\n"+wantGet; got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestSimpleOnAMQP(t *testing.T) { twoPrograms(t, brokertest.AMQPURL(t)) }

func TestSimpleOnRedis(t *testing.T) { twoPrograms(t, brokertest.RedisURL(t)) }

// twoPrograms runs the example as two programs, one putting and one
// getting, on a queue of the test's own.
func twoPrograms(t *testing.T, url string) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	queue := "kombu-go-example.simple." + hex.EncodeToString(b)
	t.Cleanup(func() { deleteQueue(url, queue) })

	if got, want := program(t, url, "-queue", queue, "put", "wash the car", "buy milk"), "put job 1: wash the car\nput job 2: buy milk\n"; got != want {
		t.Errorf("put:\n%s\nwant:\n%s", got, want)
	}
	putNotAJob(t, url, queue)
	if got := program(t, url, "-queue", queue, "-idle", "500ms", "get"); got != wantGet {
		t.Errorf("get:\n%s\nwant:\n%s", got, wantGet)
	}
}

// program runs the example as a program of its own (this test binary,
// which runs main: see TestMain) and returns what it printed.
func program(t *testing.T, url string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KOMBU_URL="+url, "KOMBU_SIMPLE_EXAMPLE_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// putNotAJob puts, after the jobs, a message that is no Job: someone else
// writing to the queue.
func putNotAJob(t *testing.T, url, queue string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	other, err := kombu.NewSimpleQueue[[]string](ctx, conn, queue)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Put(ctx, []string{"not", "a", "job"}); err != nil {
		t.Fatal(err)
	}
}

func deleteQueue(url, queue string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = kombu.Queue{Name: queue}.Delete(ctx, conn)
	_ = kombu.Exchange{Name: queue}.Delete(ctx, conn)
}
