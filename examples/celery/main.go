// Command celery shares tasks with Python Celery: it sends
// examples.tasks.add to a Python Celery worker and awaits its typed result,
// and serves examples.tasks.greet, a Go task that Python calls, until it is
// interrupted (or, with -once, right after the add).
//
//	cd examples/celery && python3 -m celery -A tasks worker -Q kombu-example-celery --pool=solo &
//	go run ./examples/celery                         # Redis at 127.0.0.1:6379
//	python3 examples/celery/tasks.py greet World     # Hello, World (from Go)
//
// CELERY_BROKER (redis:// or amqp://) and CELERY_BACKEND (redis:// or rpc://)
// choose the broker and the result backend, as they do for tasks.py.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	celeryv1 "github.com/kombu-go/kombu/gen/examples/celery/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/celery"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/redis"
)

func main() {
	once := flag.Bool("once", false, "exit after the add instead of serving greet")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := config{
		broker:  env("CELERY_BROKER", "redis://127.0.0.1:6379/0"),
		backend: env("CELERY_BACKEND", "redis://127.0.0.1:6379/0"),
		queue:   env("CELERY_QUEUE", "kombu-example-celery"),
		serve:   !*once,
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type config struct {
	broker, backend, queue string
	serve                  bool          // keep serving greet until ctx ends
	ready                  chan struct{} // closed once the Go worker runs (tests)
}

// greeter is the Go side of examples.tasks.greet.
type greeter struct{}

func (greeter) Greet(ctx context.Context, req *celeryv1.GreetRequest) (*celeryv1.GreetReply, error) {
	return &celeryv1.GreetReply{Greeting: "Hello, " + req.Name + " (from Go)"}, nil
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	conn, err := kombu.Dial(ctx, cfg.broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	var backend celery.Backend
	if cfg.backend == "rpc://" {
		backend = celery.NewRPCBackend(conn, nil)
	} else if backend, err = celery.NewRedisBackend(cfg.backend); err != nil {
		return err
	}
	defer backend.Close()

	// The Go worker serves greet on a queue of its own (add's queue is the
	// Python worker's), so it registers greet alone.
	worker := celery.NewWorker(conn, backend, celery.WithQueue(cfg.queue+"-go"))
	celery.RegisterProto(worker, "examples.tasks.greet", greeter{}.Greet)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	werr := make(chan error, 1)
	go func() { werr <- worker.Run(wctx) }()
	if cfg.ready != nil {
		close(cfg.ready)
	}

	// The typed client: Add's request becomes add(x=2, y=40), and Python's
	// int comes back as AddReply.Sum.
	tasks := celeryv1.NewTasksCeleryClient(celery.NewClient(conn, celery.WithBackend(backend)))
	res, err := tasks.Add(ctx, &celeryv1.AddRequest{X: 2, Y: 40}, celery.ToQueue(cfg.queue))
	if err != nil {
		return err
	}
	wait, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	sum, err := res.Get(wait)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "python add(2, 40) = %d\n", sum.Sum)
	if cfg.serve {
		fmt.Fprintf(out, "serving examples.tasks.greet on queue %s-go\n", cfg.queue)
		<-ctx.Done()
	}
	cancel()
	if err := <-werr; err != nil && ctx.Err() == nil && wctx.Err() == nil {
		return err
	}
	return nil
}
