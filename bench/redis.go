package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// The Redis workloads. The bare client is go-redis doing what a
// hand-written Redis queue does: LPUSH the serialized message, BRPOP it.
// It keeps no unacked record, so it can lose a message the SDK would not;
// the SDK pays for that safety (and for Kombu's envelope and routing)
// within these figures. Watermill's Redis support is Redis Streams, a
// different structure from Kombu's lists, so it has no row here.

const (
	bareKey    = "kombu-go-bench.bare"
	redisChunk = 500 // messages per turn when publishing one by one
)

func redisURL() string {
	if u := os.Getenv("KOMBU_TEST_REDIS_URL"); u != "" {
		return u
	}
	return brokertest.DefaultRedisURL
}

func benchRedis(ctx context.Context, tab *table) error {
	url, n := redisURL(), tab.cfg.n
	defaults, tuned, err := dialSides(ctx, url, url)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	purge := func() error {
		if err := defaults.purge(ctx); err != nil && !errors.Is(err, kombu.ErrNotFound) {
			return err
		}
		return rdb.Del(ctx, bareKey).Err()
	}
	barePublish := func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			if err := rdb.LPush(ctx, bareKey, body).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	barePipelined := func(count int) error {
		for sent := 0; sent < count; {
			pipe := rdb.Pipeline()
			for ; sent < count && pipe.Len() < pipelineWindow; sent++ {
				body, err := encode()
				if err != nil {
					return err
				}
				pipe.LPush(ctx, bareKey, body)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	python := func(workload string, prepare func(int) error) func(int) (pythonResult, error) {
		return pythonSide(url, workload, "", prepare)
	}

	err = tab.add(workload{
		name: "publish, one by one", chunk: redisChunk, setup: only(purge),
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "go-redis LPUSH", barePublish},
		},
		python:  python("publish-unconfirmed", func(int) error { return purge() }),
		targets: []target{{who: sdkDefaults, minVsBare: 0.9, minVsPython: 5}},
	})
	if err != nil {
		return err
	}
	if err := addPoolWorkload(ctx, tab, "publish", url, defaults.conn, 4*redisChunk, 0, purge); err != nil {
		return err
	}
	err = tab.add(workload{
		name: fmt.Sprintf("publish, pipelined (%d)", pipelineWindow), chunk: pipelineWindow, setup: only(purge),
		sides: []side{
			{sdkTuned, "kombu.Batch", publishBatched(ctx, tuned.producer)},
			{bare, "go-redis pipeline of LPUSH", barePipelined},
		},
	})
	if err != nil {
		return err
	}

	// Consume: each round fills the queues (not timed); then the SDK's
	// generated consumers, held between their turns (see turn), take Kombu
	// envelopes with their unacked bookkeeping and ack each, and the bare
	// client BRPOPs and decodes, turn about.
	consumers := []*held{
		sdkConsumer(ctx, sdkDefaults, defaults.conn),
		sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch)),
	}
	bareConsume := func(count int) error {
		for range count {
			res, err := rdb.BRPop(ctx, 0, bareKey).Result()
			if err != nil {
				return err
			}
			if err := decode([]byte(res[1])); err != nil {
				return err
			}
		}
		return nil
	}
	err = tab.add(workload{
		name: "consume, ack each", chunk: consumeChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			if err := publishBatched(ctx, defaults.producer)(len(consumers) * (n + consumeChunk + tunedPrefetch)); err != nil {
				return nil, err
			}
			if err := barePipelined(n + consumeChunk); err != nil {
				return nil, err
			}
			return beginAll(consumers...)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
			{sdkTuned, "prefetch 100", defaults.explained(ctx, consumers[1].take)},
			{bare, "go-redis BRPOP", bareConsume},
		},
		python: python("consume", func(n int) error {
			return errors.Join(purge(), publishBatched(ctx, defaults.producer)(n))
		}),
		targets: []target{{who: sdkDefaults, minVsBare: 0.9, minVsPython: 5}},
	})
	if err != nil {
		return err
	}
	if err := benchCelery(ctx, tab, url); err != nil {
		return fmt.Errorf("celery: %w", err)
	}
	return errors.Join(defaults.remove(ctx), rdb.Del(ctx, bareKey).Err())
}
