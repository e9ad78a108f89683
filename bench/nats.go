package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/nats"
)

// The NATS JetStream workloads. The bare client is nats.go's jetstream
// package doing what a hand-written JetStream work queue does: a
// work-queue stream with one durable pull consumer, js.Publish waiting for
// each publish ack, PublishAsync for a pipelined batch, and a Consume
// callback acking each message. The SDK's queue is the same kind of stream
// (transports/nats), reached through the benchmark's topic exchange, with
// Kombu's envelope around the body. Watermill's NATS publisher
// (watermill-nats) is not among the modules this machine's Go proxy
// serves, so it has no row.

const (
	natsPrefix      = "KOMBUGOBENCH" // the SDK's stream_prefix: every stream of the run starts with it
	natsBareStream  = natsPrefix + "_BARE"
	natsBareSubject = "kombu-go-bench.bare"
	natsChunk       = 200 // messages per turn when publishing one by one
)

func natsAddr() string {
	if a := os.Getenv("KOMBU_TEST_NATS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:4222"
}

func benchNATS(ctx context.Context, tab *table) error {
	n := tab.cfg.n
	url := "nats://" + natsAddr() + "?stream_prefix=" + natsPrefix + "&subject_prefix=kombu-go-bench"
	defaults, tuned, err := dialSides(ctx, url, url)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	var nc *nats.Conn
	as(bare.String(), func() { nc, err = nats.Connect("nats://" + natsAddr()) })
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: natsBareStream, Subjects: []string{natsBareSubject}, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		return err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: -1,
	})
	if err != nil {
		return err
	}
	purge := func() error {
		if err := defaults.purge(ctx); err != nil && !errors.Is(err, kombu.ErrNotFound) {
			return err
		}
		return stream.Purge(ctx)
	}
	barePublish := func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			if _, err := js.Publish(ctx, natsBareSubject, body); err != nil {
				return err
			}
		}
		return nil
	}
	barePipelined := func(count int) error {
		for sent := 0; sent < count; {
			futures := make([]jetstream.PubAckFuture, 0, pipelineWindow)
			for ; sent < count && len(futures) < pipelineWindow; sent++ {
				body, err := encode()
				if err != nil {
					return err
				}
				f, err := js.PublishAsync(natsBareSubject, body)
				if err != nil {
					return err
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	}

	err = tab.add(workload{
		name: "publish, confirmed one by one", chunk: natsChunk, setup: only(purge),
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "nats.go js.Publish", barePublish},
		},
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}
	err = tab.add(workload{
		name: fmt.Sprintf("publish, confirms pipelined (%d)", pipelineWindow), chunk: pipelineWindow, setup: only(purge),
		sides: []side{
			{sdkTuned, "kombu.Batch", publishBatched(ctx, tuned.producer)},
			{bare, "nats.go PublishAsync", barePipelined},
		},
		targets: []target{{who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}

	consumers := []*held{
		sdkConsumer(ctx, sdkDefaults, defaults.conn),
		sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch)),
		bareNATSConsumer(cons),
	}
	err = tab.add(workload{
		name: "consume, ack each", chunk: consumeChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			if err := publishBatched(ctx, defaults.producer)(2 * (n + consumeChunk + tunedPrefetch)); err != nil {
				return nil, err
			}
			if err := barePipelined(n + consumeChunk + tunedPrefetch); err != nil {
				return nil, err
			}
			return beginAll(consumers...)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
			{sdkTuned, "prefetch 100", defaults.explained(ctx, consumers[1].take)},
			{bare, "nats.go Consume, 100 buffered", consumers[2].take},
		},
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}, {who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}
	// Leave nothing on the server: the SDK's queue and exchange, then
	// every stream of the run (the binding bucket's included).
	errs := []error{defaults.remove(ctx)}
	names := js.StreamNames(ctx)
	var doomed []string
	for name := range names.Name() {
		if strings.HasPrefix(name, natsPrefix+"_") || name == "KV_"+natsPrefix+"_bindings" {
			doomed = append(doomed, name)
		}
	}
	for _, name := range doomed {
		errs = append(errs, js.DeleteStream(ctx, name))
	}
	return errors.Join(errs...)
}

// bareNATSConsumer consumes the bare stream with nats.go's Consume
// (buffering the tuned prefetch), decoding and acking each message, held
// between turns. What it took but did not handle when its turn ends it
// naks, so that the next round finds it.
func bareNATSConsumer(cons jetstream.Consumer) *held {
	return &held{name: bare.String(), start: func(t *turn) (func() error, error) {
		msgs := make(chan jetstream.Msg)
		var mu sync.Mutex
		closed := false
		cc, err := cons.Consume(func(m jetstream.Msg) {
			mu.Lock()
			defer mu.Unlock()
			if closed {
				_ = m.Nak()
				return
			}
			msgs <- m
		}, jetstream.PullMaxMessages(tunedPrefetch))
		if err != nil {
			return nil, err
		}
		ended := serve(t, msgs,
			func(m jetstream.Msg) []byte { return m.Data() },
			func(m jetstream.Msg) error { return m.Ack() },
			func(m jetstream.Msg) { _ = m.Nak() })
		return func() error {
			t.stop()
			cc.Stop()
			mu.Lock()
			closed = true
			close(msgs)
			mu.Unlock()
			<-ended
			return nil
		}, nil
	}}
}
