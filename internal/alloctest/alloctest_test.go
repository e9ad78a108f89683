package alloctest

import (
	"context"
	"testing"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// The budgets measure a route built by hand as generated code builds one,
// because generated stubs fix their queue names and tests on a shared
// broker must not share queues. This keeps the two alike: on a memory
// broker of its own, where the quickstart's names are safe, a message
// costs as many allocations through the hand-built route as through the
// generated quickstart stubs. When the generator changes what its
// producers or consumers do by default, this fails until Route follows.
func TestRouteMatchesGeneratedAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under -race are not the program's")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r := NewRoute(t)
	conn := dial(t, "memory:///alloctest-generated", r)
	if err := quickstartv1.ShopTopology().Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	hand, generated := r.Producer(conn), quickstartv1.NewShopProducer(conn)
	handPublish := func(ctx context.Context, m *quickstartv1.OrderPlaced) error { return hand.Publish(ctx, m) }
	generatedPublish := func(ctx context.Context, m *quickstartv1.OrderPlaced) error { return generated.PlaceOrder(ctx, m) }

	if h, g := measure(publishOnce(t, ctx, handPublish)), measure(publishOnce(t, ctx, generatedPublish)); h != g {
		t.Errorf("publish: %.0f allocations through Route, %.0f through the generated producer", h, g)
	}
	// Each delivery is measured from an empty queue, as Deliver measures it.
	for _, q := range []kombu.Queue{r.Queue, {Name: "quickstart.orders"}} {
		if _, err := q.Purge(ctx, conn); err != nil {
			t.Fatal(err)
		}
	}
	handDeliver := deliverOnce(t, ctx, func(h handler) (*kombu.Consumer, error) { return r.Consumer(conn, h) }, handPublish)
	generatedDeliver := deliverOnce(t, ctx, func(h handler) (*kombu.Consumer, error) {
		return quickstartv1.NewShopConsumer(conn, shopHandler{placeOrder: h})
	}, generatedPublish)
	if h, g := measure(handDeliver), measure(generatedDeliver); h != g {
		t.Errorf("deliver: %.0f allocations through Route, %.0f through the generated consumer", h, g)
	}
}

// shopHandler is a generated Shop handler whose PlaceOrder is placeOrder.
type shopHandler struct {
	quickstartv1.UnimplementedShopHandler
	placeOrder handler
}

func (s shopHandler) PlaceOrder(ctx context.Context, m *quickstartv1.OrderPlaced, msg *kombu.Message) error {
	return s.placeOrder(ctx, m, msg)
}
