package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/kafka"
)

// The Kafka workloads. There is no Kafka broker on this machine: each
// side's cluster is kfake, franz-go's Kafka in a process (one broker),
// started from transports/kafka/kafkatest/cmd/kfake (its module has the go
// line kfake needs; this one keeps its own). KOMBU_TEST_KAFKA_URL names a
// real cluster instead. The SDK's two sides have a cluster each, because
// a queue is a topic with one partition and one consumer group, which
// one member alone consumes.
//
// The bare client is franz-go doing what the SDK does with a topic: the
// same acks (all in-sync replicas), one record at a time with
// ProduceSync, or a window of records produced at once and waited for;
// a consumer group member that decodes each record and marks it for the
// commit after (AutoCommitMarks, franz-go's at-least-once idiom, which
// commits every 5 s; the SDK commits what acks settled, in order, in the
// background at most every 0.1 s or 1000 acks). It writes the bare protobuf body; the SDK
// writes Kombu's JSON envelope around it, and pays for that here.
//
// A second bare side ("bare twin") is the same franz-go client with the
// SDK's envelope as the record: the bytes the SDK writes for an order
// (491, where the body is 100; only the delivery tag differs), encoded
// once before the clock, produced and consumed as the bare side does its
// body, so that the rows tell what Kombu's wire format costs the client
// and the broker (to compress, send, store, fetch and decompress) apart
// from the SDK's own machinery. It still encodes an order per message, as
// both other sides do; its consumer decodes the body it knows rather than
// parse the JSON, which is the SDK's work.
//
// Watermill's side is watermill-kafka v3's Publisher (sarama's
// SyncProducer, with the same acks: all in-sync replicas), in the
// confirmed row only: it sends a Publish's messages one by one, so it has
// no pipelined form, and its subscriber is not measured here.

const (
	watermillKafkaTopic = "kombu-go-bench.watermill"
	bareTopic           = "kombu-go-bench.bare"
	bareEnvelopeTopic   = "kombu-go-bench.bare-envelope"
	kafkaChunk          = 500
)

// kfakeProc is a kfake cluster in a child process.
type kfakeProc struct {
	addrs []string
	stdin io.WriteCloser
	cmd   *exec.Cmd
}

// startKfake runs cmd/kfake with go run and reads its brokers' addresses.
func startKfake(ctx context.Context) (*kfakeProc, error) {
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/kfake", "-brokers", "1")
	cmd.Dir = "../transports/kafka/kafkatest"
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = stdin.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("kfake did not print its addresses: %w", err)
	}
	return &kfakeProc{addrs: strings.Split(strings.TrimSpace(line), ","), stdin: stdin, cmd: cmd}, nil
}

func (k *kfakeProc) url() string { return "kafka://" + k.addrs[0] }

// stop closes kfake's standard input, on which it exits.
func (k *kfakeProc) stop() error {
	_ = k.stdin.Close()
	return k.cmd.Wait()
}

