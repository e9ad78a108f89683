package kombu_test

import (
	"context"
	"fmt"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// A topic exchange, a queue bound to it, a consumer and a producer on the
// in-process broker.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	conn, err := kombu.Dial(ctx, "memory:///example")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	shop := kombu.Exchange{Name: "shop", Type: kombu.ExchangeTopic}
	orders := kombu.Queue{Name: "orders", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "order.*"}}}

	done := make(chan struct{})
	consumer, err := kombu.NewConsumer(conn,
		[]kombu.Subscription{{Queue: orders, Handler: kombu.HandlerFunc(
			func(ctx context.Context, msg *kombu.Message) error {
				var order struct{ ID int }
				if err := msg.Decode(&order); err != nil {
					return err // rejected, and dead-lettered if the queue has a DLX
				}
				fmt.Println("got order", order.ID, "via", msg.DeliveryInfo.RoutingKey)
				close(done)
				return nil // acked
			})}},
		kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{shop}}))
	if err != nil {
		panic(err)
	}
	go consumer.Run(ctx)
	defer consumer.Close()

	producer := kombu.NewProducer(conn, kombu.WithExchange(shop))
	if err := producer.Publish(ctx, map[string]int{"ID": 42}, kombu.WithRoutingKey("order.placed")); err != nil {
		panic(err)
	}
	<-done
	// Output: got order 42 via order.placed
}
