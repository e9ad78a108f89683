package kombu_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// newPools makes pools closed when the test ends.
func newPools(t *testing.T, opts ...kombu.PoolOption) *kombu.Pools {
	t.Helper()
	ps, err := kombu.NewPools(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return ps
}

func connectionPool(t *testing.T, ps *kombu.Pools, url string) *kombu.ConnectionPool {
	t.Helper()
	p, err := ps.Connections(url)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func acquire(t *testing.T, p *kombu.ConnectionPool) *kombu.PooledConnection {
	t.Helper()
	c, err := p.Acquire(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// acquireFails checks that Acquire gives up with ErrLimitExceeded when its
// context ends with every connection lent.
func acquireFails(t *testing.T, p *kombu.ConnectionPool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c, err := p.Acquire(ctx)
	if !errors.Is(err, kombu.ErrLimitExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with every connection lent: %v, %v; want ErrLimitExceeded and the context's error", c, err)
	}
}

// acquireLater acquires in a goroutine, waiting as long as it takes.
func acquireLater(t *testing.T, p *kombu.ConnectionPool) <-chan *kombu.PooledConnection {
	got := make(chan *kombu.PooledConnection, 1)
	go func() {
		c, err := p.Acquire(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	return got
}

func TestPoolsRefuseABadLimit(t *testing.T) {
	for _, n := range []int{0, -1} {
		if _, err := kombu.NewPools(kombu.WithPoolLimit(n)); !errors.Is(err, kombu.ErrInvalidArgument) {
			t.Errorf("NewPools(WithPoolLimit(%d)): %v, want ErrInvalidArgument", n, err)
		}
	}
	ps := newPools(t)
	if ps.Limit() != kombu.DefaultPoolLimit || kombu.DefaultPoolLimit != 10 {
		t.Errorf("default limit %d, want Kombu's 10", ps.Limit())
	}
	if err := ps.SetLimit(0); !errors.Is(err, kombu.ErrInvalidArgument) || ps.Limit() != 10 {
		t.Errorf("SetLimit(0): %v, limit now %d; want ErrInvalidArgument and the limit unchanged", err, ps.Limit())
	}
}

// One pool per URL as written, and a URL's producers lend its connections.
func TestPoolsAreKeyedByURL(t *testing.T) {
	ps := newPools(t)
	a, b := brokerURL(t), brokerURL(t)
	first, again, other := connectionPool(t, ps, a), connectionPool(t, ps, a), connectionPool(t, ps, b)
	if first != again || first == other {
		t.Error("Connections(url): want one pool per URL")
	}
	producers, err := ps.Producers(a)
	if err != nil {
		t.Fatal(err)
	}
	if producers.Connections() != connectionPool(t, ps, a) {
		t.Error("Producers(url) lends other connections than Connections(url)")
	}
	if _, err := ps.Connections("amqp://guest:s3cret@host:notaport//"); !errors.Is(err, kombu.ErrInvalidURL) {
		t.Errorf("a bad URL: %v, want ErrInvalidURL", err)
	}
	if _, err := ps.Producers("kafka://localhost"); !errors.Is(err, kombu.ErrUnknownScheme) {
		t.Errorf("a scheme without its transport: %v, want ErrUnknownScheme", err)
	}
}

// Acquire lends up to the limit, then waits: for a release, which hands the
// released connection to the first waiter, or until its context ends.
func TestPoolAcquireWaitsForARelease(t *testing.T) {
	ps := newPools(t, kombu.WithPoolLimit(2))
	p := connectionPool(t, ps, brokerURL(t))
	a, b := acquire(t, p), acquire(t, p)
	if a.Connection == b.Connection {
		t.Fatal("two lent connections are one")
	}
	acquireFails(t, p)

	got := acquireLater(t, p)
	time.Sleep(20 * time.Millisecond) // let it wait
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if c.Connection != b.Connection {
			t.Error("the waiter got a new connection, not the one released")
		}
		c.Release()
	case <-time.After(5 * time.Second):
		t.Fatal("a release did not reach the waiting Acquire")
	}
	// The pool lends the most recently released connection first (LIFO).
	a.Release()
	if c := acquire(t, p); c.Connection != a.Connection {
		t.Error("Acquire did not lend the most recently released connection")
	} else {
		c.Release()
	}
	// With an ended context, an idle connection is still lent (Kombu's
	// acquire(block=False)).
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := p.Acquire(ended); err != nil {
		t.Errorf("Acquire with an ended context and an idle connection: %v", err)
	} else {
		c.Release()
	}
}

// A connection released twice goes back once: the second Release fails,
// and the pool still lends no more than its limit.
func TestPoolReleaseTwice(t *testing.T) {
	ps := newPools(t, kombu.WithPoolLimit(1))
	p := connectionPool(t, ps, brokerURL(t))
	c := acquire(t, p)
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(); !errors.Is(err, kombu.ErrAlreadyReleased) {
		t.Fatalf("second Release: %v, want ErrAlreadyReleased", err)
	}
	held := acquire(t, p)
	acquireFails(t, p) // had the second Release counted, this would lend a second connection
	held.Release()

	producers, err := ps.Producers(brokerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pp, err := producers.Acquire(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	pp.Release()
	if err := pp.Release(); !errors.Is(err, kombu.ErrAlreadyReleased) {
		t.Errorf("a producer released twice: %v, want ErrAlreadyReleased", err)
	}
}

// After Close, Acquire fails with ErrClosed, a waiting one too, and a
// connection lent before is closed when it is released.
func TestPoolAcquireOnAClosedPool(t *testing.T) {
	ps := newPools(t, kombu.WithPoolLimit(1))
	url := brokerURL(t)
	p := connectionPool(t, ps, url)
	lent := acquire(t, p)
	waiting := make(chan error, 1)
	go func() {
		_, err := p.Acquire(context.Background())
		waiting <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := ps.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, kombu.ErrClosed) {
			t.Errorf("Acquire waiting at Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a waiting Acquire")
	}
	if _, err := p.Acquire(ctxT(t)); !errors.Is(err, kombu.ErrClosed) {
		t.Errorf("Acquire after Close: %v, want ErrClosed", err)
	}
	if _, err := ps.Connections(url); !errors.Is(err, kombu.ErrClosed) {
		t.Errorf("Connections after Close: %v, want ErrClosed", err)
	}
	if lent.Err() != nil {
		t.Error("Close closed a lent connection under its user")
	}
	lent.Release()
	if !errors.Is(lent.Err(), kombu.ErrClosed) {
		t.Errorf("a connection released after Close: Err %v, want it closed", lent.Err())
	}
	if err := ps.Close(); err != nil {
		t.Errorf("Close twice: %v", err)
	}
}

// A connection closed for good is never lent again: one closed by its user
// is dropped at Release, and the pool dials a new one in its place
// (transports/redis checks one that died idle).
func TestPoolNeverLendsAClosedConnection(t *testing.T) {
	ps := newPools(t, kombu.WithPoolLimit(1))
	p := connectionPool(t, ps, brokerURL(t))
	c := acquire(t, p)
	c.Close()
	c.Release()
	next := acquire(t, p)
	defer next.Release()
	if next.Connection == c.Connection || next.Err() != nil {
		t.Fatal("the pool lent a closed connection again")
	}
}

// Do releases however fn returns, a panic included.
func TestPoolDoReleasesOnEveryPath(t *testing.T) {
	ps := newPools(t, kombu.WithPoolLimit(1))
	url := brokerURL(t)
	producers, err := ps.Producers(url)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := producers.Do(ctxT(t), func(*kombu.Producer) error { return boom }); err != boom {
		t.Errorf("Do: %v, want fn's error", err)
	}
	func() {
		defer func() { _ = recover() }()
		connectionPool(t, ps, url).Do(ctxT(t), func(*kombu.Connection) error { panic("boom") })
	}()
	// Both released: the one connection is free.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := producers.Do(ctx, func(*kombu.Producer) error { return nil }); err != nil {
		t.Errorf("after Do returned an error and Do panicked: %v", err)
	}
}

// SetLimit resizes every pool: a raised limit lets a waiting Acquire dial,
// a lowered one closes what is released beyond it.
func TestPoolsSetLimit(t *testing.T) {
	ps := newPools(t, kombu.WithPoolLimit(1))
	p := connectionPool(t, ps, brokerURL(t))
	a := acquire(t, p)
	got := acquireLater(t, p)
	time.Sleep(20 * time.Millisecond)
	if err := ps.SetLimit(2); err != nil {
		t.Fatal(err)
	}
	var b *kombu.PooledConnection
	select {
	case b = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("raising the limit did not let the waiting Acquire dial")
	}
	if p.Limit() != 2 || ps.Limit() != 2 {
		t.Errorf("limits %d and %d after SetLimit(2)", p.Limit(), ps.Limit())
	}
	if err := ps.SetLimit(1); err != nil {
		t.Fatal(err)
	}
	a.Release() // beyond the new limit: closed
	b.Release() // within it: kept
	if a.Err() == nil || b.Err() != nil {
		t.Errorf("after lowering the limit to 1: first released %v, second %v; want the first closed, the second open", a.Err(), b.Err())
	}
	c := acquire(t, p)
	defer c.Release()
	if c.Connection != b.Connection {
		t.Error("Acquire did not lend the connection kept")
	}
	acquireFails(t, p)
}

// Many goroutines share a pool: never more than its limit lent at once,
// every one served.
func TestPoolUnderContention(t *testing.T) {
	const limit, goroutines, rounds = 3, 16, 50
	ps := newPools(t, kombu.WithPoolLimit(limit))
	p := connectionPool(t, ps, brokerURL(t))
	var lent, most atomic.Int32
	conns := sync.Map{}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				err := p.Do(ctxT(t), func(c *kombu.Connection) error {
					n := lent.Add(1)
					defer lent.Add(-1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					conns.Store(c, true)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if most.Load() > limit || n > limit {
		t.Errorf("%d lent at once and %d connections made, want at most %d", most.Load(), n, limit)
	}
}