func benchKafka(ctx context.Context, tab *table) error {
	defaultsURL, tunedURL := os.Getenv("KOMBU_TEST_KAFKA_URL"), os.Getenv("KOMBU_TEST_KAFKA_URL_TUNED")
	if defaultsURL == "" || tunedURL == "" {
		a, err := startKfake(ctx)
		if err != nil {
			return err
		}
		defer a.stop()
		b, err := startKfake(ctx)
		if err != nil {
			return err
		}
		defer b.stop()
		defaultsURL, tunedURL = a.url(), b.url()
	}
	n := tab.cfg.n
	defaults, tuned, err := dialSides(ctx, defaultsURL, tunedURL)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	seed := strings.TrimPrefix(defaultsURL, "kafka://")
	cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(bareTopic))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, bareTopic); err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
		return err
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, bareEnvelopeTopic); err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
		return err
	}
	// The record the SDK writes for an order: Kombu's envelope around it.
	body, envelope, err := orderEnvelope("binary")
	if err != nil {
		return err
	}
	purgeBare := func() error {
		ends, err := adm.ListEndOffsets(ctx, bareTopic, bareEnvelopeTopic)
		if err != nil {
			return err
		}
		_, err = adm.DeleteRecords(ctx, ends.Offsets())
		return err
	}
	purge := func() error {
		return errors.Join(defaults.purge(ctx), tuned.purge(ctx), purgeBare())
	}
	// value is the bare side's record value: the order encoded, as the SDK
	// encodes it; the twin then sends the envelope instead.
	value := func(envelope []byte) func() ([]byte, error) {
		return func() ([]byte, error) {
			body, err := encode()
			if envelope != nil {
				return envelope, err
			}
			return body, err
		}
	}
	bareEach := func(topic string, value func() ([]byte, error)) run {
		return func(count int) error {
			for range count {
				v, err := value()
				if err != nil {
					return err
				}
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: v}).FirstErr(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	barePipelined := func(topic string, value func() ([]byte, error)) run {
		return func(count int) error {
			for sent := 0; sent < count; {
				var wg sync.WaitGroup
				var mu sync.Mutex
				var errs []error
				for w := 0; sent < count && w < pipelineWindow; w, sent = w+1, sent+1 {
					v, err := value()
					if err != nil {
						return err
					}
					wg.Add(1)
					cl.Produce(ctx, &kgo.Record{Topic: topic, Value: v}, func(_ *kgo.Record, err error) {
						if err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
						wg.Done()
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					return err
				}
			}
			return nil
		}
	}

	scfg := wmkafka.DefaultSaramaSyncPublisherConfig()
	scfg.Producer.RequiredAcks = sarama.WaitForAll
	wm, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{Brokers: []string{seed}, Marshaler: wmkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: scfg}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("watermill-kafka: %w", err)
	}
	defer wm.Close()
	wmEach := func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			if err := wm.Publish(watermillKafkaTopic, message.NewMessage(watermill.NewUUID(), body)); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, watermillKafkaTopic); err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
		return err
	}

	err = tab.add(workload{
		name: "publish, confirmed one by one", chunk: kafkaChunk, setup: only(purge),
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "franz-go ProduceSync", bareEach(bareTopic, value(nil))},
			{bareTwin, "franz-go ProduceSync, the SDK's envelope as the record", bareEach(bareEnvelopeTopic, value(envelope))},
			{viaWatermill, "watermill-kafka v3, sarama", wmEach},
		},
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}
	err = tab.add(workload{
		name: fmt.Sprintf("publish, pipelined (%d)", pipelineWindow), chunk: pipelineWindow, setup: only(purge),
		sides: []side{
			{sdkTuned, "kombu.Batch", publishBatched(ctx, tuned.producer)},
			{bare, "franz-go Produce, window 1000", barePipelined(bareTopic, value(nil))},
			{bareTwin, "franz-go Produce, window 1000, the SDK's envelope as the record", barePipelined(bareEnvelopeTopic, value(envelope))},
		},
		targets: []target{{who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}

	consumers := []*held{
		sdkConsumer(ctx, sdkDefaults, defaults.conn),
		sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch)),
		bareKafkaConsumer(ctx, bare, seed, bareTopic, func(r *kgo.Record) []byte { return r.Value }),
		bareKafkaConsumer(ctx, bareTwin, seed, bareEnvelopeTopic, func(*kgo.Record) []byte { return body }),
	}
	err = tab.add(workload{
		name: "consume, ack each", chunk: consumeChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			fill := n + consumeChunk + tunedPrefetch
			if err := errors.Join(publishBatched(ctx, defaults.producer)(fill), publishBatched(ctx, tuned.producer)(fill),
				barePipelined(bareTopic, value(nil))(fill), barePipelined(bareEnvelopeTopic, value(envelope))(fill)); err != nil {
				return nil, err
			}
			return beginAll(consumers...)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
			{sdkTuned, "prefetch 100", tuned.explained(ctx, consumers[1].take)},
			{bare, "franz-go group member, commit marks", consumers[2].take},
			{bareTwin, "franz-go group member, commit marks, the SDK's envelope as the record", consumers[3].take},
		},
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}, {who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}
	return errors.Join(defaults.remove(ctx), tuned.remove(ctx))
}

// bareKafkaConsumer is a consumer group member of a bare topic that
// decodes the order body finds in each record and marks the record for
// the commit (AutoCommitMarks, as franz-go advises for at-least-once),
// held between turns.
func bareKafkaConsumer(ctx context.Context, k kind, seed, topic string, body func(*kgo.Record) []byte) *held {
	return &held{name: k.String(), start: func(t *turn) (func() error, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.ConsumeTopics(topic), kgo.ConsumerGroup(topic+"-group"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitMarks(),
			kgo.MaxBufferedRecords(tunedPrefetch))
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithCancel(ctx)
		records := make(chan *kgo.Record, tunedPrefetch)
		go func() {
			defer close(records)
			for pctx.Err() == nil {
				fs := cl.PollRecords(pctx, tunedPrefetch)
				for _, r := range fs.Records() {
					select {
					case records <- r:
					case <-pctx.Done():
						return
					}
				}
			}
		}()
		ended := serve(t, records, body,
			func(r *kgo.Record) error { cl.MarkCommitRecords(r); return nil }, func(*kgo.Record) {})
		return func() error {
			t.stop()
			cancel()
			<-ended
			cl.Close()
			return nil
		}, nil
	}}
}
