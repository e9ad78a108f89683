package mongodb_test

import (
	"context"
	"fmt"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/mongodb"
)

// Publish to a queue in Kombu's default database on a local MongoDB (or
// FerretDB) server, take the message back and acknowledge it. Python
// Kombu and Celery, given mongodb://127.0.0.1:27017/kombu_default, share
// the queue. (Compiled, not run: it needs a server; TestConformance and
// TestInteropPythonToGo run the same calls against FerretDB.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "mongodb://127.0.0.1:27017/kombu_default")
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
	if err := kombu.NewProducer(conn).Publish(ctx, map[string]string{"hello": "mongodb"}, kombu.WithRoutingKey(q.Name)); err != nil {
		fmt.Println(err)
		return
	}
	msg, err := q.Get(ctx, conn)
	if err != nil {
		fmt.Println(err)
		return
	}
	var body map[string]string
	if err := msg.Decode(&body); err != nil {
		fmt.Println(err)
		return
	}
	// Until this ack the message is leased to this connection, not
	// deleted: were the process to die, it would be delivered again.
	if err := msg.Ack(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(body["hello"]) // mongodb
}

// A consumer whose handler may run long: visibility_timeout is how long a
// taken message stays leased without news of its consumer (the lease is
// extended every third of it while the handler runs), polling_interval how
// often an empty queue is looked at again. (Compiled, not run: it needs a
// server.)
func Example_consumer() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "mongodb://127.0.0.1:27017/kombu_default?visibility_timeout=30&polling_interval=0.2")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	done := make(chan struct{})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "example.work"},
		Handler: kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
			fmt.Println(string(msg.Body))
			close(done)
			return nil // acked
		}),
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = consumer.Run(ctx) }()
	if err := kombu.NewProducer(conn).Publish(ctx, "some work", kombu.WithRoutingKey("example.work")); err != nil {
		fmt.Println(err)
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
		fmt.Println(ctx.Err())
	}
}

// The URL forms. The path is the database (Kombu's kombu_default when
// none is named); query options other than kombu-go's own
// (visibility_timeout, polling_interval) are MongoDB connection string
// options, passed to the driver. The password shows in no error, log or
// URL(): kombu.Connection.URL masks it.
func Example_urls() {
	for _, url := range []string{
		// Kombu's database on a local server.
		"mongodb://",
		// A database of its own, with credentials checked against admin.
		"mongodb://celery:secret@db.example:27017/celery?authSource=admin",
		// TLS and a replica set, as the driver reads them.
		"mongodb://celery:secret@db1.example:27017/celery?tls=true&replicaSet=rs0",
		// A lease of five minutes for long tasks; an empty queue looked at
		// every 0.1 s rather than Kombu's 1 s.
		"mongodb://127.0.0.1/celery?visibility_timeout=300&polling_interval=0.1",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := kombu.Dial(ctx, url)
		cancel()
		if err != nil {
			fmt.Println(err) // the password masked
			continue
		}
		fmt.Println(conn.URL()) // the password masked
		_ = conn.Close()
	}
}
