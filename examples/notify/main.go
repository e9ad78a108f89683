// Command notify starts three instances of a service and broadcasts two
// configuration changes: every running instance receives every change.
//
//	go run ./examples/notify                 # in-process broker
//	KOMBU_URL=amqp://guest:guest@127.0.0.1:5672// go run ./examples/notify
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	notifyv1 "github.com/kombu-go/kombu/gen/examples/notify/v1"
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

const instances = 3

var changes = []*notifyv1.ConfigChanged{
	{Key: "feature.checkout-v2", Value: "on"},
	{Key: "cache.ttl", Value: "90s"},
}

func run(ctx context.Context, url string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	var lines []string
	var received sync.WaitGroup
	received.Add(instances * len(changes))

	// Each instance is its own process in real life: here, its own connection.
	// NewConfigConsumer declares the instance's own server-named queue, bound
	// to the fanout exchange, before it returns.
	var wg sync.WaitGroup
	for i := 1; i <= instances; i++ {
		conn, err := kombu.Dial(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close()
		c, err := notifyv1.NewConfigConsumer(conn, &instance{id: i, report: func(s string) {
			mu.Lock()
			lines = append(lines, s)
			mu.Unlock()
			received.Done()
		}})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
		defer c.Close()
	}

	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	config := notifyv1.NewConfigProducer(conn)
	for _, ch := range changes {
		if err := config.Changed(ctx, ch); err != nil {
			return err
		}
	}
	all := make(chan struct{})
	go func() { received.Wait(); close(all) }()
	select {
	case <-all:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the broadcasts: %w", ctx.Err())
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return nil
}

type instance struct {
	notifyv1.UnimplementedConfigHandler
	id     int
	report func(string)
}

func (i *instance) Changed(ctx context.Context, c *notifyv1.ConfigChanged, msg *kombu.Message) error {
	i.report(fmt.Sprintf("instance %d: %s = %s", i.id, c.Key, c.Value))
	return nil
}
