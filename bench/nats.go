package main

import (
	"bytes"
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
// Kombu's envelope around the body. The bare twin is the bare client again,
// on a stream of its own, with the SDK's envelope (read back from the SDK's
// stream once) as every message's payload: bare to twin is what the wire
// format costs, twin to SDK what the SDK's machinery costs. Watermill's NATS publisher
// (watermill-nats) is not among the modules this machine's Go proxy
// serves, so it has no row.

const (
	natsPrefix      = "KOMBUGOBENCH" // the SDK's stream_prefix: every stream of the run starts with it
	natsBareStream  = natsPrefix + "_BARE"
	natsBareSubject = "kombu-go-bench.bare"
	natsTwinStream  = natsPrefix + "_BARE_ENVELOPE"
	natsTwinSubject = "kombu-go-bench.bare-envelope"
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
	b, err := dialBareNATS(ctx, bare, natsBareStream, natsBareSubject)
	if err != nil {
		return err
	}
	defer b.nc.Close()
	// The twin publishes and consumes the SDK's envelope, as the SDK's
	// queue stores it, on a stream and connection of its own: the rows
	// between it and bare are what Kombu's wire format costs (its bytes
	// through the client, the server's storage and back), apart from the
	// SDK's machinery.
	twin, err := dialBareNATS(ctx, bareTwin, natsTwinStream, natsTwinSubject)
	if err != nil {
		return err
	}
	defer twin.nc.Close()
	envelope, err := sdkEnvelope(ctx, defaults, b.js)
	if err != nil {
		return err
	}
	purge := func() error {
		if err := defaults.purge(ctx); err != nil && !errors.Is(err, kombu.ErrNotFound) {
			return err
		}
		return errors.Join(b.stream.Purge(ctx), twin.stream.Purge(ctx))
	}
	// Every side serializes an order per message; the twin sends the
	// envelope made of one in its place.
	envelopeOf := func() ([]byte, error) {
		if _, err := encode(); err != nil {
			return nil, err
		}
		return envelope, nil
	}
	barePublish, twinPublish := b.publishEach(ctx, encode), twin.publishEach(ctx, envelopeOf)
	barePipelined, twinPipelined := b.pipelined(ctx, encode), twin.pipelined(ctx, envelopeOf)

	err = tab.add(workload{
		name: "publish, confirmed one by one", chunk: natsChunk, setup: only(purge),
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "nats.go js.Publish", barePublish},
			{bareTwin, "nats.go js.Publish, the SDK's envelope as the payload", twinPublish},
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
			{bareTwin, "nats.go PublishAsync, the SDK's envelope as the payload", twinPipelined},
		},
		targets: []target{{who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}

	consumers := []*held{
		sdkConsumer(ctx, sdkDefaults, defaults.conn),
		sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch)),
		bareNATSConsumer(bare, b.cons, nil),
		bareNATSConsumer(bareTwin, twin.cons, envelope),
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
			if err := twinPipelined(n + consumeChunk + tunedPrefetch); err != nil {
				return nil, err
			}
			return beginAll(consumers...)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
			{sdkTuned, "prefetch 100", defaults.explained(ctx, consumers[1].take)},
			{bare, "nats.go Consume, 100 buffered", consumers[2].take},
			{bareTwin, "nats.go Consume, 100 buffered, the SDK's envelope as the payload", consumers[3].take},
		},
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}, {who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}
	// Leave nothing on the server: the SDK's queue and exchange, then
	// every stream of the run (the binding bucket's included).
	errs := []error{defaults.remove(ctx)}
	names := b.js.StreamNames(ctx)
	var doomed []string
	for name := range names.Name() {
		if strings.HasPrefix(name, natsPrefix+"_") || name == "KV_"+natsPrefix+"_bindings" {
			doomed = append(doomed, name)
		}
	}
	for _, name := range doomed {
		errs = append(errs, b.js.DeleteStream(ctx, name))
	}
	return errors.Join(errs...)
}

