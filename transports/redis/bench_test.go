package redis_test

import (
	"context"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// Kombu spends three round trips per message on Redis: BRPOP, then a
// MULTI with ZADD and HSET to record it, then a MULTI with ZREM and HDEL to
// acknowledge it. These benchmarks show what a message costs here.

func BenchmarkPublish(b *testing.B) {
	e := newEnv(b)
	c := e.dial()
	p := &transport.Publishing{RoutingKey: "bench", Body: make([]byte, 256), Confirm: true}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Publish(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishTopic(b *testing.B) {
	e := newEnv(b)
	c := e.dial()
	transporttest.DeclareExchange(b, c, transport.Exchange{Name: "tx", Type: transport.ExchangeTopic, Durable: true})
	transporttest.Bind(b, c, transport.Binding{Source: "tx", Destination: "bench", RoutingKey: "a.*"})
	p := &transport.Publishing{Exchange: "tx", RoutingKey: "a.b", Body: make([]byte, 256), Confirm: true}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Publish(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishBatch100(b *testing.B) {
	e := newEnv(b)
	c := e.dial()
	ps := make([]*transport.Publishing, 100)
	for i := range ps {
		ps[i] = &transport.Publishing{RoutingKey: "bench", Body: make([]byte, 256), Confirm: true}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(ps) {
		if err := c.(transport.BatchPublisher).PublishBatch(ctx, ps); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsumeAck takes and acknowledges messages with prefetch 100.
func BenchmarkConsumeAck(b *testing.B) {
	e := newEnv(b)
	c := e.dial()
	ctx := context.Background()
	ps := make([]*transport.Publishing, 1000)
	for i := range ps {
		ps[i] = &transport.Publishing{RoutingKey: "bench", Body: make([]byte, 256)}
	}
	for i := 0; i < b.N; i += len(ps) {
		if err := c.(transport.BatchPublisher).PublishBatch(ctx, ps); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	s := consume(b, c, transport.ConsumeSpec{Queues: []string{"bench"}, Prefetch: 100})
	for range b.N {
		d := recv(b, s)
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			b.Fatal(err)
		}
	}
}
