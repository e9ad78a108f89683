package gcpubsub_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"

	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/gcpubsub"
)

// A direct exchange, a queue bound to it, a consumer and a producer on
// Pub/Sub. The example runs pstest, the client's fake server, in process,
// and points the transport at it with emulator_host; against the service
// the URL is gcpubsub://projects/<project-id>, with Application Default
// Credentials. The exchange is the topic "tasks"; the queue is the
// subscription kombu-celery-high on it, with the filter
// attributes.routing_key="high", as Python Kombu names them.
func Example() {
	srv := pstest.NewServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := kombu.Dial(ctx, "gcpubsub://projects/my-project?emulator_host="+srv.Addr+"&polling_interval=0.01")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	tasks := kombu.Exchange{Name: "tasks", Type: kombu.ExchangeDirect}
	high := kombu.Queue{Name: "celery.high", Bindings: []kombu.Binding{{Exchange: "tasks", RoutingKey: "high"}}}

	done := make(chan struct{})
	consumer, err := kombu.NewConsumer(conn,
		[]kombu.Subscription{{Queue: high, Handler: kombu.HandlerFunc(
			func(ctx context.Context, msg *kombu.Message) error {
				var task struct{ Name string }
				if err := msg.Decode(&task); err != nil {
					return err // rejected
				}
				fmt.Println("got", task.Name, "via", msg.DeliveryInfo.RoutingKey)
				close(done)
				return nil // acked: Pub/Sub's Acknowledge
			})}},
		kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{tasks}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	go consumer.Run(ctx)
	defer consumer.Close()

	// The consumer declares the topology as it starts: publish once the
	// subscription exists, or the message would reach no one.
	if _, err := high.Declare(ctx, conn); err != nil {
		fmt.Println(err)
		return
	}
	producer := kombu.NewProducer(conn, kombu.WithExchange(tasks))
	if err := producer.Publish(ctx, map[string]string{"Name": "resize"}, kombu.WithRoutingKey("high")); err != nil {
		fmt.Println(err)
		return
	}
	<-done
	// Output: got resize via high
}

// The URL forms: gcpubsub://projects/<project-id> and Kombu's transport
// options as query parameters. Credentials never go in the URL (a URL
// with a user or password is refused): they are Application Default
// Credentials, and a missing or refused one fails Dial with
// gcpubsub.ErrCredentials.
func Example_urls() {
	srv := pstest.NewServer()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Against Google's service (needs credentials, so not run here):
	//   gcpubsub://projects/my-project
	// Against an emulator, with Kombu's options: a queue name prefix, the
	// ack deadline (10 to 600 s), the subscriptions' expiration, how often
	// a consumer polls.
	url := "gcpubsub://projects/my-project?emulator_host=" + srv.Addr +
		"&queue_name_prefix=app-&ack_deadline_seconds=60&expiration_seconds=172800&polling_interval=0.05"
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		fmt.Println(err)
		return
	}
	conn.Close()
	fmt.Println("options: ok")

	for _, bad := range []string{
		"gcpubsub://user:secret@projects/my-project", // no credentials in URLs
		"gcpubsub://projects/my-project?ack_deadline_seconds=5",
		"gcpubsub://projects/my-project?bogus=1",
	} {
		_, err := kombu.Dial(ctx, bad)
		fmt.Println(errors.Is(err, kombu.ErrInvalidURL))
	}
	// Output:
	// options: ok
	// true
	// true
	// true
}
