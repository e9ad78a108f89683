package kombu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kombu-go/kombu/runtime/transport"
)

// DefaultPoolLimit is how many connections a pool lends at once unless
// WithPoolLimit or SetLimit says otherwise: Kombu's default.
const DefaultPoolLimit = 10

// Pools is Kombu's kombu.pools: a connection pool and a producer pool per
// broker URL, each lending at most Limit connections at once.
//
// Kombu keeps its pools in module globals (kombu.pools.connections[conn],
// kombu.pools.producers[conn], set_limit). kombu-go keeps no global state
// but the transport registry, so a program makes one Pools with NewPools
// and shares it, the way it shares an *http.Client: Connections(url) and
// Producers(url) are connections[conn] and producers[conn], Limit and
// SetLimit are get_limit and set_limit, Close is reset. Pools are keyed by
// the URL as written, and dial with the options given to NewPools.
//
// A Connection already serves many goroutines at once, so a program needs
// no pool to be safe, nor, on the transports measured, to be fast. A
// pooled connection or producer is its borrower's alone until released,
// as in Kombu, so a pool of n connections has at most n operations in
// flight, where one Connection pipelines any number: on RabbitMQ their
// confirms on its channel, on Redis over go-redis's own sockets. `make
// bench` measures 16 goroutines publishing one message at a time. On this
// project's 2-core machine one connection made 2413 confirmed publishes a
// second on RabbitMQ and 18122 on Redis; a ProducerPool of 4, 10 and 16
// connections made 0.45, 0.69 and 0.67 times that on RabbitMQ, 0.68, 0.72
// and 1.01 on Redis (medians of the rounds' ratios; other runs read up to
// 1.09 for 16 connections): no pool beat one connection beyond the noise.
// A pool bounds how many connections a program opens, and shares them
// between its parts.
//
// Pools is safe for concurrent use.
type Pools struct {
	dial []DialOption

	mu        sync.Mutex
	limit     int
	conns     map[string]*ConnectionPool
	producers map[string]*ProducerPool
	closed    bool
}

type poolsConfig struct {
	limit int
	dial  []DialOption
}

// WithPoolLimit sets how many connections each pool lends at once
// (DefaultPoolLimit if not given). NewPools refuses a limit below 1 with
// ErrInvalidArgument.
func WithPoolLimit(n int) PoolOption { return poolOption(func(c *poolsConfig) { c.limit = n }) }

// NewPools returns an empty group of pools. DialOptions among opts apply to
// every connection the pools dial.
func NewPools(opts ...PoolOption) (*Pools, error) {
	cfg := poolsConfig{limit: DefaultPoolLimit}
	for _, o := range opts {
		o.applyPool(&cfg)
	}
	if err := checkLimit(cfg.limit); err != nil {
		return nil, err
	}
	return &Pools{
		dial:      cfg.dial,
		limit:     cfg.limit,
		conns:     make(map[string]*ConnectionPool),
		producers: make(map[string]*ProducerPool),
	}, nil
}

func checkLimit(n int) error {
	if n < 1 {
		return fmt.Errorf("%w: a pool limit must be at least 1, got %d", ErrInvalidArgument, n)
	}
	return nil
}

// Limit returns how many connections each pool lends at once.
func (ps *Pools) Limit() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.limit
}

// SetLimit changes the limit of every pool, now and to come, as Kombu's
// set_limit does. Raising it lets waiting Acquire calls dial at once.
// Lowering it closes idle connections beyond the new limit; connections
// lent beyond it are closed as they are released, and Acquire waits until
// fewer than the new limit are lent. A limit below 1 fails with
// ErrInvalidArgument.
func (ps *Pools) SetLimit(n int) error {
	if err := checkLimit(n); err != nil {
		return err
	}
	ps.mu.Lock()
	ps.limit = n
	pools := slices.Collect(maps.Values(ps.conns))
	ps.mu.Unlock()
	for _, p := range pools {
		p.resize(n)
	}
	return nil
}

