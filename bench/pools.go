package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	kombubenchv1 "github.com/kombu-go/kombu/bench/gen/kombubench/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// The pool workload: what a kombu.ProducerPool buys. A Connection already
// serves many goroutines at once, so the question is whether spreading
// them over several connections publishes faster: poolGoroutines
// goroutines publish one message at a time each (with publisher confirms
// where the transport has them), all through one connection's producer,
// or each through a producer it acquires from a pool for every message
// (Do), as a Kombu program does with `with producers[conn].acquire() as
// p`. Every side sends the same message with the same options.

// poolGoroutines publish at once in the pool workload: more than the
// default pool limit, so that the pool's waiting is measured too.
const poolGoroutines = 16

// poolLimits are the pools measured: a few connections, Kombu's default
// limit, and one connection per goroutine.
var poolLimits = []int{4, kombu.DefaultPoolLimit, poolGoroutines}

// poolWorkload is the pool workload on the broker at url, beside one
// connection (conn) to it; setup runs before each round. The caller runs
// closePools once the workload has run.
func poolWorkload(ctx context.Context, name string, url string, conn *kombu.Connection, chunk int, setup func() error) (w workload, closePools func() error, err error) {
	route := []kombu.PublishOption{
		kombu.WithExchange(kombubenchv1.BenchTopology().Exchanges[0]),
		kombu.WithRoutingKey(benchRoutingKey),
		kombu.WithSerializer("protobuf"),
		kombu.WithType(messageType),
	}
	one := kombu.NewProducer(conn)
	sides := []side{{sdkDefaults, "one connection", concurrently(func() error { return one.Publish(ctx, order, route...) })}}
	var groups []*kombu.Pools // one per limit, since a group's pools share theirs
	closePools = func() error {
		var errs []error
		for _, ps := range groups {
			errs = append(errs, ps.Close())
		}
		return errors.Join(errs...)
	}
	publish := func(p *kombu.Producer) error { return p.Publish(ctx, order, route...) }
	for _, limit := range poolLimits {
		ps, err := kombu.NewPools(kombu.WithPoolLimit(limit))
		if err != nil {
			return workload{}, nil, errors.Join(err, closePools())
		}
		groups = append(groups, ps)
		producers, err := ps.Producers(url)
		if err != nil {
			return workload{}, nil, errors.Join(err, closePools())
		}
		sides = append(sides, side{sdkPool, fmt.Sprintf("ProducerPool, limit %d", limit),
			concurrently(func() error { return producers.Do(ctx, publish) })})
	}
	return workload{
		name:  fmt.Sprintf("%s, %d goroutines", name, poolGoroutines),
		chunk: chunk, setup: only(setup), sides: sides, vsFirst: true,
		note: "×bare is the pool's rate over one connection's, round by round: below 1, the pool is slower",
	}, closePools, nil
}

// addPoolWorkload measures the pool workload (n messages per side per
// round; 0: -n) and closes its pools.
func addPoolWorkload(ctx context.Context, tab *table, name, url string, conn *kombu.Connection, chunk, n int, setup func() error) error {
	w, closePools, err := poolWorkload(ctx, name, url, conn, chunk, setup)
	if err != nil {
		return err
	}
	w.n = n
	return errors.Join(tab.add(w), closePools())
}

// concurrently makes a turn in which poolGoroutines goroutines call
// publish, count times in all.
func concurrently(publish func() error) run {
	return func(count int) error {
		var left atomic.Int64
		left.Store(int64(count))
		var wg sync.WaitGroup
		errs := make([]error, poolGoroutines)
		for g := range poolGoroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					if err := publish(); err != nil {
						errs[g] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}
