package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	kombu "github.com/kombu-go/kombu/runtime"
)

// The Redis Cluster rows: the same publishes through redis+cluster://
// (cluster_mode=kombu, every key under one hash tag) on clusters of 1, 3
// and 6 masters, started for the run by scripts/redis-cluster.sh on
// private ports (7300 and up) and stopped after it. In the Kombu mode the
// whole keyspace lives on the master that owns the tag's slot, so the
// figures are not expected to grow with the masters: these rows show
// that, and what the cluster client costs against one master. A second
// row spreads the publishes over 8 connections with a hash tag each (8
// applications, in effect), which the cluster places on different masters.
//
// The sharded rows (cluster_mode=sharded, the default for redis+cluster://)
// publish through one connection to shardedQueues queues in turn (the
// default exchange, routing key = queue): each queue is in the slot of its
// own name, so the queues, and the writes, spread over the masters.

var clusterSizes = []int{1, 3, 6}

const (
	spreadTags    = 8
	shardedQueues = 16
)

// shardedQueue names the sharded rows' queues.
func shardedQueue(i int) string { return fmt.Sprintf("kombu-go-bench.shard.%d", i) }

// startCluster runs scripts/redis-cluster.sh up for masters masters with
// no replicas and returns its URL and the command that stops it.
func startCluster(masters, port int) (url string, stop func() error, err error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "redis-cluster.sh")
	dir, err := os.MkdirTemp("", "kombu-bench-cluster-")
	if err != nil {
		return "", nil, err
	}
	env := append(os.Environ(), "MASTERS="+strconv.Itoa(masters), "REPLICAS=0", "PORT="+strconv.Itoa(port), "DIR="+dir)
	run := func(arg string) (string, error) {
		cmd := exec.Command(script, arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %v: %s", script, arg, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	stop = func() error {
		_, err := run("down")
		return errors.Join(err, os.RemoveAll(dir))
	}
	if _, err := run("up"); err != nil {
		return "", nil, errors.Join(err, stop())
	}
	url, err = run("url")
	if err != nil {
		return "", nil, errors.Join(err, stop())
	}
	return url, stop, nil
}

