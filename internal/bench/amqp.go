package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
)

// The AMQP workloads publish the quickstart's OrderPlaced through its
// generated ShopProducer (exchange "shop", routing key "order.placed", queue
// "quickstart.orders") and consume it with the generated NewShopConsumer.
const (
	benchExchange   = "shop"
	benchRoutingKey = "order.placed"
	benchQueue      = "quickstart.orders"
	pipelineWindow  = 1000 // messages per batch of pipelined confirms, both sides
	consumePrefetch = 100
)

var order = &quickstartv1.OrderPlaced{OrderId: "A-0000001", Customer: "ada", AmountCents: 1250, Items: []string{"tea", "mug"}}

func amqpURL() string {
	if u := os.Getenv("KOMBU_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672//"
}

// bareAMQP is the same work done with amqp091-go alone.
type bareAMQP struct {
	conn              *amqp.Connection
	confirmed, direct *amqp.Channel
}

func newBareAMQP(url string) (*bareAMQP, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	b := &bareAMQP{conn: conn}
	if b.confirmed, err = conn.Channel(); err != nil {
		return nil, err
	}
	if err := b.confirmed.Confirm(false); err != nil {
		return nil, err
	}
	if b.direct, err = conn.Channel(); err != nil {
		return nil, err
	}
	return b, nil
}

// publishing serializes the order and sets the properties the SDK sets.
func (b *bareAMQP) publishing() (amqp.Publishing, error) {
	body, err := proto.Marshal(order)
	return amqp.Publishing{
		ContentType:     "application/x-protobuf",
		ContentEncoding: "binary",
		DeliveryMode:    amqp.Persistent,
		Type:            "quickstart.v1.Shop.PlaceOrder",
		Body:            body,
	}, err
}

func (b *bareAMQP) publishConfirmed(ctx context.Context, n int) error {
	for range n {
		msg, err := b.publishing()
		if err != nil {
			return err
		}
		dc, err := b.confirmed.PublishWithDeferredConfirmWithContext(ctx, benchExchange, benchRoutingKey, false, false, msg)
		if err != nil {
			return err
		}
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			return fmt.Errorf("confirm: ack=%v err=%v", ok, err)
		}
	}
	return nil
}

func (b *bareAMQP) publishPipelined(ctx context.Context, n int) error {
	pending := make([]*amqp.DeferredConfirmation, 0, pipelineWindow)
	for sent := 0; sent < n; {
		pending = pending[:0]
		for ; sent < n && len(pending) < pipelineWindow; sent++ {
			msg, err := b.publishing()
			if err != nil {
				return err
			}
			dc, err := b.confirmed.PublishWithDeferredConfirmWithContext(ctx, benchExchange, benchRoutingKey, false, false, msg)
			if err != nil {
				return err
			}
			pending = append(pending, dc)
		}
		for _, dc := range pending {
			if ok, err := dc.WaitContext(ctx); err != nil || !ok {
				return fmt.Errorf("confirm: ack=%v err=%v", ok, err)
			}
		}
	}
	return nil
}

func (b *bareAMQP) publishUnconfirmed(ctx context.Context, n int) error {
	for range n {
		msg, err := b.publishing()
		if err != nil {
			return err
		}
		if err := b.direct.PublishWithContext(ctx, benchExchange, benchRoutingKey, false, false, msg); err != nil {
			return err
		}
	}
	return nil
}

