package kombu

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// The default prefetch (no WithPrefetch) follows the consumer's handlers:
// one message per handler goroutine, plus a buffer of at most
// prefetchBudget of handling, at most prefetchBuffer messages. See
// WithPrefetch for why, and for the figures.
const (
	// prefetchBudget is how much handling a consumer holds beyond the
	// messages its handlers are working on: what another consumer of the
	// same queue may wait for while this one holds it.
	prefetchBudget = 100 * time.Millisecond
	// prefetchBuffer bounds that buffer in messages: past it a faster
	// handler gains nothing measurable (a prefetch of 100 is as fast as
	// the bare clients tuned for throughput), and a consumer's memory
	// stays bounded.
	prefetchBuffer = 100
	// paceWindow is how much handling (per handler goroutine) the pace
	// is averaged over: long enough that a handler that now and then
	// waits on something slow does not shrink the prefetch (a wait of a
	// second every thousand quick messages leaves it whole; see
	// prefetcher.longest), short enough that a consumer whose handlers
	// turn slow stops taking more than it can handle within seconds
	// (some 6 to 9 s of 40 ms messages after thousands of quick ones, the
	// prefetch coming down a quarter at a time, every prefetchEvery at
	// most).
	paceWindow = time.Second
	// prefetchEvery is the least time between a change and a change down
	// (on RabbitMQ a change replaces the consumer, see
	// transport.PrefetchSetter). A change up is made at once: a consumer
	// kept below its pace is slow, one above it is only less fair for a
	// moment.
	prefetchEvery = 500 * time.Millisecond
	// prefetchTimeout bounds one change.
	prefetchTimeout = 10 * time.Second
	// fixedPrefetchPerHandler is the default prefetch per handler
	// goroutine where the transport cannot change a prefetch while it
	// consumes: Celery's worker_prefetch_multiplier, which favours
	// fairness between consumers over speed.
	fixedPrefetchPerHandler = 4
)

// Handler goroutines time their handlers and report in batches: after
// meterCount messages, or meterBusy of handling, whichever comes first.
const (
	meterCount = 32
	meterBusy  = 5 * time.Millisecond
)

// prefetcher fits a consumer's prefetch to how fast its handlers turn out
// to be, on a transport that can change it while it consumes
// (transport.FeatureLivePrefetch). It lives as long as the consumer,
// across its sessions: a subscription after a reconnect starts where the
// last one was.
type prefetcher struct {
	low, high   int     // concurrency, and concurrency plus prefetchBuffer
	concurrency float64 // handler goroutines
	logger      *slog.Logger
	// longest is the most one message's handling counts for in the pace:
	// one that waits far longer than the others (on a lock, a slow
	// dependency, a benchmark's turn) says little about the next ones,
	// and handlers that are that slow on every message still show it
	// within a second or two. At a quarter of paceWindow, and at least
	// prefetchBudget per handler goroutine, it changes no prefetch by
	// more than one message: past it, fit's buffer is under one anyway.
	longest time.Duration

	mu       sync.Mutex
	busy     float64 // seconds of handling, decayed over paceWindow
	count    float64 // messages handled, decayed alike
	current  int     // the prefetch the subscription has
	sub      transport.PrefetchSetter
	changing bool      // a change is under way
	changed  time.Time // when the last change was made; zero: never
}

func newPrefetcher(concurrency int, logger *slog.Logger) *prefetcher {
	return &prefetcher{
		low: concurrency, high: concurrency + prefetchBuffer,
		concurrency: float64(concurrency), logger: logger,
		longest: max(paceWindow/4, prefetchBudget*time.Duration(concurrency)),
		current: concurrency, // until it knows the handlers, it takes no more than they handle
	}
}

// prefetch is what a new subscription starts with.
func (p *prefetcher) prefetch() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// attach makes sub, started with prefetch(), the one to change.
func (p *prefetcher) attach(sub transport.Subscription) {
	ps, _ := sub.(transport.PrefetchSetter)
	p.mu.Lock()
	p.sub = ps
	p.mu.Unlock()
}

// meter is one handler goroutine's timings not yet reported.
type meter struct {
	n    int
	busy time.Duration
}

