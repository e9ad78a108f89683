package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	kombutestv1 "github.com/kombu-go/kombu/cmd/protoc-gen-kombu/internal/testgen/kombutest/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// These tests run generated code on the three brokers a new user tries
// first: what a generated producer publishes before any consumer has
// started is delivered once one starts, and what reaches no queue is said.

// brokers are the brokers the tests run on, each a function giving the URL
// (or skipping the test when the broker is not there).
var brokers = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"memory", broker},
	{"amqp", func(t *testing.T) string { return brokertest.AMQPURL(t) }},
	{"redis", func(t *testing.T) string { return brokertest.RedisURL(t) }},
}

type billingHandler struct {
	kombutestv1.UnimplementedBillingHandler
	recorder
}

func (h billingHandler) IssueInvoice(_ context.Context, m *kombutestv1.Invoice, msg *kombu.Message) error {
	return h.record("IssueInvoice", m, msg)
}

func (h billingHandler) PackInvoice(_ context.Context, m *kombutestv1.Invoice, msg *kombu.Message) error {
	return h.record("PackInvoice", m, msg)
}

func (h billingHandler) WriteInvoice(_ context.Context, m *kombutestv1.Invoice, msg *kombu.Message) error {
	return h.record("WriteInvoice", m, msg)
}

func (h billingHandler) MapInvoice(_ context.Context, m *kombutestv1.Invoice, msg *kombu.Message) error {
	return h.record("MapInvoice", m, msg)
}

func (h billingHandler) AnnounceRates(_ context.Context, m *kombutestv1.Rates, msg *kombu.Message) error {
	return h.record("AnnounceRates", m, msg)
}

// invoice has every kind of field set, with values beyond what a float64
// holds exactly.
func invoice() *kombutestv1.Invoice {
	return &kombutestv1.Invoice{
		InvoiceId:       "INV-1",
		AmountCents:     9007199254740993, // 2^53 + 1
		Sequence:        18446744073709551615,
		Status:          kombutestv1.Invoice_STATUS_ISSUED,
		Signature:       []byte{0, 0xff, 'k'},
		LineCents:       []int64{-1, 1 << 62},
		TaxCents:        map[string]int64{"vat": 2100, "city": -3},
		AdjustmentCents: -9223372036854775808,
		Ledger:          1 << 63,
		Rate:            0.1,
		Paid:            true,
		Rates:           &kombutestv1.Rates{PerEuro: map[string]float64{"usd": 1.08}, AsOf: 1700000000123},
	}
}

// resetBilling deletes what an earlier run left of the billing queues, and
// again when the test ends.
func resetBilling(t *testing.T, conn *kombu.Connection) {
	t.Helper()
	reset := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, q := range kombutestv1.BillingTopology().Queues {
			if q.Name == "" {
				continue
			}
			if _, err := q.Delete(ctx, conn); err != nil && !errors.Is(err, kombu.ErrNotFound) {
				return err
			}
		}
		return nil
	}
	if err := reset(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reset(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// The producer declares each route's queue before publishing, so messages
// published before any consumer exists wait for it, with every serializer,
// and arrive intact.
func TestProducerPublishesBeforeAnyConsumer(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			conn := dial(t, url)
			resetBilling(t, conn)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p := kombutestv1.NewBillingProducer(conn)
			inv := invoice()
			for name, publish := range map[string]func(context.Context, *kombutestv1.Invoice, ...kombu.PublishOption) error{
				"IssueInvoice": p.IssueInvoice, "PackInvoice": p.PackInvoice, "WriteInvoice": p.WriteInvoice, "MapInvoice": p.MapInvoice,
			} {
				if err := publish(ctx, inv); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}

			h := billingHandler{recorder: make(recorder, 10)}
			c, err := kombutestv1.NewBillingConsumer(dial(t, url), h)
			start(t, c, err)
			got := map[string]delivery{}
			for len(got) < 4 {
				select {
				case d := <-h.recorder:
					got[d.method] = d
				case <-time.After(10 * time.Second):
					t.Fatalf("only %d of the 4 messages published before the consumer started arrived", len(got))
				}
			}
			for method, contentType := range map[string]string{
				"IssueInvoice": "application/json", "PackInvoice": "application/x-msgpack",
				"WriteInvoice": "application/x-yaml", "MapInvoice": "application/json",
			} {
				d := got[method]
				if !proto.Equal(d.m, inv) {
					t.Errorf("%s: got %v, want %v", method, d.m, inv)
				}
				if d.msg.Properties.ContentType != contentType {
					t.Errorf("%s: content type %s, want %s", method, d.msg.Properties.ContentType, contentType)
				}
			}
		})
	}
}

// A broadcast route declares no queue (its queues are its consumers'), so a
// message published while no consumer listens is dropped: the producer logs
// it once per route, and a mandatory publish fails.
func TestProducerWarnsOfDroppedMessages(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			logs := logFile(t)
			conn, err := kombu.Dial(context.Background(), b.url(t), kombu.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p := kombutestv1.NewBillingProducer(conn)
			rates := &kombutestv1.Rates{AsOf: 1}
			for range 3 {
				if err := p.AnnounceRates(ctx, rates); err != nil {
					t.Fatalf("a dropped broadcast: %v, want nil (logged, not failed)", err)
				}
			}
			// Through a fanout exchange too (Redis routes it differently).
			//lint:ignore SA1019 the deprecated service must still work
			if err := kombutestv1.NewHeartbeatsProducer(conn).Beat(ctx, &kombutestv1.Heartbeat{Process: "p1"}); err != nil {
				t.Fatal(err)
			}
			// RabbitMQ returns dropped messages in order, so once the warning
			// for this one is logged, those before it have been seen.
			if err := p.AnnounceRates(ctx, rates, kombu.WithRoutingKey("rates.last")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the warning for rates.last", func() bool { return strings.Contains(read(t, logs), "routing_key=rates.last") })
			if n := strings.Count(read(t, logs), "routing_key=rates.announced"); n != 1 {
				t.Errorf("%d warnings for routing key rates.announced, want 1:\n%s", n, read(t, logs))
			}
			if n := strings.Count(read(t, logs), "exchange=heartbeats"); n != 1 {
				t.Errorf("%d warnings for fanout exchange heartbeats, want 1:\n%s", n, read(t, logs))
			}
			err = p.AnnounceRates(ctx, rates, kombu.WithMandatory())
			if !errors.Is(err, kombu.ErrUnroutable) {
				t.Errorf("mandatory broadcast with no consumer: %v, want ErrUnroutable", err)
			}
		})
	}
}

// logFile is a file to log to, which the test reads while the connection
// writes to it.
func logFile(t *testing.T) *os.File {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func read(t *testing.T, f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
