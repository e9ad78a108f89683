package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// A program makes one Pools and shares it: Kombu's kombu.pools, which
// Kombu keeps in module globals. Each broker URL gets a pool that lends at
// most Limit connections at once; Do releases what it acquired however
// its function returns.
func ExamplePools() {
	ctx := context.Background()
	pools, err := kombu.NewPools(kombu.WithPoolLimit(2))
	if err != nil {
		panic(err)
	}
	defer pools.Close()
	const url = "memory:///example-pools"

	jobs := kombu.Queue{Name: "jobs"}
	conns, err := pools.Connections(url)
	if err != nil {
		panic(err)
	}
	err = conns.Do(ctx, func(conn *kombu.Connection) error {
		_, err := jobs.Declare(ctx, conn)
		return err
	})
	if err != nil {
		panic(err)
	}

	// Five goroutines publish through two connections.
	producers, err := pools.Producers(url)
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := producers.Do(ctx, func(p *kombu.Producer) error {
				return p.Publish(ctx, fmt.Sprintf("job %d", i), kombu.WithRoutingKey("jobs"))
			})
			if err != nil {
				panic(err)
			}
		}()
	}
	wg.Wait()

	// With both connections lent, Acquire waits until its context ends.
	a, _ := conns.Acquire(ctx)
	b, _ := conns.Acquire(ctx)
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err = conns.Acquire(short)
	fmt.Println("limit exceeded:", errors.Is(err, kombu.ErrLimitExceeded))

	info, err := jobs.Inspect(ctx, a.Connection)
	fmt.Println("in the queue:", info.Messages, err)
	a.Release()
	b.Release()
	fmt.Println("released twice:", errors.Is(b.Release(), kombu.ErrAlreadyReleased))
	// Output:
	// limit exceeded: true
	// in the queue: 5 <nil>
	// released twice: true
}

// A SimpleQueue is a queue used like a channel between programs, typed:
// Put publishes a value, Get waits for one (until its context ends) and
// decodes it. It declares what Kombu's conn.SimpleQueue("jobs") declares,
// so either end may be a Python program.
func ExampleSimpleQueue() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory:///example-simple-queue")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	type job struct {
		ID   int    `json:"id"`
		Task string `json:"task"`
	}
	jobs, err := kombu.NewSimpleQueue[job](ctx, conn, "jobs")
	if err != nil {
		panic(err)
	}
	defer jobs.Close()
	for i, task := range []string{"wash the car", "buy milk"} {
		if err := jobs.Put(ctx, job{ID: i + 1, Task: task}); err != nil {
			panic(err)
		}
	}
	n, err := jobs.Len(ctx)
	fmt.Println("waiting:", n, err)

	for {
		wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		j, msg, err := jobs.Get(wait)
		cancel()
		if errors.Is(err, kombu.ErrEmpty) {
			fmt.Println("no more jobs")
			break
		} else if err != nil {
			panic(err)
		}
		fmt.Printf("job %d: %s (%s)\n", j.ID, j.Task, msg.Properties.ContentType)
		if err := msg.Ack(); err != nil { // a SimpleQueue leaves settling to its user
			panic(err)
		}
	}
	// Output:
	// waiting: 2 <nil>
	// job 1: wash the car (application/json)
	// job 2: buy milk (application/json)
	// no more jobs
}

// A SimpleBuffer is a SimpleQueue for what may be lost: transient, and Get
// acknowledges what it returns.
func ExampleSimpleBuffer() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory:///example-simple-buffer")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	temperatures, err := kombu.NewSimpleBuffer[float64](ctx, conn, "temperatures")
	if err != nil {
		panic(err)
	}
	defer temperatures.Close()
	if err := temperatures.Put(ctx, 21.5); err != nil {
		panic(err)
	}
	t, msg, err := temperatures.GetNowait(ctx)
	fmt.Println(t, msg.State(), err)
	// Output: 21.5 acked <nil>
}
