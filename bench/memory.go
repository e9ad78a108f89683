package main

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	kombu "github.com/kombu-go/kombu/runtime"
)

// The memory:// workloads: issue 13's one producer, one consumer, 100-byte
// body, ack each, measured as publishing alone, consuming alone, and both
// at once.
//
// The bare baseline is a buffered Go channel of encoded bodies: what a
// program that needs no broker writes instead, and the floor any
// in-process queue is measured against (issue 13 sets the memory broker's
// target by it). Watermill's GoChannel is not bare, it is a library with
// its own semantics (a topic delivers to the subscribers it has when a
// message is published, each message handed over by a goroutine of its
// own), so it has its own rows, as Watermill does on RabbitMQ.
//
// Python Kombu's memory transport runs inside the Python process, so its
// rows measure Kombu's in-process broker in Python beside ours in Go.

// memoryScale multiplies -n for memory://, which moves messages a hundred
// times faster than a network broker: turns that last as long keep the
// CPU time readings (which the kernel counts in ticks) meaningful.
const memoryScale = 10

const (
	memoryChunk    = 5000
	watermillTopic = "order.placed"
)

// payloadOf and ack are what a Watermill consumer does with a message.
func payloadOf(m *message.Message) []byte { return m.Payload }
func ack(m *message.Message) error        { m.Ack(); return nil }

func benchMemory(ctx context.Context, tab *table) error {
	n := memoryScale * tab.cfg.n
	// Each SDK side has a broker of its own (memory:///name), so that a
	// consumer held between its side's turns never takes a message meant
	// for another side.
	defaults, tuned, err := dialSides(ctx, "memory:///kombu-go-bench.defaults", "memory:///kombu-go-bench.tuned")
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	purge := func() error { return errors.Join(defaults.purge(ctx), tuned.purge(ctx)) }

	var ch chan []byte // the bare side's queue, made anew each round
	bareSend := func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			ch <- body
		}
		return nil
	}
	bareReceive := func(count int) error {
		for range count {
			if err := decode(<-ch); err != nil {
				return err
			}
		}
		return nil
	}
	var wm *gochannel.GoChannel // Watermill's side, made anew each round
	wmPublish := func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			if err := wm.Publish(watermillTopic, message.NewMessage(watermill.NewUUID(), body)); err != nil {
				return err
			}
		}
		return nil
	}
	python := func(workload string) func(int) (pythonResult, error) {
		return pythonSide("memory://", workload, "memory transport, in its process", nil)
	}

	err = tab.add(workload{
		name: "publish, one by one", n: n, chunk: memoryChunk,
		setup: func() (func() error, error) {
			ch = make(chan []byte, n+memoryChunk) // the round's messages and the warm-up turn's
			// Persistent: GoChannel keeps what no subscriber took, as a
			// queue does; otherwise it drops it.
			wm = gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
			return wm.Close, purge()
		},
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "Go channel", bareSend},
			{viaWatermill, "GoChannel, persistent", wmPublish},
		},
		python:  python("publish-unconfirmed"),
		targets: []target{{who: sdkDefaults, minRate: 2e6}},
	})
	if err != nil {
		return err
	}

	err = addPoolWorkload(ctx, tab, "publish", "memory:///kombu-go-bench.defaults", defaults.conn, memoryChunk, n, purge)
	if err != nil {
		return err
	}

	// Consume: each round fills the queues (not timed), then the
	// consumers, held between their turns (see turn), take turns.
	consumeDefaults := sdkConsumer(ctx, sdkDefaults, defaults.conn)
	consumeTuned := sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch))
	err = tab.add(workload{
		name: "consume, ack each", n: n, chunk: memoryChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			fill := n + memoryChunk + tunedPrefetch
			if err := errors.Join(publishBatched(ctx, defaults.producer)(fill), publishBatched(ctx, tuned.producer)(fill)); err != nil {
				return nil, err
			}
			ch = make(chan []byte, n+memoryChunk)
			if err := bareSend(n + memoryChunk); err != nil {
				return nil, err
			}
			return beginAll(consumeDefaults, consumeTuned)
		},
		sides: []side{
			{sdkDefaults, "", consumeDefaults.take},
			{sdkTuned, "prefetch 100", consumeTuned.take},
			{bare, "Go channel", bareReceive},
		},
		python:  python("consume"),
		targets: []target{{who: sdkTuned, minRate: 2e6}},
		note:    "Watermill's GoChannel has no row: it hands a backlog to a new subscriber with a goroutine per message",
	})
	if err != nil {
		return err
	}

	// Publish and consume at once: in each turn the side's consumer,
	// held between turns, takes what its producer publishes.
	var bareConsumer, wmConsumer *held
	bareConsumer = &held{name: bare.String(), start: func(t *turn) (func() error, error) {
		ch = make(chan []byte, tunedPrefetch)
		ended := serve(t, ch, func(b []byte) []byte { return b }, func([]byte) error { return nil }, nil)
		return func() error { t.stop(); close(ch); <-ended; return nil }, nil
	}}
	wmConsumer = &held{name: viaWatermill.String(), start: func(t *turn) (func() error, error) {
		wm = gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		subCtx, cancel := context.WithCancel(ctx)
		msgs, err := wm.Subscribe(subCtx, watermillTopic)
		if err != nil {
			cancel()
			return nil, err
		}
		ended := serve(t, msgs, payloadOf, ack, nil)
		return func() error {
			t.stop()
			cancel()
			err := wm.Close()
			<-ended
			return err
		}, nil
	}}
	return tab.add(workload{
		name: "publish → consume, at once", n: n, chunk: memoryChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			return beginAll(consumeDefaults, consumeTuned, bareConsumer, wmConsumer)
		},
		sides: []side{
			{sdkDefaults, "", flow(consumeDefaults, publishEach(ctx, defaults.producer))},
			{sdkTuned, "prefetch 100", flow(consumeTuned, publishEach(ctx, tuned.producer))},
			{bare, "Go channel, buffer 100", flow(bareConsumer, bareSend)},
			{viaWatermill, "GoChannel", flow(wmConsumer, wmPublish)},
		},
		// Issue 13's "≤ 3 allocations per message end to end" is the
		// SDK's and the broker's: the order's encoding and decoding (8,
		// the bare side's) are any program's.
		targets: []target{{who: sdkTuned, minRate: 2e6, maxExtraAllocs: 3}},
	})
}