func benchRedisCluster(ctx context.Context, tab *table) error {
	var sides, spread, sharded []side
	var conns []*sdk
	var shardedConns []*kombu.Connection
	var shardedFills []run
	var shardedConsumers []*held
	var shardedLabels []string
	var stops []func() error
	defer func() {
		for _, s := range conns {
			s.conn.Close()
		}
		for _, stop := range stops {
			stop()
		}
	}()
	for i, m := range clusterSizes {
		url, stop, err := startCluster(m, 7300+20*i)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		s, err := dialSDK(ctx, sdkDefaults, url)
		if err != nil {
			return err
		}
		conns = append(conns, s)
		label := fmt.Sprintf("%d masters", m)
		if m == 1 {
			label = "1 master"
		}
		sides = append(sides, side{sdkDefaults, label, concurrently(func() error { return s.producer.PlaceOrder(ctx, order) })})
		// The same on 8 connections with a hash tag each, which the
		// cluster spreads over its masters.
		base, _, _ := strings.Cut(url, "?")
		var tagged []*sdk
		for t := range spreadTags {
			s, err := dialSDK(ctx, sdkDefaults, fmt.Sprintf("%s?global_keyprefix={t%d}:", base, t))
			if err != nil {
				return err
			}
			conns = append(conns, s)
			tagged = append(tagged, s)
		}
		var next atomic.Uint64
		spread = append(spread, side{sdkDefaults, label + ", 8 tags", concurrently(func() error {
			return tagged[next.Add(1)%spreadTags].producer.PlaceOrder(ctx, order)
		})})
		// Sharded: one connection, the queues spread over the masters.
		sh, err := dialSDK(ctx, sdkDefaults, base+"?cluster_mode=sharded")
		if err != nil {
			return err
		}
		conns = append(conns, sh)
		shConn := sh.conn
		var nextQ atomic.Uint64
		sharded = append(sharded, side{sdkDefaults, label + ", sharded", concurrently(func() error {
			q := shardedQueue(int(nextQ.Add(1) % shardedQueues))
			return sh.producer.PlaceOrder(ctx, order, kombu.WithExchange(kombu.Exchange{}), kombu.WithRoutingKey(q))
		})})
		shardedConns = append(shardedConns, shConn)
		shardedFills = append(shardedFills, concurrently(func() error {
			q := shardedQueue(int(nextQ.Add(1) % shardedQueues))
			return sh.producer.PlaceOrder(ctx, order, kombu.WithExchange(kombu.Exchange{}), kombu.WithRoutingKey(q))
		}))
		shardedConsumers = append(shardedConsumers, shardedConsumer(ctx, shConn))
		shardedLabels = append(shardedLabels, label+", sharded")
	}
	purge := func() error {
		var errs []error
		for _, s := range conns {
			if err := s.purge(ctx); err != nil && !errors.Is(err, kombu.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		for _, c := range shardedConns {
			for i := range shardedQueues {
				if _, err := (kombu.Queue{Name: shardedQueue(i)}).Purge(ctx, c); err != nil && !errors.Is(err, kombu.ErrNotFound) {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	}
	err := tab.add(workload{
		name:  fmt.Sprintf("publish, %d goroutines, cluster_mode=kombu", poolGoroutines),
		chunk: redisChunk, setup: only(purge), sides: sides, vsFirst: true,
		note: "one hash tag: every key on one master whatever the cluster's size (no sharding in this mode)",
	})
	if err != nil {
		return err
	}
	err = tab.add(workload{
		name:  fmt.Sprintf("publish, %d goroutines over %d connections with a hash tag each", poolGoroutines, spreadTags),
		chunk: redisChunk, setup: only(purge), sides: spread, vsFirst: true,
		note: "what spreading applications over tags (one connection each) gives on more masters; on a 2-core machine the client's CPU, not Redis, bounds it",
	})
	if err != nil {
		return err
	}
	err = tab.add(workload{
		name:  fmt.Sprintf("publish, %d goroutines over %d queues, cluster_mode=sharded", poolGoroutines, shardedQueues),
		chunk: redisChunk, setup: only(purge), sides: sharded, vsFirst: true,
		note: "each queue in the slot of its name: the queues, and the writes, spread over the masters; on a 2-core machine the client's CPU and the masters share the cores",
	})
	if err != nil {
		return err
	}
	// Consume: each round fills the 16 queues of each cluster (not timed),
	// then one consumer per cluster, subscribed to all 16 (prefetch 100),
	// takes and acks, turn about.
	var consumeSides []side
	for i, h := range shardedConsumers {
		consumeSides = append(consumeSides, side{sdkTuned, shardedLabels[i] + ", prefetch 100", h.take})
	}
	return tab.add(workload{
		name:  fmt.Sprintf("consume over %d queues, ack each, cluster_mode=sharded", shardedQueues),
		chunk: consumeChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			for _, fill := range shardedFills {
				if err := fill(tab.cfg.n + consumeChunk + tunedPrefetch + shardedQueues); err != nil {
					return nil, err
				}
			}
			return beginAll(shardedConsumers...)
		},
		sides: consumeSides, vsFirst: true,
		note: "one subscription over queues spread over the masters: a take per queue, wake-ups from every master",
	})
}

// shardedConsumer is a held consumer of the sharded rows' queues on conn.
func shardedConsumer(ctx context.Context, conn *kombu.Connection) *held {
	return &held{name: sdkTuned.String(), start: func(t *turn) (func() error, error) {
		h := heldHandler{t: t}
		subs := make([]kombu.Subscription, shardedQueues)
		for i := range subs {
			subs[i] = kombu.Subscription{Queue: kombu.Queue{Name: shardedQueue(i)}, Handler: kombu.Typed(h.PlaceOrder)}
		}
		consumer, err := kombu.NewConsumer(conn, subs, kombu.WithAccept("protobuf"), kombu.WithPrefetch(tunedPrefetch))
		if err != nil {
			return nil, err
		}
		ended := make(chan error, 1)
		go func() {
			err := consumer.Run(ctx)
			if err != nil {
				t.fail(err)
			}
			ended <- err
		}()
		return func() error {
			t.stop()
			return errors.Join(consumer.Close(), <-ended)
		}, nil
	}}
}