// add records one message's handling, and reports the batch to p when it
// is full. A message counts for at most p.longest.
func (m *meter) add(p *prefetcher, took time.Duration) {
	m.n++
	m.busy += min(took, p.longest)
	if m.n >= meterCount || m.busy >= meterBusy {
		p.observe(m.n, m.busy)
		*m = meter{}
	}
}

// observe takes n messages' handling time into the pace and, when the
// prefetch the pace calls for is far enough from the current one, changes
// it. The pace is the mean handling time over the last paceWindow or so:
// the ratio of decayed sums, so that one long wait among many quick
// messages weighs as one message.
func (p *prefetcher) observe(n int, busy time.Duration) {
	p.mu.Lock()
	decay := math.Exp(-busy.Seconds() / p.concurrency / paceWindow.Seconds())
	p.busy = p.busy*decay + busy.Seconds()
	p.count = p.count*decay + float64(n)
	sub, from, to := p.decide()
	mean := p.busy / p.count
	p.mu.Unlock()
	if sub == nil {
		return
	}
	// The change is made in a goroutine of its own, which a handler
	// goroutine that never waits for its next message would keep from
	// running for a while: it runs now, until it waits (on the broker).
	go p.change(sub, from, to, mean)
	runtime.Gosched()
}

// decide returns the change the pace calls for, if any, marked as under
// way: its subscription, and the prefetch from and to. p.mu is held.
func (p *prefetcher) decide() (sub transport.PrefetchSetter, from, to int) {
	want := p.fit()
	if want == p.current || p.changing || p.sub == nil {
		return nil, 0, 0
	}
	// Far enough: a quarter of the current prefetch, or a bound reached.
	if diff := want - p.current; 4*max(diff, -diff) < p.current && want != p.low && want != p.high {
		return nil, 0, 0
	}
	now := time.Now()
	if want < p.current && !p.changed.IsZero() && now.Sub(p.changed) < prefetchEvery {
		return nil, 0, 0
	}
	p.changing, p.changed = true, now
	return p.sub, p.current, want
}

// fit is the prefetch the pace calls for: a message per handler goroutine
// and prefetchBudget of handling, within [low, high].
func (p *prefetcher) fit() int {
	mean := p.busy / p.count // seconds per message in one goroutine
	if !(mean > 0) {
		return p.high
	}
	buffer := prefetchBudget.Seconds() * p.concurrency / mean
	return p.low + int(min(buffer, prefetchBuffer))
}

// change sets sub's prefetch to to.
func (p *prefetcher) change(sub transport.PrefetchSetter, from, to int, mean float64) {
	ctx, cancel := context.WithTimeout(context.Background(), prefetchTimeout)
	err := sub.SetPrefetch(ctx, to)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changing = false
	switch {
	case err == nil:
		p.current = to
		p.logger.Debug("kombu: consumer prefetch fitted to its handlers", "from", from, "to", to,
			"handling", time.Duration(mean*float64(time.Second)))
	case errors.Is(err, ErrNotSupported):
		if p.sub == sub {
			p.sub = nil // this subscription keeps the prefetch it has
		}
	default:
		// The connection is lost, or the broker refused: the next
		// subscription starts at the prefetch the last change reached.
		p.logger.Debug("kombu: consumer prefetch not changed", "from", from, "to", to, "error", err)
	}
}

// sharesQueues reports whether another consumer may take messages from
// this one's queues, so that holding them keeps that consumer waiting. Not
// when the consumer is exclusive, nor for a queue that is its connection's
// own (exclusive or server-named, as broadcast queues are), a stream
// (each consumer reads every message) or a single-active-consumer queue.
func (c *Consumer) sharesQueues() bool {
	if c.cfg.exclusive {
		return false
	}
	for _, s := range c.subs {
		q := s.Queue
		single, _ := q.Arguments["x-single-active-consumer"].(bool)
		if q.Name != "" && !q.Exclusive && q.Type != QueueStream && !single {
			return true
		}
	}
	return false
}

// monotonic is a reading of the monotonic clock, cheaper than time.Now,
// which reads the wall clock too.
func monotonic() time.Duration { return time.Since(processStart) }

var processStart = time.Now()
