// Command pricing asks a pricing service for quotes over request/reply: one
// answered, one the service refuses, and one that misses its deadline, at
// which the service stops working on it too.
//
//	go run ./examples/pricing                # in-process broker
//	KOMBU_URL=amqp://guest:guest@127.0.0.1:5672// go run ./examples/pricing
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	pricingv1 "github.com/kombu-go/kombu/gen/examples/pricing/v1"
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

// prices is the pricing service's catalogue, in cents.
var prices = map[string]int64{"tea": 450, "mug": 800, "kettle": 4999}

// pricer is the service. "slow" baskets take longer than callers wait.
type pricer struct {
	pricingv1.UnimplementedPricingHandler
	gaveUp chan error // why the service stopped pricing a slow basket
}

func (p pricer) Quote(ctx context.Context, q *pricingv1.QuoteRequest, msg *kombu.Message) (*pricingv1.QuoteReply, error) {
	var total int64
	for _, sku := range q.Skus {
		if sku == "slow" {
			// ctx ends at the caller's deadline, which travels with the
			// request: past it nobody waits for the answer.
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				p.gaveUp <- ctx.Err()
				return nil, ctx.Err()
			}
			continue
		}
		p, ok := prices[sku]
		if !ok {
			return nil, fmt.Errorf("unknown sku %q", sku) // reaches the caller as a *kombu.RemoteError
		}
		total += p
	}
	return &pricingv1.QuoteReply{TotalCents: total}, nil
}

func run(ctx context.Context, url string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()

	p := pricer{gaveUp: make(chan error, 1)}
	service, err := pricingv1.NewPricingConsumer(conn, p)
	if err != nil {
		return err
	}
	go service.Run(ctx)
	defer service.Close()

	client := pricingv1.NewPricingProducer(conn)
	for _, basket := range [][]string{{"tea", "mug"}, {"tea", "caviar"}, {"kettle", "slow"}} {
		// Every call has a deadline: a caller never waits forever for a
		// service that is down or overloaded.
		callCtx, cancelCall := context.WithTimeout(ctx, 100*time.Millisecond)
		reply, err := client.Quote(callCtx, &pricingv1.QuoteRequest{Skus: basket})
		cancelCall()
		var remote *kombu.RemoteError
		switch {
		case err == nil:
			fmt.Fprintf(out, "%v: $%d.%02d\n", basket, reply.TotalCents/100, reply.TotalCents%100)
		case errors.As(err, &remote):
			fmt.Fprintf(out, "%v: refused: %s\n", basket, remote.Message)
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprintf(out, "%v: no answer within 100ms\n", basket)
		default:
			return err
		}
	}
	// The service stopped pricing the slow basket at the caller's deadline,
	// and sent no answer that nobody would read.
	select {
	case err := <-p.gaveUp:
		fmt.Fprintf(out, "the service gave up on the slow basket: %v\n", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Fprintf(out, "late replies: %d\n", conn.LateReplies())
	return nil
}
