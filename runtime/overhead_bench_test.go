package kombu_test

import (
	"context"
	"testing"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// The SDK's own cost per publish, without a broker's: the quickstart's
// generated producer on a connection whose driver drops every message
// (the in-process broker with Publish replaced). make bench compares the
// SDK with the bare clients on real brokers, where the broker's pace
// swamps differences of this size; this benchmark shows them, in ns and
// allocations per message, steadily enough to compare two commits with
// benchstat.

// discardDriver opens in-process connections that drop what is published.
type discardDriver struct{}

func (discardDriver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	memory, _ := transport.Lookup("memory")
	c, err := memory.Open(ctx, u, cfg)
	if err != nil {
		return nil, err
	}
	return discardConn{c}, nil
}

type discardConn struct{ transport.Conn }

func (discardConn) Publish(context.Context, *transport.Publishing) error { return nil }

func init() { transport.Register("discard-bench", discardDriver{}) }

func BenchmarkPublishOverhead(b *testing.B) {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "discard-bench:///overhead")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	order := &quickstartv1.OrderPlaced{OrderId: "A-0000001", Customer: "ada", AmountCents: 1250, Items: []string{"tea", "mug"}}
	for _, bc := range []struct {
		name string
		opts []kombu.ProducerOption
	}{
		{"confirmed", nil},
		{"unconfirmed", []kombu.ProducerOption{kombu.WithConfirms(false)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := quickstartv1.NewShopProducer(conn, bc.opts...)
			b.ReportAllocs()
			for b.Loop() {
				if err := p.PlaceOrder(ctx, order); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
