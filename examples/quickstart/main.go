// Command quickstart publishes a few typed messages through the topic
// exchange declared in quickstart.proto and handles them with the generated
// consumer.
//
// It runs on the in-process broker by default, and on any broker named by
// KOMBU_URL:
//
//	go run ./examples/quickstart
//	KOMBU_URL=amqp://guest:guest@127.0.0.1:5672// go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"  // KOMBU_URL=amqp://...
	_ "github.com/kombu-go/kombu/transports/redis" // KOMBU_URL=redis://...
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := os.Getenv("KOMBU_URL")
	if url == "" {
		url = "memory://"
	}
	if err := run(ctx, url, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, url string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out = &syncWriter{w: out} // handlers print from the consumer's goroutines

	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(out, "connected to %s\n", conn.URL())

	orders := []*quickstartv1.OrderPlaced{
		{OrderId: "A-1001", Customer: "ada", AmountCents: 1250, Items: []string{"tea", "mug"}},
		{OrderId: "A-1002", Customer: "grace", AmountCents: 4999, Items: []string{"kettle"}},
		{OrderId: "A-1003", Customer: "linus", AmountCents: 300, Items: []string{"biscuits"}},
	}
	parcels := []*quickstartv1.ParcelShipped{
		{OrderId: "A-1001", Carrier: "dhl", TrackingNumber: "JD0001"},
		{OrderId: "A-1002", Carrier: "ups", TrackingNumber: "1Z0002"},
	}

	// The consumer declares the exchange, both queues and their bindings
	// before it returns, so nothing published after this is lost.
	h := &shop{out: out, pending: map[string]bool{}}
	for _, o := range orders {
		h.pending["order "+o.OrderId] = true
	}
	for _, p := range parcels {
		h.pending["parcel "+p.OrderId] = true
	}
	h.wg.Add(len(h.pending))
	consumer, err := quickstartv1.NewShopConsumer(conn, h)
	if err != nil {
		return err
	}
	consumed := make(chan error, 1)
	go func() { consumed <- consumer.Run(ctx) }()

	producer := quickstartv1.NewShopProducer(conn)
	for _, o := range orders {
		if err := producer.PlaceOrder(ctx, o); err != nil {
			return err
		}
		fmt.Fprintf(out, "published order %s\n", o.OrderId)
	}
	for _, p := range parcels {
		if err := producer.ShipParcel(ctx, p); err != nil {
			return err
		}
		fmt.Fprintf(out, "published parcel for %s\n", p.OrderId)
	}

	// Wait until every message is handled, then shut the consumer down.
	handled := make(chan struct{})
	go func() { h.wg.Wait(); close(handled) }()
	select {
	case <-handled:
	case <-ctx.Done():
		return fmt.Errorf("waiting for messages: %w", ctx.Err())
	}
	if err := consumer.Close(); err != nil {
		return err
	}
	if err := <-consumed; err != nil {
		return err
	}
	fmt.Fprintln(out, "all messages handled")
	return nil
}

// shop implements the generated quickstartv1.ShopHandler. Returning nil acks
// a message; returning an error rejects it.
type shop struct {
	quickstartv1.UnimplementedShopHandler // forward compatibility with new routes

	out     io.Writer
	mu      sync.Mutex
	pending map[string]bool // messages this run published and has not yet handled
	wg      sync.WaitGroup
}

func (s *shop) PlaceOrder(ctx context.Context, m *quickstartv1.OrderPlaced, msg *kombu.Message) error {
	s.report(fmt.Sprintf("order %s", m.OrderId), fmt.Sprintf("%s ordered %v for $%d.%02d (routing key %s, %s)",
		m.Customer, m.Items, m.AmountCents/100, m.AmountCents%100, msg.DeliveryInfo.RoutingKey, msg.Properties.ContentType))
	return nil
}

func (s *shop) ShipParcel(ctx context.Context, m *quickstartv1.ParcelShipped, msg *kombu.Message) error {
	s.report(fmt.Sprintf("parcel %s", m.OrderId), fmt.Sprintf("%s tracking %s (routing key %s, %s)",
		m.Carrier, m.TrackingNumber, msg.DeliveryInfo.RoutingKey, msg.Properties.ContentType))
	return nil
}

// report prints a handled message. On a shared broker a message left over
// from an earlier run may arrive too; it is printed but not counted.
func (s *shop) report(key, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "handled %s: %s\n", key, detail)
	if s.pending[key] {
		delete(s.pending, key)
		s.wg.Done()
	}
}

// syncWriter serializes writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
