package main

import (
	"context"
	"sync/atomic"
	"testing"

	kombubenchv1 "github.com/kombu-go/kombu/bench/gen/kombubench/v1"
	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
)

// BenchmarkMemory is the memory:// workloads as Go benchmarks, for
// profiling one path at a time (go test -bench Memory -cpuprofile ...):
// the harness (go run .) is what compares the sides.
//
//	cd bench && go test -run XXX -bench Memory -benchmem -cpuprofile cpu.out
func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		opts []kombu.ConsumerOption
	}{{"defaults", nil}, {"tuned", []kombu.ConsumerOption{kombu.WithPrefetch(tunedPrefetch)}}} {
		b.Run("publish/"+bc.name, func(b *testing.B) {
			s := benchSDK(b, "memory:///bench-publish-"+bc.name)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.producer.PlaceOrder(ctx, order); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := s.purge(ctx); err != nil {
				b.Fatal(err)
			}
		})
		b.Run("consume/"+bc.name, func(b *testing.B) {
			s := benchSDK(b, "memory:///bench-consume-"+bc.name)
			if err := publishBatched(ctx, s.producer)(b.N); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			// CPU time, like the flow's: on a loaded machine the
			// process's CPU per message moves less than its wall time.
			cpu := cpuTime()
			runConsumer(b, s, b.N, bc.opts, nil)
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
		b.Run("flow/"+bc.name, func(b *testing.B) {
			s := benchSDK(b, "memory:///bench-flow-"+bc.name)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			runConsumer(b, s, b.N, bc.opts, func() {
				for range b.N {
					if err := s.producer.PlaceOrder(ctx, order); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
	// The bare side of the flow: a Go channel of encoded bodies.
	b.Run("flow/bare", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		ch := make(chan []byte, tunedPrefetch)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range b.N {
				if err := decode(<-ch); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		for range b.N {
			body, err := encode()
			if err != nil {
				b.Fatal(err)
			}
			ch <- body
		}
		<-done
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

func benchSDK(b *testing.B, url string) *sdk {
	s, err := dialSDK(context.Background(), sdkDefaults, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.conn.Close() })
	return s
}

// runConsumer consumes n messages with the generated consumer, while
// publish (if any) runs in the benchmark's goroutine.
func runConsumer(b *testing.B, s *sdk, n int, opts []kombu.ConsumerOption, publish func()) {
	var left atomic.Int64
	left.Store(int64(n))
	done := make(chan struct{})
	c, err := kombubenchv1.NewBenchConsumer(s.conn, countHandler{left: &left, done: done}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- c.Run(context.Background()) }()
	if publish != nil {
		publish()
	}
	<-done
	b.StopTimer()
	c.Close()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
}

type countHandler struct {
	kombubenchv1.UnimplementedBenchHandler
	left *atomic.Int64
	done chan struct{}
}

func (h countHandler) PlaceOrder(context.Context, *quickstartv1.OrderPlaced, *kombu.Message) error {
	if h.left.Add(-1) == 0 {
		close(h.done)
	}
	return nil
}
