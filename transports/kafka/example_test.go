package kafka_test

import (
	"context"
	"fmt"
	"log"

	"github.com/twmb/franz-go/pkg/kgo"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/transports/kafka"
)

// Dial a cluster, publish to a queue (its topic is made on first use)
// and consume it: each ack is committed once every earlier record of its
// partition is settled. A record that is not Kombu's envelope reaches the
// decode-error hook and is then kept in the topic "tasks.dlq".
func Example() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "kafka://k1:9092?brokers=k2:9092,k3:9092&num_partitions=3&replication_factor=3")
	if err != nil {
		log.Fatal(err) // wraps kafka.ErrBrokersUnavailable when no broker answers
	}
	defer conn.Close()

	p := kombu.NewProducer(conn, kombu.WithRoutingKey("tasks"))
	if err := p.Publish(ctx, map[string]any{"id": 1}); err != nil {
		log.Fatal(err)
	}

	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "tasks"},
		Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
			var task map[string]any
			return m.Decode(&task) // an error rejects it: to "tasks.dlq"
		}),
	}}, kombu.WithDecodeErrorHandler(func(m *kombu.Message, err error) {
		log.Printf("not a message (kept in tasks%s): %v", kafka.DLQSuffix, err)
	}))
	if err != nil {
		log.Fatal(err)
	}
	_ = c.Run(ctx)
}

// The dead-letter topic holds each rejected record as it was, with the
// reason and its origin in headers; any Kafka client reads it.
func Example_deadLetters() {
	cl, err := kgo.NewClient(kgo.SeedBrokers("k1:9092"),
		kgo.ConsumeTopics(kafka.TopicName("tasks")+kafka.DLQSuffix),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	for _, r := range cl.PollFetches(context.Background()).Records() {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		fmt.Printf("%s[%s]@%s: %s\n", h["kombu_queue"], h["kombu_partition"], h["kombu_offset"], h["kombu_error"])
	}
}
