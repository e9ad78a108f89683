package kombu_test

import (
	"context"
	"sync/atomic"
	"testing"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/alloctest"
	"github.com/kombu-go/kombu/internal/payload"
	kombu "github.com/kombu-go/kombu/runtime"
)

// passThrough is an interceptor that only counts its calls and calls
// next: what is left is the chain's own cost.
type passThrough struct{ publishes, handles *atomic.Int64 }

func (p passThrough) WrapPublish(next kombu.PublishFunc) kombu.PublishFunc {
	return func(ctx context.Context, pub *kombu.Publishing) error {
		p.publishes.Add(1)
		return next(ctx, pub)
	}
}

func (p passThrough) WrapHandle(next kombu.HandlerFunc) kombu.HandlerFunc {
	return func(ctx context.Context, msg *kombu.Message) error {
		p.handles.Add(1)
		return next(ctx, msg)
	}
}

var passed = passThrough{new(atomic.Int64), new(atomic.Int64)}

// interceptorCases: an empty chain (WithInterceptors with nothing) must
// cost nothing at all, and a chain of interceptors that allocate nothing
// themselves costs nothing either: the Publishing they see is pooled and
// the handler chain is built once per subscription.
var interceptorCases = []struct {
	name string
	opt  kombu.DialOption
}{
	{"empty chain", kombu.WithInterceptors()},
	{"two pass-through interceptors", kombu.WithInterceptors(passed, passed)},
}

func TestInterceptorPublishOverheadAllocs(t *testing.T) {
	ctx := context.Background()
	for _, tc := range interceptorCases {
		conn, err := kombu.Dial(ctx, "discard-bench:///alloctest", tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		p := quickstartv1.NewShopProducer(conn)
		order := payload.Order()
		if err := p.PlaceOrder(ctx, order); err != nil { // seen by the interceptors even where Check is skipped (-race)
			t.Fatal(err)
		}
		alloctest.Check(t, "publish, SDK only, "+tc.name, publishOverheadAllocBudget, func() {
			if err := p.PlaceOrder(ctx, order); err != nil {
				t.Fatal(err)
			}
		})
		conn.Close()
	}
	if passed.publishes.Load() == 0 {
		t.Error("the pass-through interceptors never saw a publish")
	}
}

func TestInterceptorDeliverOverheadAllocs(t *testing.T) {
	for _, tc := range interceptorCases {
		t.Run(tc.name, func(t *testing.T) {
			deliver := replayConsumer(t, tc.opt)
			deliver() // seen by the interceptors even where Check is skipped (-race)
			alloctest.Check(t, "deliver, SDK only, "+tc.name, deliverOverheadAllocBudget, deliver)
		})
	}
	if passed.handles.Load() == 0 {
		t.Error("the pass-through interceptors never saw a handler call")
	}
}
