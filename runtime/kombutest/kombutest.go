// Package kombutest helps test code that uses kombu-go, in the spirit of
// net/http/httptest: each test gets an in-process broker of its own, and a
// Recorder shows what a producer published.
//
// A test of a handler that publishes, with the code protoc-gen-kombu
// generates for examples/quickstart (a Shop service whose PlaceOrder handler
// here ships a parcel with the ShipParcel route):
//
//	func TestOrderShipsItsParcel(t *testing.T) {
//		conn := kombutest.Dial(t) // a broker of this test's own, gone when it ends
//		shop := quickstartv1.ShopTopology().Exchanges[0]
//		parcels, err := kombutest.NewRecorder(t.Context(), conn, shop, "parcel.#")
//		if err != nil {
//			t.Fatal(err)
//		}
//		consumer, err := quickstartv1.NewShopConsumer(conn, warehouse{shop: quickstartv1.NewShopProducer(conn)})
//		if err != nil {
//			t.Fatal(err)
//		}
//		kombutest.Run(t, consumer) // stopped when the test ends
//
//		err = quickstartv1.NewShopProducer(conn).PlaceOrder(t.Context(), &quickstartv1.OrderPlaced{OrderId: "o-1"})
//		if err != nil {
//			t.Fatal(err)
//		}
//		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
//		defer cancel()
//		parcel, err := kombutest.NextAs[quickstartv1.ParcelShipped](ctx, parcels)
//		if err != nil {
//			t.Fatal(err) // names the exchange and key, and says the wait ran out
//		}
//		if parcel.OrderId != "o-1" {
//			t.Errorf("shipped %v, want the parcel of order o-1", parcel)
//		}
//	}
//
// The in-process broker routes as RabbitMQ does (direct, topic, fanout and
// headers exchanges, TTL, priorities, dead-lettering), so what a test sees
// is what a real broker would do with the same topology.
package kombutest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/transports/memory"
)

// Dial connects to a new in-process broker that belongs to the test: its
// URL, memory:///kombutest/<test name>/<random>, names no other test's
// broker, so tests run in parallel (and again with -count) never see each
// other's messages. When the test ends the connection is closed and the
// broker forgotten. conn.URL() dials a second connection to the same
// broker, for a test that wants one.
func Dial(t testing.TB, opts ...kombu.DialOption) *kombu.Connection {
	t.Helper()
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	name := "kombutest/" + unsafeInURL.ReplaceAllString(t.Name(), "_") + "/" + hex.EncodeToString(suffix[:])
	conn, err := kombu.Dial(context.Background(), "memory:///"+name, opts...)
	if err != nil {
		t.Fatalf("kombutest: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		memory.Discard(name)
	})
	return conn
}

// unsafeInURL matches what a test name may hold that a URL path may not.
var unsafeInURL = regexp.MustCompile(`[^A-Za-z0-9_.\-/]+`)

// Run runs the consumer until the test ends, then stops it gracefully (as
// Close does) and fails the test if Run ended with an error: a queue the
// consumer read was deleted, or its connection was closed under it.
func Run(t testing.TB, c *kombu.Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kombutest: the consumer stopped: %v", err)
		}
	})
}

// Recorder records the messages routed to a queue of its own, bound to an
// exchange with a binding key: what a producer published there, for a test
// to read.
type Recorder struct {
	conn     *kombu.Connection
	consumer *kombu.Consumer
	what     string // "exchange shop, binding key parcel.#", for errors
	runErr   chan error

	mu       sync.Mutex
	messages []*kombu.Message
	next     int           // the first message Next has not returned
	added    chan struct{} // closed, and replaced, when a message is recorded
	stopped  error         // why recording stopped; nil while it runs
}

