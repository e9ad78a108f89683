package consumertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Prefetch checks the consumer's default prefetch (issue 13): fast
// handlers get a full buffer, so that a consumer with no options runs at
// the pace of a client tuned for throughput, while slow ones take little
// more than they handle, so that consumers sharing a queue share its work
// and none hoards what another waits for; WithPrefetch pins it.
//
// A consumer's hold on a queue shows in the queue's ready count: what it
// took and did not settle is not ready. The checks stop a handler and
// read the count once it no longer moves.
func Prefetch(t *testing.T, url string) {
	t.Run("fast handlers get a full buffer", func(t *testing.T) {
		// The prefetch changes in the background, soon after the first
		// messages: the handlers stop once it has, which a loaded machine
		// may delay by some hundreds of messages.
		const total = 2000
		s := newPrefetchScene(t, url, total)
		handled := s.holdAt(200, 2, func() bool { return strings.Contains(s.log.String(), "prefetch fitted") }, kombu.WithConcurrency(2))
		// Two handler goroutines at work and 100 messages of buffer, as
		// the consumer logs. What it holds (taken and unsettled, so not
		// ready) is that many where the broker keeps the window full
		// (memory, RabbitMQ), up to that many where the driver takes a
		// batch when the window has room (Redis).
		if !strings.Contains(s.log.String(), "to=102") {
			t.Errorf("the consumer did not raise its prefetch to 102; its log:\n%s", s.log)
		}
		if held := total - handled - s.steadyReady(); held > 102 || held < 3 {
			t.Errorf("with %d handled and both handlers stopped, the consumer holds %d messages, want up to 102 (two in hand and a buffer of 100)", handled, held)
		}
	})
	t.Run("WithPrefetch pins it", func(t *testing.T) {
		s := newPrefetchScene(t, url, 400)
		handled := s.holdAt(200, 1, nil, kombu.WithPrefetch(7))
		if strings.Contains(s.log.String(), "prefetch fitted") {
			t.Errorf("the consumer changed the prefetch it was given; its log:\n%s", s.log)
		}
		if held := 400 - handled - s.steadyReady(); held > 7 || held < 1 {
			t.Errorf("with %d handled and the handler stopped, the consumer holds %d messages, want up to its prefetch of 7", handled, held)
		}
	})
	t.Run("slow handlers share the queue", func(t *testing.T) {
		// A prefetch fixed for throughput would have the first consumer
		// take every message.
		const total, slow = 24, 40 * time.Millisecond
		s := newPrefetchScene(t, url, total)
		var handled [2]atomic.Int32
		var wg sync.WaitGroup
		wg.Add(total)
		handler := func(who int) kombu.Handler {
			return kombu.HandlerFunc(func(ctx context.Context, _ *kombu.Message) error {
				time.Sleep(slow)
				handled[who].Add(1)
				wg.Done()
				return nil
			})
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s.run(ctx, handler(0))
		// The first consumer has the queue to itself for a while: it
		// takes a message for its handler and 100 ms of handling more
		// (two at 40 ms each), not the queue. One more is allowed for
		// the handler finishing between the two counts, and one on
		// RabbitMQ, where what the consumer took under its first prefetch
		// counts apart until settled (see transport.PrefetchSetter).
		for handled[0].Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		done := int(handled[0].Load())
		if held := total - done - s.ready(); held > 5 {
			t.Errorf("the only consumer, its handler taking %v, holds %d messages (%d handled): it hoards what another would take", slow, held, done)
		}
		s.run(ctx, handler(1))
		waitGroup(t, &wg)
		a, b := handled[0].Load(), handled[1].Load()
		t.Logf("handled: %d by the consumer that came first, %d by the second", a, b)
		if a < total/4 || b < total/4 {
			t.Errorf("handled %d and %d of %d: the work is not shared", a, b, total)
		}
	})
}

// prefetchScene is one queue holding n messages, and a connection.
type prefetchScene struct {
	t    *testing.T
	url  string
	conn *kombu.Connection
	q    kombu.Queue
	log  *brokertest.LogBuffer // the consumers' log
}

func newPrefetchScene(t *testing.T, url string, n int) *prefetchScene {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := &prefetchScene{t: t, url: url, conn: dial(t, url), q: kombu.Queue{Name: "kgt-prefetch-" + hex.EncodeToString(b[:])},
		log: &brokertest.LogBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := s.q.Declare(ctx, s.conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, _ = s.q.Delete(ctx, s.conn)
	})
	p := kombu.NewProducer(s.conn, kombu.WithRoutingKey(s.q.Name))
	var batch kombu.Batch
	for i := range n {
		if err := p.Publish(ctx, fmt.Sprint(i), kombu.InBatch(&batch)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts a consumer of the queue, on a connection of its own, until
// ctx ends or the test does.
func (s *prefetchScene) run(ctx context.Context, h kombu.Handler, opts ...kombu.ConsumerOption) {
	s.t.Helper()
	c, err := kombu.NewConsumer(dial(s.t, s.url, kombu.WithLogger(s.log.Logger())), []kombu.Subscription{{Queue: s.q, Handler: h}}, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	s.t.Cleanup(func() {
		_ = c.Close()
		if err := <-ran; err != nil {
			s.t.Errorf("consumer: %v", err)
		}
	})
}

// holdAt runs a consumer with opts whose handlers, concurrency of them,
// stop from the n-th message on (once ready says so, if it is not nil)
// until the test ends, and returns how many they handled before.
func (s *prefetchScene) holdAt(n, concurrency int, ready func() bool, opts ...kombu.ConsumerOption) int {
	s.t.Helper()
	var count, stopped atomic.Int32
	release := make(chan struct{})
	s.run(context.Background(), kombu.HandlerFunc(func(ctx context.Context, _ *kombu.Message) error {
		if int(count.Add(1)) >= n && (ready == nil || ready()) {
			stopped.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}), opts...)
	s.t.Cleanup(func() { close(release) }) // before the consumer's Close: cleanups run last first
	deadline := time.Now().Add(wait)
	for int(stopped.Load()) < concurrency {
		if time.Now().After(deadline) {
			s.t.Fatalf("%d of %d handlers stopped, %d messages handled", stopped.Load(), concurrency, count.Load())
		}
		time.Sleep(time.Millisecond)
	}
	return int(count.Load()) - concurrency
}

// ready returns the queue's ready count.
func (s *prefetchScene) ready() int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	info, err := s.q.Inspect(ctx, s.conn)
	if err != nil {
		s.t.Fatalf("inspect %s: %v", s.q.Name, err)
	}
	return info.Messages
}

// steadyReady returns the queue's ready count once it has stopped
// changing: a broker counts asynchronously.
func (s *prefetchScene) steadyReady() int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	last, since := -1, time.Now()
	for {
		info, err := s.q.Inspect(ctx, s.conn)
		if err != nil {
			s.t.Fatalf("inspect %s: %v", s.q.Name, err)
		}
		if info.Messages != last {
			last, since = info.Messages, time.Now()
		} else if time.Since(since) > 300*time.Millisecond {
			return last
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("the queue's ready count did not settle: %d", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("the messages were not all handled")
	}
}
