package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	// The sides take turns handling this many messages (see interleaved):
	// a turn lasts some tens of milliseconds.
	confirmedChunk   = 50
	unconfirmedChunk = 2000
	consumeChunk     = 1000
	consumePrefetch  = 100
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

// amqpSide is what a side of the comparison does in each workload.
type amqpSide interface {
	publishConfirmed(ctx context.Context, n int) error
	publishPipelined(ctx context.Context, n int) error
	publishUnconfirmed(ctx context.Context, n int) error
	// waitQueued returns once the benchmark queue holds n messages, as
	// seen on the side's own connection.
	waitQueued(ctx context.Context, n int) error
	startConsumer(ctx context.Context, t *turn) (stop func() error, err error)
}

// sdkAMQP is the SDK's side: the quickstart's generated stubs.
type sdkAMQP struct {
	conn                   *kombu.Connection
	confirmed, unconfirmed *quickstartv1.ShopProducer
}

func (s *sdkAMQP) publishConfirmed(ctx context.Context, n int) error {
	for range n {
		if err := s.confirmed.PlaceOrder(ctx, order); err != nil {
			return err
		}
	}
	return nil
}

func (s *sdkAMQP) publishPipelined(ctx context.Context, n int) error {
	var batch kombu.Batch
	inBatch := kombu.InBatch(&batch)
	for sent := 0; sent < n; {
		for ; sent < n && batch.Len() < pipelineWindow; sent++ {
			if err := s.confirmed.PlaceOrder(ctx, order, inBatch); err != nil {
				return err
			}
		}
		if err := batch.Send(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s *sdkAMQP) publishUnconfirmed(ctx context.Context, n int) error {
	for range n {
		if err := s.unconfirmed.PlaceOrder(ctx, order); err != nil {
			return err
		}
	}
	return nil
}

func (s *sdkAMQP) waitQueued(ctx context.Context, n int) error {
	return poll(func() (int, error) {
		info, err := kombu.Queue{Name: benchQueue}.Inspect(ctx, s.conn)
		return info.Messages, err
	}, n)
}

func (s *sdkAMQP) startConsumer(ctx context.Context, t *turn) (stop func() error, err error) {
	return startSDKConsumer(ctx, s.conn, t)
}

// poll returns once depth reports at least n messages.
func poll(depth func() (int, error), n int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		d, err := depth()
		if err != nil {
			return err
		}
		if d >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the queue holds %d messages of %d published", d, n)
		}
		time.Sleep(200 * time.Microsecond) // not to load the broker with questions
	}
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

func (b *bareAMQP) waitQueued(_ context.Context, n int) error {
	return poll(func() (int, error) {
		q, err := b.confirmed.QueueDeclarePassive(benchQueue, true, false, false, false, nil)
		return q.Messages, err
	}, n)
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

// startConsumer consumes the benchmark queue with the benchmark's
// prefetch, unmarshalling and acking each message, held by t. stop ends it;
// closing the channel returns what it holds unacked to the queue.
func (b *bareAMQP) startConsumer(ctx context.Context, t *turn) (stop func() error, err error) {
	ch, err := b.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(consumePrefetch, 0, false); err != nil {
		return nil, err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, benchQueue, "", false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for d := range deliveries {
			if !t.wait() {
				return
			}
			var m quickstartv1.OrderPlaced
			if err := proto.Unmarshal(d.Body, &m); err != nil {
				t.fail(err)
				return
			}
			if err := d.Ack(false); err != nil {
				t.fail(err)
				return
			}
			t.handled()
		}
		t.fail(errors.New("deliveries closed"))
	}()
	return func() error {
		t.stop()
		err := ch.Close()
		<-ended
		return err
	}, nil
}

func benchAMQP(ctx context.Context, cfg config) ([]row, error) {
	url := amqpURL()
	// The sides' goroutines carry a profiler label (see as), from their
	// connections' own goroutines on.
	var conn *kombu.Connection
	var err error
	as("sdk", func() { conn, err = kombu.Dial(ctx, url) })
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var bare *bareAMQP
	as("bare", func() { bare, err = newBareAMQP(url) })
	if err != nil {
		return nil, err
	}
	defer bare.conn.Close()
	if err := quickstartv1.ShopTopology().Declare(ctx, conn); err != nil {
		return nil, err
	}
	var sdk amqpSide = &sdkAMQP{
		conn:        conn,
		confirmed:   quickstartv1.NewShopProducer(conn),
		unconfirmed: quickstartv1.NewShopProducer(conn, kombu.WithConfirms(false)),
	}
	if calibrate {
		// The SDK's turns go to a second bare client, on a connection of
		// its own as the SDK has.
		var twin *bareAMQP
		as("sdk", func() { twin, err = newBareAMQP(url) })
		if err != nil {
			return nil, err
		}
		defer twin.conn.Close()
		sdk = twin
	}
	purge := func() error {
		_, err := kombu.Queue{Name: benchQueue}.Purge(ctx, conn)
		return err
	}
	n := cfg.n
	tab := &table{cfg: cfg, transport: "amqp"}
	var sdkTurn, bareTurn *turn // the consumers' turns in the round being measured

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
		if err := purge(); err != nil { // it waits for the queue to hold what it sent
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

	err = tab.add("publish, confirmed one by one", confirmedChunk, only(purge),
		func(count int) error { return sdk.publishConfirmed(ctx, count) },
		func(count int) error { return bare.publishConfirmed(ctx, count) }, pyConfirmed)
	if err != nil {
		return nil, err
	}

	err = tab.add(fmt.Sprintf("publish, confirms pipelined (%d)", pipelineWindow), pipelineWindow, only(purge),
		func(count int) error { return sdk.publishPipelined(ctx, count) },
		func(count int) error { return bare.publishPipelined(ctx, count) }, pyConfirmed)
	if err != nil {
		return nil, err
	}
	if last := len(tab.rows) - 1; last >= 0 && strings.HasPrefix(tab.rows[last].workload, "publish, confirms pipelined") {
		tab.rows[last].note = "the Python column is Kombu's confirmed publishing (it has no pipelined form)"
	}

	// Unconfirmed publishing returns as soon as a message is written; the
	// broker takes it in afterwards, and throttles a connection that
	// writes faster than that (credit flow). So a turn lasts until the
	// broker has queued the turn's messages: otherwise a turn would leave
	// a backlog, and a throttled connection, to the next, and the sides
	// would be timed on each other's account.
	queued := 0 // messages published since the queue was last purged
	unconfirmedTurn := func(side amqpSide) run {
		return func(count int) error {
			if err := side.publishUnconfirmed(ctx, count); err != nil {
				return err
			}
			queued += count
			return side.waitQueued(ctx, queued)
		}
	}
	err = tab.add("publish, unconfirmed", unconfirmedChunk,
		only(func() error { queued = 0; return purge() }),
		unconfirmedTurn(sdk), unconfirmedTurn(bare), pyUnconfirmed)
	if err != nil {
		return nil, err
	}

	// Consume: each round fills the queue (not timed), then the SDK's
	// generated consumer and a bare consumer, both on the queue with the
	// same prefetch, take turns (see turn).
	consume := func() (func() error, error) {
		if err := purge(); err != nil {
			return nil, err
		}
		if err := bare.publishPipelined(ctx, 2*(n+consumeChunk+consumePrefetch)); err != nil {
			return nil, err
		}
		sdkTurn, bareTurn = newTurn(), newTurn()
		var stopSDK, stopBare func() error
		var err error
		as("sdk", func() { stopSDK, err = sdk.startConsumer(ctx, sdkTurn) })
		if err != nil {
			return nil, err
		}
		as("bare", func() { stopBare, err = bare.startConsumer(ctx, bareTurn) })
		if err != nil {
			return nil, errors.Join(err, stopSDK())
		}
		return func() error { return errors.Join(stopSDK(), stopBare()) }, nil
	}
	err = tab.add(fmt.Sprintf("consume, prefetch %d, ack each", consumePrefetch), consumeChunk, consume,
		func(count int) error { return sdkTurn.take(count) },
		func(count int) error { return bareTurn.take(count) }, pyConsume)
	if err != nil {
		return nil, err
	}
	return tab.rows, purge()
}
