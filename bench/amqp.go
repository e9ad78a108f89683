package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	kombubenchv1 "github.com/kombu-go/kombu/bench/gen/kombubench/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
)

// The sides take turns handling this many messages (see interleaved): a
// turn lasts some tens of milliseconds.
const (
	confirmedChunk   = 50
	unconfirmedChunk = 2000
	consumeChunk     = 1000
)

func amqpURL() string {
	if u := os.Getenv("KOMBU_TEST_AMQP_URL"); u != "" {
		return u
	}
	return brokertest.DefaultAMQPURL
}

// amqpPublisher is what a side publishing to RabbitMQ does in each
// workload.
type amqpPublisher interface {
	// waitQueued returns once the benchmark queue holds n messages, as
	// seen on the side's own connection.
	waitQueued(ctx context.Context, n int) error
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
		return nil, errors.Join(err, conn.Close())
	}
	if err := b.confirmed.Confirm(false); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	if b.direct, err = conn.Channel(); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return b, nil
}

// publishing serializes the order and sets the properties the SDK sets.
func (b *bareAMQP) publishing() (amqp.Publishing, error) {
	body, err := encode()
	return amqp.Publishing{
		ContentType:     "application/x-protobuf",
		ContentEncoding: "binary",
		DeliveryMode:    amqp.Persistent,
		Type:            messageType,
		Body:            body,
	}, err
}

func (b *bareAMQP) waitQueued(_ context.Context, n int) error {
	return waitDepth(b.confirmed, n)
}

// waitDepth returns once the benchmark queue holds at least n messages, as
// seen on ch.
func waitDepth(ch *amqp.Channel, n int) error {
	return poll(func() (int, error) {
		q, err := ch.QueueDeclarePassive(benchQueue, true, false, false, false, nil)
		return q.Messages, err
	}, n)
}

// publishConfirmed publishes one message at a time, each confirmed before
// the next is sent.
func (b *bareAMQP) publishConfirmed(ctx context.Context) run { return b.publishWindowed(ctx, 1) }

// publishPipelined publishes pipelineWindow messages, then waits for their
// confirms, and so on.
func (b *bareAMQP) publishPipelined(ctx context.Context) run {
	return b.publishWindowed(ctx, pipelineWindow)
}

