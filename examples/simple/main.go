// Command simple passes jobs between two programs through a SimpleQueue,
// Kombu's queue-as-a-channel: one program puts, another gets.
//
//	export KOMBU_URL=redis://127.0.0.1:6379/0   # or amqp://guest:guest@127.0.0.1:5672//
//	go run ./examples/simple put "wash the car" "buy milk"
//	go run ./examples/simple get
//
// get takes jobs until none comes for two seconds. Without a mode it puts
// and gets in one process, on the in-process broker unless KOMBU_URL says
// otherwise. The queue is the one a Python program opens with
// conn.SimpleQueue("jobs"), so either side can be Python:
//
//	with Connection("redis://127.0.0.1:6379/0") as conn:
//	    conn.SimpleQueue("jobs").put({"id": 3, "task": "feed the cat"})
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"  // KOMBU_URL=amqp://...
	_ "github.com/kombu-go/kombu/transports/redis" // KOMBU_URL=redis://...
)

// Job is what the queue carries, as JSON: {"id": 1, "task": "wash the car"}.
type Job struct {
	ID   int    `json:"id"`
	Task string `json:"task"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := os.Getenv("KOMBU_URL")
	if url == "" {
		url = "memory://"
	}
	queue := flag.String("queue", "jobs", "the queue's name")
	idle := flag.Duration("idle", 2*time.Second, "get: stop when no job comes for this long")
	flag.Parse()
	if err := run(ctx, url, *queue, *idle, os.Stdout, flag.Args()...); err != nil {
		log.Fatal(err)
	}
}

// run puts the tasks given after "put", gets jobs for "get", and does
// both without a mode.
func run(ctx context.Context, url, queue string, idle time.Duration, out io.Writer, args ...string) error {
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	jobs, err := kombu.NewSimpleQueue[Job](ctx, conn, queue)
	if err != nil {
		return err
	}
	defer jobs.Close()

	mode := ""
	if len(args) > 0 {
		mode, args = args[0], args[1:]
	}
	switch mode {
	case "put":
		return put(ctx, jobs, out, args)
	case "get":
		return get(ctx, jobs, idle, out)
	case "":
		if err := put(ctx, jobs, out, []string{"wash the car", "buy milk"}); err != nil {
			return err
		}
		return get(ctx, jobs, idle, out)
	}
	return fmt.Errorf("unknown mode %q: want put or get", mode)
}

func put(ctx context.Context, jobs *kombu.SimpleQueue[Job], out io.Writer, tasks []string) error {
	for i, task := range tasks {
		job := Job{ID: i + 1, Task: task}
		// Put returns once the broker has the job (with publisher
		// confirms, on RabbitMQ).
		if err := jobs.Put(ctx, job); err != nil {
			return err
		}
		fmt.Fprintf(out, "put job %d: %s\n", job.ID, job.Task)
	}
	return nil
}

func get(ctx context.Context, jobs *kombu.SimpleQueue[Job], idle time.Duration, out io.Writer) error {
	for {
		wait, cancel := context.WithTimeout(ctx, idle)
		job, msg, err := jobs.Get(wait)
		cancel()
		switch {
		case errors.Is(err, kombu.ErrEmpty):
			if ctx.Err() != nil {
				return ctx.Err() // interrupted
			}
			fmt.Fprintf(out, "no job for %v: done\n", idle)
			return nil
		case errors.Is(err, kombu.ErrDecode):
			// Not a job: its message came back unsettled. Rejected, it goes
			// to the queue's dead-letter exchange, if it has one.
			fmt.Fprintf(out, "not a job, rejected: %q\n", msg.Body)
			if err := msg.Reject(false); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		fmt.Fprintf(out, "got job %d: %s\n", job.ID, job.Task)
		// A SimpleQueue leaves the acknowledgement to the program: done
		// with the job, it acks; had it died before, the broker would hand
		// the job to the next consumer.
		if err := msg.Ack(); err != nil {
			return err
		}
	}
}