// Connections returns the connection pool for url, made on first use. It
// dials nothing yet: Acquire does. A URL that does not parse fails with
// ErrInvalidURL, one whose transport is not imported with
// ErrUnknownScheme, and after Close every call fails with ErrClosed.
func (ps *Pools) Connections(url string) (*ConnectionPool, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, fmt.Errorf("kombu: Pools.Connections: the pools are closed: %w", ErrClosed)
	}
	if p, ok := ps.conns[url]; ok {
		return p, nil
	}
	urls, err := transport.ParseList(url)
	if err != nil {
		return nil, err
	}
	masked := make([]string, len(urls))
	for i, u := range urls {
		if _, err := lookupDriver(u.Scheme); err != nil {
			return nil, err
		}
		masked[i] = u.String()
	}
	var dc dialConfig
	for _, o := range ps.dial {
		o.applyDial(&dc)
	}
	if dc.logger == nil {
		dc.logger = slog.New(slog.DiscardHandler)
	}
	p := &ConnectionPool{
		url:    url,
		masked: strings.Join(masked, ";"),
		dial:   ps.dial,
		logger: dc.logger,
		limit:  ps.limit,
	}
	ps.conns[url] = p
	return p, nil
}

// Producers returns the producer pool for url, made on first use. Its
// producers lend the connections of Connections(url), so the two share a
// limit, as in Kombu. It fails as Connections does.
func (ps *Pools) Producers(url string) (*ProducerPool, error) {
	conns, err := ps.Connections(url)
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.producers[url]
	if !ok {
		p = &ProducerPool{conns: conns}
		ps.producers[url] = p
	}
	return p, nil
}

