package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Each example dials a broker of its own (memory:///<name>), so that the
// examples, run in one process by go test, never see each other's queues.

// Dial takes Kombu's URLs. memory:// is the in-process broker; amqp://,
// redis:// and the others need their transport's package imported.
func ExampleDial() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory:///example-dial")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Println(conn.URL())

	// A password never shows, in URL(), errors or logs.
	_, err = kombu.Dial(ctx, "rabbitmq://guest:s3cret@localhost//")
	fmt.Println(errors.Is(err, kombu.ErrUnknownScheme))
	// Output:
	// memory:///example-dial
	// true
}

// A producer holds defaults (exchange, routing key, serializer) that each
// Publish may override. With publisher confirms, on by default where the
// broker has them, Publish returns nil once the broker has the message.
func ExampleProducer_Publish() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory:///example-publish")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	logs := kombu.Exchange{Name: "logs", Type: kombu.ExchangeTopic}
	errorsQ := kombu.Queue{Name: "errors", Bindings: []kombu.Binding{{Exchange: "logs", RoutingKey: "*.error"}}}
	producer := kombu.NewProducer(conn,
		kombu.WithExchange(logs),
		kombu.WithDeclare(errorsQ), // declared before the first publish: nothing is dropped
		kombu.WithSerializer("json"))
	for _, key := range []string{"db.error", "db.info", "web.error"} {
		if err := producer.Publish(ctx, map[string]string{"source": key}, kombu.WithRoutingKey(key)); err != nil {
			panic(err)
		}
	}
	for {
		msg, err := errorsQ.Get(ctx, conn, kombu.WithAutoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			break
		} else if err != nil {
			panic(err)
		}
		var body map[string]string
		if err := msg.Decode(&body); err != nil {
			panic(err)
		}
		fmt.Println(msg.Properties.ContentType, body["source"])
	}
	// Output:
	// application/json db.error
	// application/json web.error
}

// Call publishes a request and waits for its reply; Replying makes a
// handler that answers. A handler's error comes back as a *RemoteError.
func ExampleProducer_Call() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///example-call")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	type sum struct{ A, B int }
	adder := kombu.Replying(func(ctx context.Context, req *sum, msg *kombu.Message) (int, error) {
		if req.A < 0 || req.B < 0 {
			return 0, errors.New("only natural numbers")
		}
		return req.A + req.B, nil
	})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "adder"}, Handler: adder}})
	if err != nil {
		panic(err)
	}
	go consumer.Run(ctx)
	defer consumer.Close()

	client := kombu.NewProducer(conn, kombu.WithRoutingKey("adder"))
	var total int
	if err := client.Call(ctx, sum{2, 3}, &total); err != nil {
		panic(err)
	}
	fmt.Println(total)
	var remote *kombu.RemoteError
	err = client.Call(ctx, sum{-1, 3}, &total)
	fmt.Println(errors.As(err, &remote), remote.Message)
	// Output:
	// 5
	// true only natural numbers
}

// A Batch pipelines publishes: each Publish encodes and queues its message,
// and Send returns once the broker has confirmed them all.
func ExampleBatch() {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory:///example-batch")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	jobs := kombu.Queue{Name: "jobs"}
	producer := kombu.NewProducer(conn, kombu.WithRoutingKey("jobs"), kombu.WithDeclare(jobs))

	var batch kombu.Batch
	for i := range 3 {
		if err := producer.Publish(ctx, fmt.Sprintf("job %d", i), kombu.InBatch(&batch)); err != nil {
			panic(err)
		}
	}
	fmt.Println("queued:", batch.Len())
	if err := batch.Send(ctx); err != nil {
		panic(err)
	}
	n, err := jobs.Purge(ctx, conn)
	fmt.Println("in the queue:", n, err)
	// Output:
	// queued: 3
	// in the queue: 3 <nil>
}

// Run consumes until its context ends (or Close), then stops gracefully:
// running handlers finish, and what was taken but not handled goes back to
// the queue. The handler's result settles the message: nil acks, an error
// rejects (dead-letters), kombu.Requeue(err) delivers it again.
func ExampleConsumer_Run() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///example-run")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	runCtx, stop := context.WithCancel(ctx)
	attempts := 0
	handler := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		attempts++
		if attempts == 1 {
			return kombu.Requeue(errors.New("busy")) // try again
		}
		fmt.Printf("handled %s (redelivered: %v)\n", msg.Body, msg.DeliveryInfo.Redelivered)
		stop() // a handler stops its consumer by cancelling Run's context
		return nil
	})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "tasks"}, Handler: handler}})
	if err != nil {
		panic(err)
	}
	if err := kombu.NewProducer(conn).Publish(ctx, "task-1", kombu.WithRoutingKey("tasks")); err != nil {
		panic(err)
	}
	fmt.Println("Run returned", consumer.Run(runCtx))
	// Output:
	// handled task-1 (redelivered: true)
	// Run returned <nil>
}