// NewRecorder declares the exchange ex (as it is: a declaration that
// conflicts with the broker's fails), binds a server-named queue of the
// recorder's own to it with bindingKey, and records every message routed
// there from then on, acknowledged and in order, until Close or until conn
// closes. Messages of any content type are recorded; NextAs (like
// Message.Decode) decodes those of kombu-go's built-in serializers (json,
// protobuf, msgpack, yaml, text, raw) and refuses others with
// kombu.ErrContentDisallowed: a test reads their Body.
//
// The binding key is matched as the exchange's type says: exactly on a
// direct exchange, as a pattern ("parcel.#") on a topic exchange, not at
// all on a fanout exchange.
func NewRecorder(ctx context.Context, conn *kombu.Connection, ex kombu.Exchange, bindingKey string) (*Recorder, error) {
	r := &Recorder{
		conn:   conn,
		what:   fmt.Sprintf("exchange %q with binding key %q", ex.Name, bindingKey),
		runErr: make(chan error, 1),
		added:  make(chan struct{}),
	}
	queue := kombu.Queue{Exclusive: true, AutoDelete: true, Bindings: []kombu.Binding{{Exchange: ex.Name, RoutingKey: bindingKey}}}
	if err := (kombu.Topology{Exchanges: []kombu.Exchange{ex}}).Declare(ctx, conn); err != nil {
		return nil, fmt.Errorf("kombutest: recorder for %s: %w", r.what, err)
	}
	consumer, err := kombu.NewConsumer(conn,
		[]kombu.Subscription{{Queue: queue, Handler: kombu.HandlerFunc(func(_ context.Context, msg *kombu.Message) error {
			r.record(msg)
			return nil
		})}},
		kombu.WithAccept(kombu.ContentTypeJSON, kombu.ContentTypeProtobuf, kombu.ContentTypeMsgpack, kombu.ContentTypeYAML, kombu.ContentTypeText),
		// A message the handler cannot get (a content type outside the
		// list, a body that does not decompress) is recorded all the same:
		// its Decode says what is wrong with it.
		kombu.WithDecodeErrorHandler(func(msg *kombu.Message, _ error) {
			r.record(msg)
			_ = msg.Ack()
		}))
	if err != nil {
		return nil, fmt.Errorf("kombutest: recorder for %s: %w", r.what, err)
	}
	r.consumer = consumer
	go func() {
		err := consumer.Run(context.Background())
		if err == nil {
			err = kombu.ErrClosed
		}
		r.stop(err)
		r.runErr <- err
	}()
	return r, nil
}

func (r *Recorder) record(msg *kombu.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, msg)
	close(r.added)
	r.added = make(chan struct{})
}

func (r *Recorder) stop(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = err
	close(r.added)
	r.added = make(chan struct{})
}

// Next returns the next recorded message that Next has not returned yet,
// waiting for one until ctx ends. Its error then names the exchange and
// binding key, says how many messages were recorded, and wraps ctx's
// error; after Close, or once the connection closed, it wraps
// kombu.ErrClosed.
func (r *Recorder) Next(ctx context.Context) (*kombu.Message, error) {
	for {
		r.mu.Lock()
		if r.next < len(r.messages) {
			msg := r.messages[r.next]
			r.next++
			r.mu.Unlock()
			return msg, nil
		}
		added, stopped, n := r.added, r.stopped, len(r.messages)
		r.mu.Unlock()
		if stopped != nil {
			return nil, fmt.Errorf("kombutest: no further message routed from %s (%d recorded): recording stopped: %w", r.what, n, stopped)
		}
		select {
		case <-added:
		case <-ctx.Done():
			return nil, fmt.Errorf("kombutest: no further message routed from %s (%d recorded): %w", r.what, n, ctx.Err())
		}
	}
}

// NextAs returns the body of the recorder's next message decoded into a
// new T (a generated proto message type, or anything its serializer
// decodes into), waiting for it as Next does.
func NextAs[T any](ctx context.Context, r *Recorder) (*T, error) {
	msg, err := r.Next(ctx)
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := msg.Decode(v); err != nil {
		return nil, fmt.Errorf("kombutest: message routed from %s: %w", r.what, err)
	}
	return v, nil
}

// Messages returns every message recorded so far, in the order they
// arrived, whether Next has returned them or not.
func (r *Recorder) Messages() []*kombu.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.messages)
}

// Close stops recording and deletes the recorder's queue. Messages
// recorded stay readable with Next and Messages.
func (r *Recorder) Close() error {
	queues := r.consumer.Queues()
	r.consumer.Close()
	if err := <-r.runErr; err != nil && !errors.Is(err, kombu.ErrClosed) {
		return err
	}
	r.runErr <- kombu.ErrClosed // a second Close finds it too
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, q := range queues {
		if _, err := (kombu.Queue{Name: q}).Delete(ctx, r.conn); err != nil && !errors.Is(err, kombu.ErrNotFound) && !errors.Is(err, kombu.ErrClosed) {
			return err
		}
	}
	return nil
}