// bareNATS is a bare side's connection, with its work-queue stream and
// durable pull consumer.
type bareNATS struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	cons    jetstream.Consumer
	subject string
}

func dialBareNATS(ctx context.Context, k kind, name, subject string) (*bareNATS, error) {
	b := &bareNATS{subject: subject}
	var err error
	as(k.String(), func() { b.nc, err = nats.Connect("nats://" + natsAddr()) })
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*bareNATS, error) {
		b.nc.Close()
		return nil, err
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return fail(err)
	}
	b.stream, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject}, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		return fail(err)
	}
	b.cons, err = b.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: -1,
	})
	if err != nil {
		return fail(err)
	}
	return b, nil
}

// publishEach publishes payload() one message at a time, each waiting
// for its ack.
func (b *bareNATS) publishEach(ctx context.Context, payload func() ([]byte, error)) run {
	return func(count int) error {
		for range count {
			body, err := payload()
			if err != nil {
				return err
			}
			if _, err := b.js.Publish(ctx, b.subject, body); err != nil {
				return err
			}
		}
		return nil
	}
}

// pipelined publishes payload() with PublishAsync, waiting for the acks
// of every pipelineWindow messages.
func (b *bareNATS) pipelined(ctx context.Context, payload func() ([]byte, error)) run {
	return func(count int) error {
		for sent := 0; sent < count; {
			futures := make([]jetstream.PubAckFuture, 0, pipelineWindow)
			for ; sent < count && len(futures) < pipelineWindow; sent++ {
				body, err := payload()
				if err != nil {
					return err
				}
				f, err := b.js.PublishAsync(b.subject, body)
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
}

// sdkEnvelope is the payload the SDK stores for an order: it publishes
// one and reads it back from the queue's stream (found by the description
// transports/nats gives it), then purges the queue.
func sdkEnvelope(ctx context.Context, s *sdk, js jetstream.JetStream) ([]byte, error) {
	if err := s.producer.PlaceOrder(ctx, order); err != nil {
		return nil, err
	}
	lister := js.ListStreams(ctx)
	var found *jetstream.StreamInfo
	for info := range lister.Info() {
		if strings.HasPrefix(info.Config.Name, natsPrefix+"_") && info.Config.Description == "kombu queue "+benchQueue {
			found = info
		}
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	if found == nil || len(found.Config.Subjects) != 1 {
		return nil, fmt.Errorf("no stream of prefix %s is the queue %q's", natsPrefix, benchQueue)
	}
	stream, err := js.Stream(ctx, found.Config.Name)
	if err != nil {
		return nil, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, found.Config.Subjects[0])
	if err != nil {
		return nil, err
	}
	if len(raw.Header) > 0 {
		// The twin sends no headers: the SDK's messages must have none
		// either for it to send what the SDK sends.
		return nil, fmt.Errorf("the SDK's message carries headers %v", raw.Header)
	}
	if err := s.purge(ctx); err != nil {
		return nil, err
	}
	return raw.Data, nil
}

// bareNATSConsumer consumes the bare stream with nats.go's Consume
// (buffering the tuned prefetch), decoding and acking each message, held
// between turns. What it took but did not handle when its turn ends it
// naks, so that the next round finds it.
//
// With envelope set, the stream holds the SDK's envelope of an order:
// each message must be those bytes, and the body decoded is the order's
// encoding (made once, ahead), so that the side does the bare side's work
// on the envelope's bytes.
// notAnOrder fails decode (a varint cut short): the twin's consumer
// decodes it for a message that is not the SDK's envelope.
var notAnOrder = []byte{0xff}

func bareNATSConsumer(k kind, cons jetstream.Consumer, envelope []byte) *held {
	body := func(m jetstream.Msg) []byte { return m.Data() }
	if envelope != nil {
		order := mustEncode()
		body = func(m jetstream.Msg) []byte {
			if !bytes.Equal(m.Data(), envelope) {
				return notAnOrder
			}
			return order
		}
	}
	return &held{name: k.String(), start: func(t *turn) (func() error, error) {
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
		ended := serve(t, msgs, body,
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
