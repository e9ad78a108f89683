// Command orders runs three workers that share one work queue, retries an
// order that fails for a passing reason, dead-letters one that can never
// succeed, where a separate consumer inspects it, and schedules a reminder
// order that the broker holds back for a second (kombu.WithDelay).
//
//	go run ./examples/orders                 # in-process broker
//	KOMBU_URL=amqp://guest:guest@127.0.0.1:5672// go run ./examples/orders
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	ordersv1 "github.com/kombu-go/kombu/gen/examples/orders/v1"
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

// The orders this run publishes. A-4 meets a busy payment service on its
// first attempt; A-6 has a negative amount and can never be processed.
var orders = []*ordersv1.OrderPlaced{
	{OrderId: "A-1", AmountCents: 1250}, {OrderId: "A-2", AmountCents: 4999},
	{OrderId: "A-3", AmountCents: 300}, {OrderId: "A-4", AmountCents: 2000},
	{OrderId: "A-5", AmountCents: 750}, {OrderId: "A-6", AmountCents: -100},
}

// reminder is a delayed order: a subscription renewal placed now to be
// processed a second from now. The broker holds it back (on RabbitMQ in
// Kombu 5.5's delayed-delivery queues, which Celery 5.5 shares); no worker
// sees it before its time.
var reminder = &ordersv1.OrderPlaced{OrderId: "A-7", AmountCents: 500}

const reminderDelay = time.Second

func run(ctx context.Context, url string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()

	ledger := &ledger{outcome: map[string]string{}, done: make(chan struct{}), want: len(orders) + 1}
	var consumers []*kombu.Consumer
	// Three workers read the one queue "orders.work": each order goes to one
	// of them. Prefetch 1 hands a worker one order at a time.
	for id := 1; id <= 3; id++ {
		c, err := ordersv1.NewOrdersConsumer(conn, &worker{id: id, ledger: ledger}, kombu.WithPrefetch(1))
		if err != nil {
			return err
		}
		consumers = append(consumers, c)
	}
	dead, err := ordersv1.NewDeadOrdersConsumer(conn, &inspector{ledger: ledger})
	if err != nil {
		return err
	}
	consumers = append(consumers, dead)
	var wg sync.WaitGroup
	for _, c := range consumers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
	}
	defer func() {
		for _, c := range consumers {
			c.Close()
		}
		wg.Wait()
	}()

	shop := ordersv1.NewOrdersProducer(conn)
	ledger.schedule(reminder.OrderId, time.Now().Add(reminderDelay))
	if err := shop.Place(ctx, reminder, kombu.WithDelay(reminderDelay)); err != nil {
		return err
	}
	for _, o := range orders {
		if err := shop.Place(ctx, o); err != nil {
			return err
		}
	}
	select {
	case <-ledger.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the orders: %w", ctx.Err())
	}
	ledger.print(out)
	return nil
}

// worker processes orders. Its result decides each message's fate.
type worker struct {
	ordersv1.UnimplementedOrdersHandler
	id     int
	ledger *ledger
}

func (w *worker) Place(ctx context.Context, o *ordersv1.OrderPlaced, msg *kombu.Message) error {
	if o.AmountCents < 0 {
		// Rejected without requeue: the queue's dead-letter exchange gets it.
		return fmt.Errorf("order %s has a negative amount", o.OrderId)
	}
	if o.OrderId == "A-4" && !msg.Redelivered() {
		// A passing failure: requeue, and the broker delivers it again,
		// marked redelivered.
		w.ledger.note("A-4: payment service busy, requeued")
		return kombu.Requeue(errors.New("payment service busy"))
	}
	retry := ""
	if msg.Redelivered() {
		retry = ", on retry"
	}
	if due, ok := w.ledger.due(o.OrderId); ok {
		retry = ", held back until due"
		if time.Now().Before(due) {
			retry = ", TOO EARLY"
		}
	}
	w.ledger.settle(o.OrderId, fmt.Sprintf("processed ($%d.%02d%s)", o.AmountCents/100, o.AmountCents%100, retry))
	return nil
}

// inspector reads the dead-letter queue.
type inspector struct {
	ordersv1.UnimplementedDeadOrdersHandler
	ledger *ledger
}

func (i *inspector) Inspect(ctx context.Context, o *ordersv1.OrderPlaced, msg *kombu.Message) error {
	reason := "unknown"
	if deaths, ok := msg.Headers["x-death"].([]any); ok && len(deaths) > 0 {
		if d, ok := deaths[0].(map[string]any); ok {
			reason = fmt.Sprintf("%v from queue %v", d["reason"], d["queue"])
		}
	}
	i.ledger.settle(o.OrderId, "dead-lettered ("+reason+")")
	return nil
}

// ledger records what became of each order this run published.
type ledger struct {
	mu        sync.Mutex
	outcome   map[string]string
	notes     []string
	scheduled map[string]time.Time // delayed orders and when they are due
	want      int
	done      chan struct{}
}

func (l *ledger) schedule(id string, due time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.scheduled == nil {
		l.scheduled = map[string]time.Time{}
	}
	l.scheduled[id] = due
}

func (l *ledger) due(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.scheduled[id]
	return t, ok
}

func (l *ledger) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notes = append(l.notes, s)
}

func (l *ledger) settle(id, outcome string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, seen := l.outcome[id]; seen {
		return // left over from an earlier run on a shared broker
	}
	l.outcome[id] = outcome
	if len(l.outcome) == l.want {
		close(l.done)
	}
}

func (l *ledger) print(out io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.notes {
		fmt.Fprintln(out, n)
	}
	ids := make([]string, 0, len(l.outcome))
	for id := range l.outcome {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(out, "%s: %s\n", id, l.outcome[id])
	}
}
