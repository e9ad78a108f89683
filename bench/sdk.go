package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	kombubenchv1 "github.com/kombu-go/kombu/bench/gen/kombubench/v1"
	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/payload"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Every workload sends the same message: the quickstart's OrderPlaced,
// 100 bytes of protobuf, through the generated BenchProducer of
// proto/kombubench/v1/bench.proto (exchange "kombu-go-bench", routing key
// "order.placed", queue "kombu-go-bench.orders": the quickstart's route
// under names no test uses), and consumes it with the generated
// NewBenchConsumer. The bare clients and Watermill send the same bytes,
// and their consumers decode them as the SDK's do. Two make bench at once
// on one broker would share the names: run one at a time.
const (
	benchExchange   = "kombu-go-bench"
	benchRoutingKey = "order.placed"
	benchBinding    = "order.*"
	benchQueue      = "kombu-go-bench.orders"
	messageType     = "kombubench.v1.Bench.PlaceOrder"
	pipelineWindow  = 1000 // messages per batch of pipelined publishes, every side
	tunedPrefetch   = 100  // the tuned consumers' prefetch, and the bare clients'
)

var order = payload.Order()

// encode serializes the order, as every side does for each message it
// publishes.
func encode() ([]byte, error) { return proto.Marshal(order) }

// decode deserializes a body into a new order, as every consumer does.
func decode(body []byte) error { return proto.Unmarshal(body, new(quickstartv1.OrderPlaced)) }

// sdk is one SDK side's connection: each side has its own, as each bare
// client has.
type sdk struct {
	conn     *kombu.Connection
	producer *kombubenchv1.BenchProducer // created with no options
}

// dialSDK connects a side and declares the benchmark's topology.
func dialSDK(ctx context.Context, k kind, url string) (*sdk, error) {
	var conn *kombu.Connection
	var err error
	as(k.String(), func() { conn, err = kombu.Dial(ctx, url) })
	if err != nil {
		return nil, err
	}
	if err := kombubenchv1.BenchTopology().Declare(ctx, conn); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return &sdk{conn: conn, producer: kombubenchv1.NewBenchProducer(conn)}, nil
}

// dialSides connects the SDK's two sides: at its defaults, and tuned. The
// caller closes both.
func dialSides(ctx context.Context, defaultsURL, tunedURL string) (defaults, tuned *sdk, err error) {
	if defaults, err = dialSDK(ctx, sdkDefaults, defaultsURL); err != nil {
		return nil, nil, err
	}
	if tuned, err = dialSDK(ctx, sdkTuned, tunedURL); err != nil {
		return nil, nil, errors.Join(err, defaults.conn.Close())
	}
	return defaults, tuned, nil
}

// purge empties the benchmark queue.
func (s *sdk) purge(ctx context.Context) error {
	_, err := kombu.Queue{Name: benchQueue}.Purge(ctx, s.conn)
	return err
}

// remove deletes the benchmark's queue and exchange: a run leaves nothing
// on the broker.
func (s *sdk) remove(ctx context.Context) error {
	_, err := kombu.Queue{Name: benchQueue}.Delete(ctx, s.conn)
	return errors.Join(err, kombubenchv1.BenchTopology().Exchanges[0].Delete(ctx, s.conn))
}

// depth returns how many messages the benchmark queue holds.
func (s *sdk) depth(ctx context.Context) (int, error) {
	info, err := kombu.Queue{Name: benchQueue}.Inspect(ctx, s.conn)
	return info.Messages, err
}

// explained adds the benchmark queue's depth to the error of a side's
// turn: a consumer that stalls with messages still queued is another
// problem than one that ran out of them.
func (s *sdk) explained(ctx context.Context, r run) run {
	return func(count int) error {
		err := r(count)
		if err != nil {
			if d, derr := s.depth(ctx); derr == nil {
				err = fmt.Errorf("%w (the queue holds %d ready messages)", err, d)
			}
		}
		return err
	}
}

// waitQueued returns once the benchmark queue holds n messages, as seen
// on the side's connection.
func (s *sdk) waitQueued(ctx context.Context, n int) error {
	return poll(func() (int, error) { return s.depth(ctx) }, n)
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

// publishEach publishes one message at a time with p.
func publishEach(ctx context.Context, p *kombubenchv1.BenchProducer) run {
	return func(count int) error {
		for range count {
			if err := p.PlaceOrder(ctx, order); err != nil {
				return err
			}
		}
		return nil
	}
}

// publishBatched publishes with p in batches of pipelineWindow, each sent
// at once (and confirmed at once where the transport confirms).
func publishBatched(ctx context.Context, p *kombubenchv1.BenchProducer) run {
	return func(count int) error {
		var batch kombu.Batch
		inBatch := kombu.InBatch(&batch)
		for sent := 0; sent < count; {
			for ; sent < count && batch.Len() < pipelineWindow; sent++ {
				if err := p.PlaceOrder(ctx, order, inBatch); err != nil {
					return err
				}
			}
			if err := batch.Send(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// flow is a turn of a workload where one producer publishes while one
// consumer, held between turns, takes what it publishes.
func flow(consumer *held, publish run) run {
	return func(count int) error {
		wait := consumer.t.begin(count)
		if err := publish(count); err != nil {
			return err
		}
		return wait()
	}
}

// orderEnvelope is what a virtual transport stores for one order: Kombu's
// envelope around the order's encoded body (returned too), with the given
// content encoding and a delivery tag of its own. The bare twins send it
// in place of the body, to show what the wire format costs.
func orderEnvelope(contentEncoding string) (body, envelope []byte, err error) {
	body, err = encode()
	if err != nil {
		return nil, nil, err
	}
	p := &transport.Publishing{Exchange: benchExchange, RoutingKey: benchRoutingKey, Body: body}
	p.ContentType, p.ContentEncoding, p.Type = "application/x-protobuf", contentEncoding, messageType
	head, err := virtual.AppendEnvelopeHead(nil, p)
	if err != nil {
		return nil, nil, err
	}
	return body, virtual.AppendEnvelopeTail(head, virtual.NewDeliveryTag()), nil
}