// WithMessageRetry retries a failing message with back-off, counting the
// attempts in a header, then dead-letters it: a poison message never
// blocks its queue.
func ExampleWithMessageRetry() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///example-retry")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	dead := kombu.Queue{Name: "invoices.dead", Bindings: []kombu.Binding{{Exchange: "dlx", RoutingKey: "invoices"}}}
	invoices := kombu.Queue{Name: "invoices", DeadLetterExchange: "dlx"}
	topology := kombu.Topology{Exchanges: []kombu.Exchange{{Name: "dlx", Type: kombu.ExchangeDirect}}, Queues: []kombu.Queue{dead}}

	handler := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
		fmt.Println("attempt", msg.Retries()+1)
		return errors.New("the payment service is down")
	})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: invoices, Handler: handler}},
		kombu.WithTopology(topology),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 2, IntervalStart: 10 * time.Millisecond, IntervalStep: 10 * time.Millisecond}))
	if err != nil {
		panic(err)
	}
	go consumer.Run(ctx)
	defer consumer.Close()
	if err := kombu.NewProducer(conn).Publish(ctx, "invoice 7", kombu.WithRoutingKey("invoices")); err != nil {
		panic(err)
	}
	for {
		msg, err := dead.Get(ctx, conn, kombu.WithAutoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			time.Sleep(10 * time.Millisecond)
			continue
		} else if err != nil {
			panic(err)
		}
		fmt.Printf("dead-lettered %s: %s\n", msg.Body, msg.Headers[kombu.ErrorHeader])
		return
	}
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// dead-lettered invoice 7: the payment service is down
}

// A Shovel moves a queue's messages to an exchange, on the same broker or
// on another of any transport, and acks each one at the source only once
// the destination has confirmed its copy. Here it replays a dead-letter
// queue into the work exchange, once the bug that failed the jobs is
// fixed: each job keeps its routing key, body and headers.
func ExampleShovel() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///example-shovel")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	work := kombu.Exchange{Name: "work"}
	dlx := kombu.Exchange{Name: "dlx", Type: kombu.ExchangeFanout}
	jobs := kombu.Queue{Name: "jobs", DeadLetterExchange: "dlx", Bindings: []kombu.Binding{{Exchange: "work", RoutingKey: "resize"}}}
	dead := kombu.Queue{Name: "jobs.dead", Bindings: []kombu.Binding{{Exchange: "dlx"}}}
	// What a failing consumer of jobs left behind: the broker dead-letters
	// a message with the routing key it was published with.
	failed := kombu.NewProducer(conn, kombu.WithExchange(dlx), kombu.WithDeclare(dead))
	for _, img := range []string{"1.png", "2.png"} {
		if err := failed.Publish(ctx, img, kombu.WithRoutingKey("resize")); err != nil {
			panic(err)
		}
	}

	shovel, err := kombu.NewShovel(conn, dead, conn, work,
		kombu.WithShovelDeclare(kombu.ShovelDestination, jobs), // the queue that is to receive them
		kombu.WithShovelDrain())                                // what jobs.dead holds now, then return
	if err != nil {
		panic(err)
	}
	if err := shovel.Run(ctx); err != nil {
		panic(err)
	}
	fmt.Println("moved:", shovel.Stats().Moved)
	for {
		msg, err := jobs.Get(ctx, conn, kombu.WithAutoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			break
		} else if err != nil {
			panic(err)
		}
		fmt.Println(msg.DeliveryInfo.RoutingKey, string(msg.Body))
	}
	// Output:
	// moved: 2
	// resize 1.png
	// resize 2.png
}

// A Worker keeps consumers running, as Kombu's ConsumerMixin: it makes a
// consumer the broker ended again, and its handlers publish through a
// connection of their own.
func ExampleWorker() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///example-worker")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	pubConn, err := kombu.Dial(ctx, "memory:///example-worker")
	if err != nil {
		panic(err)
	}
	defer pubConn.Close()

	runCtx, stop := context.WithCancel(ctx)
	ping := kombu.Queue{Name: "ping"}
	w := kombu.NewWorker(conn, kombu.WithProducerConnection(pubConn))
	w.Consume(func(c *kombu.Connection) (*kombu.Consumer, error) {
		echo := kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
			fmt.Printf("pong %s\n", msg.Body)
			stop()
			return nil
		})
		return kombu.NewConsumer(c, []kombu.Subscription{{Queue: ping, Handler: echo}})
	})
	producer := kombu.NewProducer(w.ProducerConnection(), kombu.WithRoutingKey("ping"), kombu.WithDeclare(ping))
	if err := producer.Publish(ctx, "1"); err != nil {
		panic(err)
	}
	fmt.Println("Run returned", w.Run(runCtx))
	// Output:
	// pong 1
	// Run returned <nil>
}

// shop handles what quickstart.proto declares: protoc-gen-kombu generated
// the ShopHandler interface, the producer and NewShopConsumer.
type shop struct {
	quickstartv1.UnimplementedShopHandler
	done chan struct{}
}

func (s shop) PlaceOrder(ctx context.Context, m *quickstartv1.OrderPlaced, msg *kombu.Message) error {
	fmt.Printf("order %s from %s: %d cents\n", m.OrderId, m.Customer, m.AmountCents)
	close(s.done)
	return nil
}

// Generated code: the typed producer publishes, the consumer declared the
// exchange, queue and binding the proto file names and calls the handler
// of each route.
func Example_generated() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///example-generated")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	h := shop{done: make(chan struct{})}
	consumer, err := quickstartv1.NewShopConsumer(conn, h)
	if err != nil {
		panic(err)
	}
	go consumer.Run(ctx)
	defer consumer.Close()

	orders := quickstartv1.NewShopProducer(conn)
	if err := orders.PlaceOrder(ctx, &quickstartv1.OrderPlaced{OrderId: "A-1", Customer: "ada", AmountCents: 1250}); err != nil {
		panic(err)
	}
	<-h.done
	// Output: order A-1 from ada: 1250 cents
}
