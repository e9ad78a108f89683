package nats_test

import (
	"context"
	"fmt"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/nats"
)

// Publish to a queue on a local NATS server with JetStream and take the
// message back. The queue is a work-queue stream,
// KOMBUEXAMPLE_example_2Ehello. (Compiled, not run: it needs a server, and
// broker tests skip without one; TestConformance runs the same calls.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "nats://127.0.0.1:4222?stream_prefix=KOMBUEXAMPLE&subject_prefix=kombu-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	q := kombu.Queue{Name: "example.hello"}
	if _, err := q.Declare(ctx, conn); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _, _ = q.Delete(ctx, conn) }()
	if err := kombu.NewProducer(conn).Publish(ctx, map[string]string{"hello": "nats"}, kombu.WithRoutingKey(q.Name)); err != nil {
		fmt.Println(err)
		return
	}
	msg, err := q.Get(ctx, conn, kombu.WithAutoAck())
	if err != nil {
		fmt.Println(err)
		return
	}
	var body map[string]string
	if err := msg.Decode(&body); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(body["hello"]) // nats
}