func (b *bareAMQP) consume(ctx context.Context, n int) error {
	ch, err := b.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Qos(consumePrefetch, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, benchQueue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	for got := 0; got < n; got++ {
		d, ok := <-deliveries
		if !ok {
			return fmt.Errorf("deliveries closed after %d", got)
		}
		var m quickstartv1.OrderPlaced
		if err := proto.Unmarshal(d.Body, &m); err != nil {
			return err
		}
		if err := d.Ack(false); err != nil {
			return err
		}
	}
	return nil
}

func benchAMQP(ctx context.Context, cfg config) ([]row, error) {
	url := amqpURL()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	bare, err := newBareAMQP(url)
	if err != nil {
		return nil, err
	}
	defer bare.conn.Close()
	if err := quickstartv1.ShopTopology().Declare(ctx, conn); err != nil {
		return nil, err
	}
	purge := func() error {
		_, err := kombu.Queue{Name: benchQueue}.Purge(ctx, conn)
		return err
	}
	confirmed := quickstartv1.NewShopProducer(conn)
	unconfirmed := quickstartv1.NewShopProducer(conn, kombu.WithConfirms(false))
	n := cfg.n
	var rows []row

	add := func(workload string, setup, sdk, bareFn func() error, py float64) error {
		s, b, err := best(cfg.rounds, n, setup, sdk, bareFn)
		if err != nil {
			return fmt.Errorf("%s: %w", workload, err)
		}
		rows = append(rows, row{transport: "amqp", workload: workload, sdk: s, bare: b, python: py})
		return nil
	}

	pyConfirmed, pyUnconfirmed, pyConsume := 0.0, 0.0, 0.0
	if cfg.python {
		pyN := strconv.Itoa(cfg.pythonN)
		args := []string{url, benchExchange, benchRoutingKey, benchQueue, pyN}
		if err := purge(); err != nil {
			return nil, err
		}
		if pyConfirmed, err = pythonRate(append(args, "publish-confirmed")...); err != nil {
			return nil, err
		}
		if pyUnconfirmed, err = pythonRate(append(args, "publish-unconfirmed")...); err != nil {
			return nil, err
		}
		if err := purge(); err != nil {
			return nil, err
		}
		if err := bare.publishPipelined(ctx, cfg.pythonN); err != nil {
			return nil, err
		}
		if pyConsume, err = pythonRate(append(args, "consume")...); err != nil {
			return nil, err
		}
	}

	err = add("publish, confirmed one by one", purge,
		func() error {
			for range n {
				if err := confirmed.PlaceOrder(ctx, order); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return bare.publishConfirmed(ctx, n) }, pyConfirmed)
	if err != nil {
		return nil, err
	}

	err = add(fmt.Sprintf("publish, confirms pipelined (%d)", pipelineWindow), purge,
		func() error {
			var batch kombu.Batch
			inBatch := kombu.InBatch(&batch)
			for sent := 0; sent < n; {
				for ; sent < n && batch.Len() < pipelineWindow; sent++ {
					if err := confirmed.PlaceOrder(ctx, order, inBatch); err != nil {
						return err
					}
				}
				if err := batch.Send(ctx); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return bare.publishPipelined(ctx, n) }, pyConfirmed)
	if err != nil {
		return nil, err
	}
	rows[len(rows)-1].note = "the Python column is Kombu's confirmed publishing (it has no pipelined form)"

	err = add("publish, unconfirmed", purge,
		func() error {
			for range n {
				if err := unconfirmed.PlaceOrder(ctx, order); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return bare.publishUnconfirmed(ctx, n) }, pyUnconfirmed)
	if err != nil {
		return nil, err
	}

	fill := func() error {
		if err := purge(); err != nil {
			return err
		}
		return bare.publishPipelined(ctx, n)
	}
	err = add(fmt.Sprintf("consume, prefetch %d, ack each", consumePrefetch), fill,
		func() error { return sdkConsume(ctx, conn, n) },
		func() error { return bare.consume(ctx, n) }, pyConsume)
	if err != nil {
		return nil, err
	}
	return rows, purge()
}

// countingShop acks every order and signals when n have arrived.
type countingShop struct {
	quickstartv1.UnimplementedShopHandler
	n    int64
	seen atomic.Int64
	done chan struct{}
}

func (c *countingShop) PlaceOrder(context.Context, *quickstartv1.OrderPlaced, *kombu.Message) error {
	if c.seen.Add(1) == c.n {
		close(c.done)
	}
	return nil
}

func sdkConsume(ctx context.Context, conn *kombu.Connection, n int) error {
	h := &countingShop{n: int64(n), done: make(chan struct{})}
	consumer, err := quickstartv1.NewShopConsumer(conn, h, kombu.WithPrefetch(consumePrefetch))
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- consumer.Run(ctx) }()
	select {
	case <-h.done:
	case err := <-errc:
		return fmt.Errorf("consumer stopped after %d: %v", h.seen.Load(), err)
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("consumer stalled after %d", h.seen.Load())
	}
	if err := consumer.Close(); err != nil {
		return err
	}
	return <-errc
}
