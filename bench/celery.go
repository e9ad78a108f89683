package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/celery"
)

// The Celery rows (runtime/celery): sending tasks with the Go client, and
// a Go worker running empty tasks, beside Python Celery's own client
// (send_task) and worker (solo pool) on the same broker. Neither side has
// a result backend: the rows measure the task protocol on the broker.
// There is no bare client: a Celery message by hand is what the SDK does.

const celeryBenchQueue = "kombu-go-bench.celery"

func benchCelery(ctx context.Context, tab *table, url string) error {
	if !tab.cfg.selected(tab.transport, "celery send") && !tab.cfg.selected(tab.transport, "celery send, unconfirmed") &&
		!tab.cfg.selected(tab.transport, "celery run empty tasks") {
		return nil
	}
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	q := kombu.Queue{Name: celeryBenchQueue, Bindings: []kombu.Binding{{Exchange: celeryBenchQueue, RoutingKey: celeryBenchQueue}}}
	purge := func() error {
		if _, err := q.Purge(ctx, conn); err != nil && !errors.Is(err, kombu.ErrNotFound) {
			return err
		}
		return nil
	}
	spec := celery.TaskSpec{Name: "bench.noop", Queue: celeryBenchQueue}
	sender := func(client *celery.Client) run {
		return func(count int) error {
			for range count {
				if _, err := client.Send(ctx, spec, nil, nil); err != nil {
					return err
				}
			}
			return nil
		}
	}
	send := sender(celery.NewClient(conn))
	python := func(mode string) func(n int) (pythonResult, error) {
		return func(n int) (pythonResult, error) {
			if err := purge(); err != nil {
				return pythonResult{}, err
			}
			return pythonCelery(url, mode, n)
		}
	}
	// Two like-for-like rows: the Go client at its default (publisher
	// confirms: Send returns once the broker has the task) beside Python
	// Celery with confirm_publish, and both unconfirmed, Celery's default.
	if err := tab.add(workload{
		name: "celery send", chunk: redisChunk, setup: only(purge),
		sides:  []side{{sdkDefaults, "celery.Client.Send, confirmed", send}},
		python: python("send-confirmed"),
		note:   "Python: Celery 5.2 send_task, one producer, broker_transport_options confirm_publish=True (on Redis every send waits for its reply anyway)",
	}); err != nil {
		return err
	}
	if err := tab.add(workload{
		name: "celery send, unconfirmed", chunk: redisChunk, setup: only(purge),
		sides:  []side{{sdkTuned, "WithConfirms(false), as Celery sends", sender(celery.NewClient(conn, celery.WithConfirms(false)))}},
		python: python("send"),
		note:   "Python: Celery 5.2 send_task, one producer, unconfirmed (Celery's default)",
	}); err != nil {
		return err
	}

	// The worker runs between turns too; its task takes a token first, so it
	// runs only the tasks a turn asks for (the rest wait, prefetched).
	n := tab.cfg.n
	tokens := make(chan struct{}, 4*(n+redisChunk))
	finished := make(chan struct{}, 4*(n+redisChunk))
	w := celery.NewWorker(conn, nil, celery.WithQueue(celeryBenchQueue))
	w.Register("bench.noop", func(ctx context.Context, t *celery.Task) (json.RawMessage, error) {
		select {
		case <-tokens:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		finished <- struct{}{}
		return nil, nil
	})
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- w.Run(wctx) }()
	runTasks := func(count int) error {
		for range count {
			tokens <- struct{}{}
		}
		for range count {
			select {
			case <-finished:
			case err := <-werr:
				return fmt.Errorf("worker stopped: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	err = tab.add(workload{
		name: "celery run empty tasks", chunk: redisChunk,
		setup: only(func() error {
			if err := purge(); err != nil {
				return err
			}
			return send(n + redisChunk)
		}),
		sides: []side{{sdkDefaults, "celery.Worker", runTasks}},
		python: func(n int) (pythonResult, error) {
			stop() // the Go worker must not take the Python worker's tasks
			<-werr
			werr <- nil
			return python("work")(n)
		},
		note: "Python: Celery 5.2 worker, solo pool; Go: celery.Worker at its defaults",
	})
	stop()
	<-werr
	return errors.Join(err, func() error { _, err := q.Delete(context.Background(), conn); return err }())
}

// pythonCelery runs celery_bench.py.
func pythonCelery(url, mode string, n int) (pythonResult, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "celery_bench.py")
	out, err := os.CreateTemp("", "celery-bench-*.json")
	if err != nil {
		return pythonResult{}, err
	}
	out.Close()
	defer os.Remove(out.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, script, url, celeryBenchQueue, strconv.Itoa(n), mode, out.Name())
	if msg, err := cmd.CombinedOutput(); err != nil {
		return pythonResult{}, fmt.Errorf("%v: %s", err, msg)
	}
	data, err := os.ReadFile(out.Name())
	if err != nil {
		return pythonResult{}, err
	}
	var r struct {
		Rate  float64 `json:"rate"`
		CPUus float64 `json:"cpu_us_per_msg"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return pythonResult{}, fmt.Errorf("output %q: %v", data, err)
	}
	return pythonResult{label: "Python Celery", rate: r.Rate, cpu: r.CPUus}, nil
}
