package kombutest_test

import (
	"context"
	"fmt"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/kombutest"
)

// A recorder bound to a topic exchange with "order.*" records what is
// published there with a matching routing key, in order.
func ExampleRecorder() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// In a test, kombutest.Dial(t) gives the test a broker of its own.
	conn, err := kombu.Dial(ctx, "memory:///kombutest-example-recorder")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	shop := kombu.Exchange{Name: "shop", Type: kombu.ExchangeTopic}
	orders, err := kombutest.NewRecorder(ctx, conn, shop, "order.*")
	if err != nil {
		panic(err)
	}
	defer orders.Close()

	p := kombu.NewProducer(conn, kombu.WithExchange(shop))
	for key, id := range map[string]int{"order.placed": 1, "parcel.shipped": 2} {
		if err := p.Publish(ctx, map[string]int{"id": id}, kombu.WithRoutingKey(key)); err != nil {
			panic(err)
		}
	}
	msg, err := orders.Next(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.DeliveryInfo.RoutingKey, string(msg.Body))
	fmt.Println(len(orders.Messages()), "recorded")
	// Output:
	// order.placed {"id":1}
	// 1 recorded
}

// NextAs decodes what a generated producer published into its message type.
func ExampleNextAs() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, "memory:///kombutest-example-nextas")
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	parcels, err := kombutest.NewRecorder(ctx, conn, quickstartv1.ShopTopology().Exchanges[0], "parcel.#")
	if err != nil {
		panic(err)
	}
	defer parcels.Close()

	shop := quickstartv1.NewShopProducer(conn)
	if err := shop.ShipParcel(ctx, &quickstartv1.ParcelShipped{OrderId: "o-1", Carrier: "dhl"}); err != nil {
		panic(err)
	}
	parcel, err := kombutest.NextAs[quickstartv1.ParcelShipped](ctx, parcels)
	if err != nil {
		panic(err)
	}
	fmt.Println(parcel.OrderId, "shipped by", parcel.Carrier)
	// Output: o-1 shipped by dhl
}
