package sqs_test

import (
	"context"
	"fmt"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/transports/sqs"
	"github.com/kombu-go/kombu/transports/sqs/sqstest"
)

// Publish to an SQS queue and consume the message. The example runs
// against goaws, the SQS emulator the tests start in this process
// (package sqstest), so that go test runs it; against AWS the URL is
// "sqs://?region=eu-west-1" with the environment's credentials, or
// "sqs://KEY_ID:SECRET@?region=eu-west-1".
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Queues with a visibility timeout of 3 s by default (the tests'),
	// taking bodies up to SQS's limit.
	emu, err := sqstest.Start(3, sqs.MaxMessageSize)
	if err != nil {
		fmt.Println(err)
		return
	}
	// A host names the endpoint (Kombu's endpoint_url); emulator=goaws
	// mends goaws's quirks; polling_interval is seconds between looks at
	// an empty queue.
	conn, err := kombu.Dial(ctx, "sqs://AKIDEXAMPLE:example-secret@"+emu.Addr()+
		"?region=us-east-1&emulator=goaws&polling_interval=0.05&queue_name_prefix=example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	tasks := kombu.Queue{Name: "tasks"} // SQS queue "example-tasks"
	if _, err := tasks.Declare(ctx, conn); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _, _ = tasks.Delete(ctx, conn) }()
	if err := kombu.NewProducer(conn).Publish(ctx, map[string]string{"hello": "sqs"}, kombu.WithRoutingKey(tasks.Name)); err != nil {
		fmt.Println(err)
		return
	}

	runCtx, stop := context.WithCancel(ctx)
	handler := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		var body map[string]string
		if err := msg.Decode(&body); err != nil {
			return err // rejected
		}
		fmt.Println("consumed:", body["hello"])
		stop()
		return nil // acked: the message is deleted from SQS
	})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: tasks, Handler: handler}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Run returned", consumer.Run(runCtx))
	// Output:
	// consumed: sqs
	// Run returned <nil>
}

// The URL forms. Without a key in the URL the AWS environment's
// credentials are used, as boto3 finds them for Kombu. A secret holding
// '/' or '+' is percent-encoded. (Compiled, not run: the URLs name AWS.)
func Example_urls() {
	ctx := context.Background()
	for _, url := range []string{
		// AWS, the environment's credentials, region and Kombu's defaults.
		"sqs://",
		// Kombu's transport options as query parameters.
		"sqs://?region=eu-west-1&queue_name_prefix=prod-&visibility_timeout=60&polling_interval=0.5",
		// Credentials in the URL; the secret never shows in URL(), logs or errors.
		"sqs://AKIDEXAMPLE:wJalr%2FEXAMPLEKEY@?region=eu-west-1",
		// An endpoint of its own (Kombu's endpoint_url), https with is_secure.
		"sqs://AKIDEXAMPLE:secret@sqs.internal.example:4566?region=us-east-1&is_secure=true",
		// Plain JSON bodies rather than Kombu's base64, and queues that take 1 MiB.
		"sqs://?sqs-base64-encoding=false&max_message_size=1048576",
	} {
		conn, err := kombu.Dial(ctx, url)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(conn.URL())
		_ = conn.Close()
	}
}

// A queue whose name ends in ".fifo" is a FIFO queue. Its messages carry
// Kombu's message group id ("default") and a fresh deduplication id,
// unless the headers name MessageGroupId or MessageDeduplicationId (a
// Python publisher puts them in the message's properties; both are read).
// (Compiled, not run: it names AWS.)
func Example_fifo() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "sqs://?region=eu-west-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	orders := kombu.Queue{Name: "orders.fifo"}
	err = kombu.NewProducer(conn, kombu.WithDeclare(orders)).Publish(ctx, map[string]any{"order": 42},
		kombu.WithRoutingKey(orders.Name),
		kombu.WithHeaders(map[string]any{
			"MessageGroupId":         "customer-7",
			"MessageDeduplicationId": "order-42",
		}))
	fmt.Println(err)
}