func (b *bareAMQP) publishWindowed(ctx context.Context, window int) run {
	return func(count int) error {
		pending := make([]*amqp.DeferredConfirmation, 0, window)
		for sent := 0; sent < count; {
			pending = pending[:0]
			for ; sent < count && len(pending) < window; sent++ {
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
}

func (b *bareAMQP) publishUnconfirmed(ctx context.Context) run {
	return func(count int) error {
		for range count {
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
}

// consumer consumes the benchmark queue with the tuned prefetch, decoding
// and acking each message, held between turns. Closing its channel
// returns what it holds unacked to the queue.
func (b *bareAMQP) consumer(ctx context.Context, k kind) *held {
	return &held{name: k.String(), start: func(t *turn) (func() error, error) {
		ch, err := b.conn.Channel()
		if err != nil {
			return nil, err
		}
		if err := ch.Qos(tunedPrefetch, 0, false); err != nil {
			return nil, err
		}
		deliveries, err := ch.ConsumeWithContext(ctx, benchQueue, "", false, false, false, false, nil)
		if err != nil {
			return nil, err
		}
		ended := serve(t, deliveries,
			func(d amqp.Delivery) []byte { return d.Body },
			func(d amqp.Delivery) error { return d.Ack(false) }, nil)
		return func() error {
			t.stop()
			err := ch.Close()
			<-ended
			return err
		}, nil
	}}
}

// watermillAMQP is Watermill's side: watermill-amqp v3 on one connection,
// set up for the benchmark's topology (the durable topic exchange, the
// durable queue bound with "order.*") and for speed as its documentation
// advises: a pool of publishing channels (without one it opens a channel
// per Publish) and the tuned prefetch.
type watermillAMQP struct {
	conn                   *wmamqp.ConnectionWrapper
	confirmed, unconfirmed *wmamqp.Publisher
	subscriber             *wmamqp.Subscriber
	check                  *amqp.Channel // on Watermill's connection, for waitQueued
}

func newWatermillAMQP(url string) (*watermillAMQP, error) {
	config := func(confirm bool) wmamqp.Config {
		c := wmamqp.NewDurableTopicConfig(url, benchExchange, benchQueue)
		c.Exchange.Durable = true // as the SDK declares it
		c.QueueBind.GenerateRoutingKey = func(string) string { return benchBinding }
		c.Publish.ChannelPoolSize = 1
		c.Publish.ConfirmDelivery = confirm
		c.Consume.Qos.PrefetchCount = tunedPrefetch
		return c
	}
	logger := watermill.NopLogger{}
	conn, err := wmamqp.NewConnection(wmamqp.ConnectionConfig{AmqpURI: url}, logger)
	if err != nil {
		return nil, err
	}
	w := &watermillAMQP{conn: conn}
	if w.confirmed, err = wmamqp.NewPublisherWithConnection(config(true), logger, conn); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	if w.unconfirmed, err = wmamqp.NewPublisherWithConnection(config(false), logger, conn); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	if w.subscriber, err = wmamqp.NewSubscriberWithConnection(config(true), logger, conn); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	if w.check, err = conn.Connection().Channel(); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return w, nil
}

func (w *watermillAMQP) close() error {
	return errors.Join(w.confirmed.Close(), w.unconfirmed.Close(), w.subscriber.Close(), w.conn.Close())
}

func (w *watermillAMQP) waitQueued(_ context.Context, n int) error { return waitDepth(w.check, n) }

// publish publishes one message at a time with p.
func (w *watermillAMQP) publish(p *wmamqp.Publisher) run {
	return func(count int) error {
		for range count {
			body, err := encode()
			if err != nil {
				return err
			}
			if err := p.Publish(benchRoutingKey, message.NewMessage(watermill.NewUUID(), body)); err != nil {
				return err
			}
		}
		return nil
	}
}

// consumer subscribes to the benchmark queue, decoding and acking each
// message, held between turns.
func (w *watermillAMQP) consumer(ctx context.Context) *held {
	return &held{name: viaWatermill.String(), start: func(t *turn) (func() error, error) {
		subCtx, cancel := context.WithCancel(ctx)
		msgs, err := w.subscriber.Subscribe(subCtx, benchRoutingKey)
		if err != nil {
			cancel()
			return nil, err
		}
		// Once the round is over, what arrives goes back to the queue,
		// until Watermill notices the cancelled context and closes msgs:
		// left unread, it would wait for this reader for good, holding its
		// prefetched messages.
		ended := serve(t, msgs, payloadOf, ack, func(m *message.Message) { m.Nack() })
		// Cancelling the subscription closes its AMQP channel, which
		// returns what it holds unacked to the queue.
		return func() error { t.stop(); cancel(); <-ended; return nil }, nil
	}}
}

func benchAMQP(ctx context.Context, tab *table) error {
	url, n := amqpURL(), tab.cfg.n
	defaults, tuned, err := dialSides(ctx, url, url)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	unconfirmed := kombubenchv1.NewBenchProducer(tuned.conn, kombu.WithConfirms(false))
	var b *bareAMQP
	as(bare.String(), func() { b, err = newBareAMQP(url) })
	if err != nil {
		return err
	}
	defer b.conn.Close()
	var wm *watermillAMQP
	as(viaWatermill.String(), func() { wm, err = newWatermillAMQP(url) })
	if err != nil {
		return err
	}
	defer wm.close()
	// -calibrate: a second bare client, on a connection of its own as
	// every side has; it joins every workload.
	var twin *bareAMQP
	if calibrate {
		as(bareTwin.String(), func() { twin, err = newBareAMQP(url) })
		if err != nil {
			return err
		}
		defer twin.conn.Close()
	}
	withTwin := func(sides []side, twinRun func(*bareAMQP) run) []side {
		if twin != nil {
			sides = append(sides, side{bareTwin, "amqp091-go", twinRun(twin)})
		}
		return sides
	}
	purge := func() error { return defaults.purge(ctx) }
	prepare := func(int) error { return purge() }
	python := func(workload string, prepare func(int) error) func(int) (pythonResult, error) {
		return pythonSide(url, workload, "", prepare)
	}

	err = tab.add(workload{
		name: "publish, confirmed one by one", chunk: confirmedChunk, setup: only(purge),
		sides: withTwin([]side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "amqp091-go", b.publishConfirmed(ctx)},
			{viaWatermill, "confirmed, channel pool", wm.publish(wm.confirmed)},
		}, func(b *bareAMQP) run { return b.publishConfirmed(ctx) }),
		python:  python("publish-confirmed", prepare),
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}

	err = tab.add(workload{
		name: fmt.Sprintf("publish, confirms pipelined (%d)", pipelineWindow), chunk: pipelineWindow, setup: only(purge),
		sides: withTwin([]side{
			{sdkTuned, "kombu.Batch", publishBatched(ctx, tuned.producer)},
			{bare, "amqp091-go", b.publishPipelined(ctx)},
		}, func(b *bareAMQP) run { return b.publishPipelined(ctx) }),
		python:  python("publish-confirmed", prepare),
		targets: []target{{who: sdkTuned, minVsBare: 0.9}},
		note:    "Python Kombu has no pipelined form: its row is confirmed publishing; Watermill waits for each confirm before the next publish",
	})
	if err != nil {
		return err
	}

	if err := addPoolWorkload(ctx, tab, "publish, confirmed", url, defaults.conn, poolGoroutines*confirmedChunk, 0, purge); err != nil {
		return err
	}

	// Unconfirmed publishing returns as soon as a message is written; the
	// broker takes it in afterwards, and throttles a connection that
	// writes faster than that (credit flow). So a turn lasts until the
	// broker has queued the turn's messages: otherwise a turn would leave
	// a backlog, and a throttled connection, to the next, and the sides
	// would be timed on each other's account.
	queued := 0 // messages published since the queue was last purged
	untilQueued := func(side amqpPublisher, publish run) run {
		return func(count int) error {
			if err := publish(count); err != nil {
				return err
			}
			queued += count
			return side.waitQueued(ctx, queued)
		}
	}
	err = tab.add(workload{
		name: "publish, unconfirmed (until queued)", chunk: unconfirmedChunk,
		setup: only(func() error { queued = 0; return purge() }),
		sides: withTwin([]side{
			{sdkTuned, "WithConfirms(false)", untilQueued(tuned, publishEach(ctx, unconfirmed))},
			{bare, "amqp091-go", untilQueued(b, b.publishUnconfirmed(ctx))},
			{viaWatermill, "channel pool", untilQueued(wm, wm.publish(wm.unconfirmed))},
		}, func(b *bareAMQP) run { return untilQueued(b, b.publishUnconfirmed(ctx)) }),
		python:  python("publish-unconfirmed", prepare),
		targets: []target{{who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}

	// Consume: each round fills the queue (not timed); then the consumers,
	// all on the queue and held between their turns (see turn), take
	// turns. A held consumer keeps its prefetch window full, so the one
	// whose turn it is gets every message the broker sends.
	consumers := []*held{
		sdkConsumer(ctx, sdkDefaults, defaults.conn),
		sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch)),
		b.consumer(ctx, bare),
		wm.consumer(ctx),
	}
	if twin != nil {
		consumers = append(consumers, twin.consumer(ctx, bareTwin))
	}
	sides := []side{
		{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
		{sdkTuned, "prefetch 100", defaults.explained(ctx, consumers[1].take)},
		{bare, "amqp091-go, prefetch 100", defaults.explained(ctx, consumers[2].take)},
		{viaWatermill, "prefetch 100", defaults.explained(ctx, consumers[3].take)},
	}
	if twin != nil {
		sides = append(sides, side{bareTwin, "amqp091-go, prefetch 100", defaults.explained(ctx, consumers[4].take)})
	}
	err = tab.add(workload{
		name: "consume, ack each", chunk: consumeChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			// Every side's turns and warm-up turn, and every window.
			if err := b.publishPipelined(ctx)(len(sides)*(n+consumeChunk+tunedPrefetch) + pipelineWindow); err != nil {
				return nil, err
			}
			return beginAll(consumers...)
		},
		sides: sides,
		python: python("consume", func(n int) error {
			return errors.Join(purge(), b.publishPipelined(ctx)(n))
		}),
		targets: []target{{who: sdkDefaults, minVsBare: 0.9}, {who: sdkTuned, minVsBare: 0.9}},
	})
	if err != nil {
		return err
	}
	if err := benchCelery(ctx, tab, url); err != nil {
		return fmt.Errorf("celery: %w", err)
	}
	return defaults.remove(ctx)
}
