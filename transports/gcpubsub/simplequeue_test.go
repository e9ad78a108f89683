package gcpubsub_test

import (
	"context"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

type job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

// The SDK end to end on Pub/Sub: Dial, a SimpleQueue (a direct exchange
// and a queue bound to it, as Kombu's SimpleQueue), Put, Get, Ack, Len.
func TestSimpleQueue(t *testing.T) {
	_, addr := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "gcpubsub://projects/kombu-test?emulator_host="+addr+"&polling_interval=0.01")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs, err := kombu.NewSimpleQueue[job](ctx, conn, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	for i, task := range []string{"wash the car", "buy milk"} {
		if err := jobs.Put(ctx, job{ID: i + 1, Task: task}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := jobs.Len(ctx); err != nil || n != 2 {
		t.Fatalf("Len: %d, %v", n, err)
	}
	seen := map[int]bool{}
	for range 2 {
		j, msg, err := jobs.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen[j.ID] = true
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if !seen[1] || !seen[2] {
		t.Fatalf("got %v", seen)
	}
}
