package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/simpletest"
	kombu "github.com/kombu-go/kombu/runtime"
)

func TestSimpleQueueAndPools(t *testing.T) { simpletest.Run(t, newEnv(t).url()) }

// A SimpleQueue's Get goes on across a lost connection: the queue is
// declared again and consumed on the new one.
func TestSimpleQueueGetSurvivesAConnectionLoss(t *testing.T) {
	redis := brokertest.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, redis.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q, err := kombu.NewSimpleQueue[string](ctx, conn, "survivor")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Put(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	if v, msg, err := q.Get(ctx); err != nil || v != "before" {
		t.Fatalf("Get: %q, %v", v, err)
	} else if err := msg.Ack(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		v, msg, err := q.Get(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		msg.Ack()
		got <- v
	}()
	lost := conn.Lost()
	redis.Stop()
	<-lost
	redis.Start()
	if err := q.Put(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != "after" {
			t.Errorf("Get across the loss: %s", v)
		}
	case <-ctx.Done():
		t.Fatal("Get did not resume after the connection came back")
	}
}

// A pooled connection that died idle (its Redis went, with recovery off)
// is not lent again: Acquire dials a new one in its place.
func TestPoolNeverLendsALostConnection(t *testing.T) {
	redis := brokertest.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps, err := kombu.NewPools(kombu.WithPoolLimit(1), kombu.WithoutRecovery())
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	p, err := ps.Connections(redis.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Release() // idle in the pool
	redis.Stop()
	// A Redis connection learns of the loss from a command that fails (an
	// AMQP one from its socket): this one stands for a consumer's.
	if _, err := (kombu.Queue{Name: "probe"}).Inspect(ctx, c.Connection); err == nil {
		t.Fatal("a command succeeded with Redis stopped")
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the connection did not notice its broker went")
	}
	redis.Start()
	next, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Release()
	if next.Connection == c.Connection {
		t.Fatal("the pool lent a dead connection again")
	}
	if _, err := (kombu.Queue{Name: "after-the-loss"}).Declare(ctx, next.Connection); err != nil {
		t.Errorf("the new connection: %v", err)
	}
}
