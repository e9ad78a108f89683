package kombu

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// recordingSub is a subscription that records the prefetches it is given.
type recordingSub struct {
	transport.Subscription
	mu  sync.Mutex
	set []int
}

func (s *recordingSub) SetPrefetch(_ context.Context, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = append(s.set, n)
	return nil
}

// handle feeds p n messages of the given handling time each, as a handler
// goroutine's meter does, and waits for any change it makes.
func handle(p *prefetcher, n int, each time.Duration) {
	var m meter
	for range n {
		m.add(p, each)
		p.changed = time.Time{} // the test is quicker than prefetchEvery
		for p.isChanging() {
			time.Sleep(time.Microsecond)
		}
	}
}

func (p *prefetcher) isChanging() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changing
}

func TestDefaultPrefetchFollowsTheHandlers(t *testing.T) {
	for _, tt := range []struct {
		name        string
		concurrency int
		each        time.Duration
		want        int
	}{
		{"fast", 1, 50 * time.Microsecond, 101},
		{"fast, four goroutines", 4, 50 * time.Microsecond, 104},
		{"40 ms", 1, 40 * time.Millisecond, 3},        // 1 in hand, 100 ms = 2.5 more
		{"40 ms, four", 4, 40 * time.Millisecond, 14}, // 4 in hand, 100 ms at 100 msg/s = 10 more
		{"a second", 1, time.Second, 1},               // no more than it handles
		{"2 ms", 1, 2 * time.Millisecond, 51},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPrefetcher(tt.concurrency, slog.New(slog.DiscardHandler))
			if p.prefetch() != tt.concurrency {
				t.Fatalf("starts at %d, want one per handler goroutine (%d)", p.prefetch(), tt.concurrency)
			}
			sub := &recordingSub{}
			p.attach(sub)
			handle(p, 200, tt.each)
			if got := p.prefetch(); got != tt.want {
				t.Errorf("prefetch %d after 200 messages of %v each, want %d (changes: %v)", got, tt.each, tt.want, sub.set)
			}
		})
	}
}

// A handler that now and then waits long (the benchmark's consumers,
// held between their turns) is paced by its mean, one message counting
// for a quarter of a second at most: one wait among a thousand quick
// messages does not shrink the buffer.
func TestDefaultPrefetchRidesOutALongWait(t *testing.T) {
	p := newPrefetcher(1, slog.New(slog.DiscardHandler))
	sub := &recordingSub{}
	p.attach(sub)
	for _, wait := range []time.Duration{400 * time.Millisecond, time.Second, 3 * time.Second, time.Minute, 400 * time.Millisecond} {
		handle(p, 1000, 60*time.Microsecond)
		handle(p, 1, wait)
	}
	handle(p, 10, 50*time.Microsecond)
	if got := p.prefetch(); got != 101 {
		t.Errorf("prefetch %d, want 101 (changes: %v)", got, sub.set)
	}
	if len(sub.set) != 1 {
		t.Errorf("changes %v, want one, from 1 to 101", sub.set)
	}
}

// Handlers that turn slow stop the consumer taking more than it can
// handle within seconds of their work.
func TestDefaultPrefetchShrinksWhenHandlersSlowDown(t *testing.T) {
	p := newPrefetcher(1, slog.New(slog.DiscardHandler))
	sub := &recordingSub{}
	p.attach(sub)
	handle(p, 5000, 50*time.Microsecond)
	if got := p.prefetch(); got != 101 {
		t.Fatalf("prefetch %d when fast, want 101", got)
	}
	handle(p, 250, 40*time.Millisecond) // 10 s of handling
	if got := p.prefetch(); got > 4 {
		t.Errorf("prefetch %d once the handler takes 40 ms, want 3 or so (changes: %v)", got, sub.set)
	}
}

// A subscription that cannot change its prefetch keeps it, and is not
// asked again.
func TestDefaultPrefetchOnASubscriptionThatCannotChange(t *testing.T) {
	p := newPrefetcher(1, slog.New(slog.DiscardHandler))
	refusing := &refusingSub{}
	p.attach(refusing)
	handle(p, 200, 50*time.Microsecond)
	if got := p.prefetch(); got != 1 || refusing.asked != 1 {
		t.Errorf("prefetch %d, asked %d times; want 1, asked once", got, refusing.asked)
	}
}

type refusingSub struct {
	transport.Subscription
	asked int
}

func (s *refusingSub) SetPrefetch(context.Context, int) error {
	s.asked++
	return ErrNotSupported
}