// Close closes every pool, as Kombu's reset does: idle connections at
// once, lent ones as they are released. Acquire then fails with ErrClosed,
// and so does a waiting one. It returns the errors of the connections it
// closed. Closing twice is not an error.
func (ps *Pools) Close() error {
	ps.mu.Lock()
	ps.closed = true
	pools := slices.Collect(maps.Values(ps.conns))
	ps.mu.Unlock()
	var errs []error
	for _, p := range pools {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

// ConnectionPool lends the connections of one broker URL, at most its
// limit at once, most recently released first (Kombu's LIFO). Get one from
// Pools.Connections.
//
// A connection closed for good (its Err is not nil: closed by the program,
// or lost with recovery off or given up) is never lent again: Release
// closes it and frees its place, and Acquire dials a new connection
// instead. A connection that is reconnecting (recovery is on by default)
// stays in the pool: what is done on it waits for it to come back, within
// the caller's context.
type ConnectionPool struct {
	url    string // as given: what Dial is given
	masked string // for errors and logs
	dial   []DialOption
	logger *slog.Logger

	mu      sync.Mutex
	limit   int
	idle    []*poolEntry // the most recently released last
	lent    int          // entries lent out, or being dialled for a caller
	waiters []chan grant // Acquire calls waiting for a place, first come first
	closed  bool
}

// poolEntry is one pooled connection, and the producer a ProducerPool lends
// on it, made when first lent.
type poolEntry struct {
	conn     *Connection
	producer *Producer
}

// grant is what a waiting Acquire is given: an entry someone released, or
// (entry nil) a place to dial a new connection in; or word that the pool
// closed.
type grant struct {
	entry  *poolEntry
	closed bool
}

func (e *poolEntry) healthy() bool { return e.conn.Err() == nil }

// Limit returns how many connections the pool lends at once.
func (p *ConnectionPool) Limit() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit
}

// Acquire lends a connection: an idle one, or a new one dialled when fewer
// than the limit are lent; otherwise it waits for one to be released until
// ctx ends, and then fails with ErrLimitExceeded (and ctx's error). With a
// context already ended it still lends an idle connection, as Kombu's
// acquire(block=False) does. A pool that is closed fails with ErrClosed.
//
// The caller must Release the connection exactly once; Do does that on
// every path.
func (p *ConnectionPool) Acquire(ctx context.Context) (*PooledConnection, error) {
	e, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &PooledConnection{Connection: e.conn, lease: lease{pool: p, entry: e}}, nil
}

// Do acquires a connection, calls fn with it, and releases it however fn
// returns, panics included. fn must not keep the connection.
func (p *ConnectionPool) Do(ctx context.Context, fn func(*Connection) error) error {
	e, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.put(e) // released once, here, on every path: no lease to guard
	return fn(e.conn)
}

func (p *ConnectionPool) acquire(ctx context.Context) (*poolEntry, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, p.closedError()
	}
	var broken []*poolEntry
	for len(p.idle) > 0 {
		e := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if e.healthy() {
			p.lent++
			p.mu.Unlock()
			p.discard(broken...)
			return e, nil
		}
		broken = append(broken, e)
	}
	if p.lent < p.limit {
		p.lent++
		p.mu.Unlock()
		p.discard(broken...)
		return p.dialEntry(ctx)
	}
	w := make(chan grant, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	p.discard(broken...)
	select {
	case g := <-w:
		return p.granted(ctx, g)
	case <-ctx.Done():
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: all %d connections of the pool for %s are lent: %w", ErrLimitExceeded, p.Limit(), p.masked, ctx.Err())
	}
	p.mu.Unlock()
	// Granted as ctx ended: a connection is as good as ever; a place to
	// dial in is given back, since dialling would fail.
	g := <-w
	if g.entry == nil && !g.closed {
		p.free()
		return nil, fmt.Errorf("%w: all %d connections of the pool for %s were lent: %w", ErrLimitExceeded, p.Limit(), p.masked, ctx.Err())
	}
	return p.granted(ctx, g)
}

// granted turns what a waiting Acquire was given into a connection.
func (p *ConnectionPool) granted(ctx context.Context, g grant) (*poolEntry, error) {
	switch {
	case g.closed:
		return nil, p.closedError()
	case g.entry != nil:
		return g.entry, nil
	}
	return p.dialEntry(ctx)
}

// dialEntry dials a connection in a place the caller holds, and frees the
// place if dialling fails.
func (p *ConnectionPool) dialEntry(ctx context.Context) (*poolEntry, error) {
	conn, err := Dial(ctx, p.url, p.dial...)
	if err != nil {
		p.free()
		return nil, err
	}
	return &poolEntry{conn: conn}, nil
}

// put takes back a lent entry: it goes to the first waiting Acquire, or is
// kept idle; or closed, when it is broken, the pool closed, or the pool
// holds more than its (lowered) limit.
func (p *ConnectionPool) put(e *poolEntry) {
	p.mu.Lock()
	if p.closed || !e.healthy() || p.lent+len(p.idle) > p.limit {
		p.lent--
		p.grantPlacesLocked()
		p.mu.Unlock()
		p.discard(e)
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w <- grant{entry: e} // buffered: never blocks
		p.mu.Unlock()
		return
	}
	p.lent--
	p.idle = append(p.idle, e)
	p.mu.Unlock()
}

// free gives back a place held for a connection that was never made.
func (p *ConnectionPool) free() {
	p.mu.Lock()
	p.lent--
	p.grantPlacesLocked()
	p.mu.Unlock()
}

// grantPlacesLocked gives waiting Acquire calls the places that are free,
// in which they dial.
func (p *ConnectionPool) grantPlacesLocked() {
	for len(p.waiters) > 0 && p.lent+len(p.idle) < p.limit {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.lent++
		w <- grant{}
	}
}

// resize sets the limit: idle connections beyond it are closed, the oldest
// first, and waiting Acquire calls get the places it adds.
func (p *ConnectionPool) resize(n int) {
	p.mu.Lock()
	p.limit = n
	var excess []*poolEntry
	for len(p.idle) > 0 && p.lent+len(p.idle) > p.limit {
		excess = append(excess, p.idle[0])
		p.idle = p.idle[1:]
	}
	p.grantPlacesLocked()
	p.mu.Unlock()
	p.discard(excess...)
}

// close marks the pool closed, wakes the waiting Acquire calls and closes
// the idle connections.
func (p *ConnectionPool) close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	for _, w := range p.waiters {
		w <- grant{closed: true}
	}
	p.waiters = nil
	p.mu.Unlock()
	var errs []error
	for _, e := range idle {
		errs = append(errs, e.conn.Close())
	}
	return errors.Join(errs...)
}

