package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// The Redis workloads use the same quickstart stubs as the AMQP ones. The
// bare client is go-redis doing what a hand-written Redis queue does, one
// message at a time: LPUSH the serialized message, BRPOP it. It keeps no
// unacked record, so it can lose a message the SDK would not; the SDK pays
// for that safety (and for Kombu's envelope and routing) within these
// figures.
func redisURL() string {
	if u := os.Getenv("KOMBU_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/15"
}

func benchRedis(ctx context.Context, cfg config) ([]row, error) {
	url := redisURL()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := quickstartv1.ShopTopology().Declare(ctx, conn); err != nil {
		return nil, err
	}
	purge := func() error {
		if _, err := (kombu.Queue{Name: benchQueue}).Purge(ctx, conn); err != nil && !isNotFound(err) {
			return err
		}
		return rdb.Del(ctx, bareKey).Err()
	}
	n := cfg.n
	producer := quickstartv1.NewShopProducer(conn)
	tab := &table{cfg: cfg, transport: "redis"}
	barePublish := func(count int) error {
		for range count {
			body, err := proto.Marshal(order)
			if err != nil {
				return err
			}
			if err := rdb.LPush(ctx, bareKey, body).Err(); err != nil {
				return err
			}
		}
		return nil
	}

	pyPublish, pyConsume := 0.0, 0.0
	if cfg.python {
		args := []string{url, benchExchange, benchRoutingKey, benchQueue, strconv.Itoa(cfg.pythonN)}
		if err := purge(); err != nil {
			return nil, err
		}
		if pyPublish, err = pythonRate(append(args, "publish-unconfirmed")...); err != nil {
			return nil, err
		}
		if pyConsume, err = pythonRate(append(args, "consume")...); err != nil {
			return nil, err
		}
	}

	if err := tab.add("publish, one by one", redisChunk, only(purge),
		func(count int) error {
			for range count {
				if err := producer.PlaceOrder(ctx, order); err != nil {
					return err
				}
			}
			return nil
		}, barePublish, pyPublish); err != nil {
		return nil, err
	}
	if err := tab.add(fmt.Sprintf("publish, pipelined (%d) vs bare one by one", pipelineWindow), pipelineWindow, only(purge),
		func(count int) error {
			var batch kombu.Batch
			inBatch := kombu.InBatch(&batch)
			for sent := 0; sent < count; {
				for ; sent < count && batch.Len() < pipelineWindow; sent++ {
					if err := producer.PlaceOrder(ctx, order, inBatch); err != nil {
						return err
					}
				}
				if err := batch.Send(ctx); err != nil {
					return err
				}
			}
			return nil
		}, barePublish, pyPublish); err != nil {
		return nil, err
	}

	// Consume: each round fills the queues (not timed); then the SDK's
	// generated consumer, held between its turns (see turn), takes Kombu
	// envelopes with its unacked bookkeeping and acks each, and the bare
	// client BRPOPs and unmarshals, turn about.
	var sdkTurn *turn
	consume := func() (func() error, error) {
		if err := purge(); err != nil {
			return nil, err
		}
		var batch kombu.Batch
		inBatch := kombu.InBatch(&batch)
		for range n + consumeChunk + 2*consumePrefetch {
			if err := producer.PlaceOrder(ctx, order, inBatch); err != nil {
				return nil, err
			}
			if batch.Len() == pipelineWindow {
				if err := batch.Send(ctx); err != nil {
					return nil, err
				}
			}
		}
		if err := batch.Send(ctx); err != nil {
			return nil, err
		}
		body, _ := proto.Marshal(order)
		pipe := rdb.Pipeline()
		for range n + consumeChunk {
			pipe.LPush(ctx, bareKey, body)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		sdkTurn = newTurn()
		return startSDKConsumer(ctx, conn, sdkTurn)
	}
	bareConsume := func(count int) error {
		for got := 0; got < count; got++ {
			res, err := rdb.BRPop(ctx, 0, bareKey).Result()
			if err != nil {
				return err
			}
			var m quickstartv1.OrderPlaced
			if err := proto.Unmarshal([]byte(res[1]), &m); err != nil {
				return err
			}
		}
		return nil
	}
	if err := tab.add(fmt.Sprintf("consume, prefetch %d, ack each", consumePrefetch), consumeChunk, consume,
		func(count int) error { return sdkTurn.take(count) }, bareConsume, pyConsume); err != nil {
		return nil, err
	}
	return tab.rows, purge()
}

const (
	bareKey    = "kombu-go-bench.bare"
	redisChunk = 500 // messages per turn when publishing one by one (see interleaved)
)

func isNotFound(err error) bool { return errors.Is(err, kombu.ErrNotFound) }
