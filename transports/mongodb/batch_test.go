package mongodb_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// TestCompetingBatchTakers: three connections consume one queue with a
// prefetch, so that each takes batches that overlap the others'; every
// message is delivered exactly once (a lost claim, or a stale copy of a
// message another consumer took and acked meanwhile, must not come out).
func TestCompetingBatchTakers(t *testing.T) {
	s := ferret(t)
	q := uniq("batch-")
	pub := s.open(t, "batch", "")
	defer pub.Close()
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := pub.DeclareQueue(ctx, transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := pub.Publish(ctx, &transport.Publishing{RoutingKey: q, Body: []byte(strconv.Itoa(i)), Confirm: true}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	total := 0
	done := make(chan struct{}) // all n came
	stop := make(chan struct{}) // a while after: anything twice came too
	var wg sync.WaitGroup
	for c := range 3 {
		conn := s.open(t, "batch", "")
		defer conn.Close()
		sub, err := conn.Consume(ctx, transport.ConsumeSpec{Queues: []string{q}, Prefetch: 25, Tag: "c" + strconv.Itoa(c)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d, ok := <-sub.Deliveries():
					if !ok {
						return
					}
					if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
						t.Errorf("ack: %v", err)
					}
					mu.Lock()
					seen[string(d.Body)]++
					total++
					if total == n {
						close(done)
					}
					mu.Unlock()
				case <-stop:
					_ = sub.Cancel(context.Background())
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Anything delivered twice would come within a few polls.
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if c := seen[strconv.Itoa(i)]; c != 1 {
			t.Errorf("message %d delivered %d times", i, c)
		}
	}
	if total != n {
		t.Errorf("%d deliveries, want %d", total, n)
	}
}