// discard closes entries that leave the pool.
func (p *ConnectionPool) discard(entries ...*poolEntry) {
	for _, e := range entries {
		if err := e.conn.Close(); err != nil {
			p.logger.Warn("kombu: closing a connection leaving its pool", "url", p.masked, "error", err)
		}
	}
}

func (p *ConnectionPool) closedError() error {
	return fmt.Errorf("kombu: the pool for %s is closed: %w", p.masked, ErrClosed)
}

// lease is what a pooled connection or producer holds to go back to its
// pool, once.
type lease struct {
	pool     *ConnectionPool
	entry    *poolEntry
	released atomic.Bool
}

func (l *lease) release() error {
	if !l.released.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: released twice (the pool for %s)", ErrAlreadyReleased, l.pool.masked)
	}
	l.pool.put(l.entry)
	return nil
}

// PooledConnection is a Connection lent by a ConnectionPool. Use it as the
// Connection it embeds, then Release it; closing it is allowed, and makes
// the pool dial a new one in its place.
type PooledConnection struct {
	*Connection
	lease
}

// Release gives the connection back to its pool. The caller must not use
// it afterwards. Releasing twice fails with ErrAlreadyReleased.
func (c *PooledConnection) Release() error { return c.release() }

// ProducerPool lends producers, each on a connection of its URL's
// ConnectionPool, which it holds while it is lent: Kombu's ProducerPool.
// Get one from Pools.Producers.
type ProducerPool struct {
	conns *ConnectionPool
}

// Acquire lends a producer, with the defaults of NewProducer, on a
// connection of the pool; it waits and fails as ConnectionPool.Acquire
// does. Options given to each Publish set the exchange, routing key and
// the rest; a producer with other defaults is Producer.With away. The
// caller must Release the producer exactly once; Do does that on every
// path.
func (p *ProducerPool) Acquire(ctx context.Context) (*PooledProducer, error) {
	e, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &PooledProducer{Producer: e.producer, lease: lease{pool: p.conns, entry: e}}, nil
}

// acquire takes an entry of the connection pool, with its producer.
func (p *ProducerPool) acquire(ctx context.Context) (*poolEntry, error) {
	e, err := p.conns.acquire(ctx)
	if err != nil {
		return nil, err
	}
	if e.producer == nil {
		// The entry is this caller's alone until released: no race.
		e.producer = NewProducer(e.conn)
	}
	return e, nil
}

// Do acquires a producer, calls fn with it, and releases it however fn
// returns, panics included. fn must not keep the producer.
func (p *ProducerPool) Do(ctx context.Context, fn func(*Producer) error) error {
	e, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.conns.put(e) // released once, here, on every path: no lease to guard
	return fn(e.producer)
}

// Connections returns the connection pool whose connections the producers
// hold.
func (p *ProducerPool) Connections() *ConnectionPool { return p.conns }

// PooledProducer is a Producer lent by a ProducerPool. Publish with the
// Producer it embeds, then Release it.
type PooledProducer struct {
	*Producer
	lease
}

// Release gives the producer, and its connection, back to the pool. The
// caller must not use it afterwards. Releasing twice fails with
// ErrAlreadyReleased.
func (p *PooledProducer) Release() error { return p.release() }
