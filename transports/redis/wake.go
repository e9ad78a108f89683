package redis

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Waking consumers. Kombu blocks in BRPOP, which pops: the message is then
// out of the list and not yet in the unacked hash, and lost if the consumer
// dies. Taking with a script closes that window, but scripts cannot block.
// So a consumer that finds its queues empty waits for Redis to say that one
// of its lists changed, using client-side caching's broadcast mode (Redis 6
// and later): one connection subscribes to __redis__:invalidate, another
// turns on CLIENT TRACKING ON REDIRECT <that connection> BCAST with the
// queues' key prefixes, and Redis then announces every write to those keys,
// by anyone. No server configuration is needed (unlike keyspace
// notifications). The hub checks every few seconds that tracking is still
// on and pointed at its subscriber (both connections can be replaced by
// reconnects or a failover) and sets it up again if not; consumers also
// poll every polling_interval (1 s) in case a wake-up is missed, or every
// 100 ms where tracking is refused (an ACL without CLIENT, say).

const verifyInterval = 2 * time.Second

type wakeHub struct {
	c *conn
	// parent, in the sharded mode, is the hub a per-master child serves:
	// the child owns one master's tracking pair, the parent the
	// subscriptions (see runSharded).
	parent *wakeHub

	mu   sync.Mutex
	subs map[string]map[*subscription]struct{} // list key → subscriptions

	active   atomic.Bool
	clientID atomic.Int64 // the subscriber connection's CLIENT ID
	changed  chan struct{}
	stop     chan struct{}
	done     chan struct{}
	recvWG   sync.WaitGroup
	warned   bool

	pub, track goredis.UniversalClient // plain clients, to the owner of the keyprefix's slot on a cluster
	owner      atomic.Pointer[string]  // on a cluster, the owner a MOVED reply named (ownerDialer)
	connsMu    sync.Mutex
	conns      map[net.Conn]struct{} // on a cluster, the open connections ownerDialer made, closed when the slot moves
	ps         *goredis.PubSub
}

func newWakeHub(c *conn) *wakeHub {
	h := &wakeHub{
		c:       c,
		subs:    map[string]map[*subscription]struct{}{},
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.run()
	return h
}

// pollInterval is how long a consumer waits for a wake-up before it looks
// at its queues anyway.
func (h *wakeHub) pollInterval() time.Duration {
	o := h.c.opts
	if o.pollIntervalSet {
		return o.pollInterval
	}
	if h.active.Load() {
		return defaultPollInterval
	}
	return fallbackPollInterval
}

func (h *wakeHub) register(s *subscription) {
	h.mu.Lock()
	for _, k := range s.keys {
		if h.subs[k] == nil {
			h.subs[k] = map[*subscription]struct{}{}
		}
		h.subs[k][s] = struct{}{}
	}
	h.mu.Unlock()
	h.signal()
}

func (h *wakeHub) unregister(s *subscription) {
	h.mu.Lock()
	for _, k := range s.keys {
		delete(h.subs[k], s)
		if len(h.subs[k]) == 0 {
			delete(h.subs, k)
		}
	}
	h.mu.Unlock()
	h.signal()
}

func (h *wakeHub) signal() {
	if h.parent != nil {
		h = h.parent
	}
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *wakeHub) wake(keys []string) {
	if h.parent != nil {
		h = h.parent
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		for s := range h.subs[k] {
			s.poke(s.wakeCh)
		}
	}
}

func (h *wakeHub) wakeAll() {
	if h.parent != nil {
		h = h.parent
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.subs {
		for s := range subs {
			s.poke(s.wakeCh)
		}
	}
}

// prefixes returns the smallest set of key prefixes covering every watched
// key: Redis refuses overlapping prefixes, and a queue's bucket keys all
// start with its step-0 key.
func (h *wakeHub) prefixes() []string {
	h.mu.Lock()
	keys := make([]string, 0, len(h.subs)+1)
	for k := range h.subs {
		keys = append(keys, k)
	}
	h.mu.Unlock()
	keys = append(keys, h.bindingPrefix()) // the binding sets, for the route cache
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if len(out) > 0 && strings.HasPrefix(k, out[len(out)-1]) {
			continue
		}
		out = append(out, k)
	}
	return out
}

func (h *wakeHub) bindingPrefix() string { return h.c.ks.binding("") }

func (h *wakeHub) close() {
	close(h.stop)
	<-h.done
}

func (h *wakeHub) run() {
	defer close(h.done)
	if h.c.ks.sharded {
		h.runSharded()
		return
	}
	o := h.c.opts
	var dialer func(context.Context, string, string) (net.Conn, error)
	if cc, ok := h.c.rdb.(*goredis.ClusterClient); ok {
		dialer = ownerDialer(cc, h.c.ks.prefix, o, &h.owner, h.dialed)
	}
	h.pub = o.newClient(clientTweaks{poolSize: 1, dialer: dialer, onConnect: func(ctx context.Context, cn *goredis.Conn) error {
		id, err := cn.ClientID(ctx).Result()
		if err == nil {
			h.clientID.Store(id)
		}
		return nil
	}})
	h.track = o.newClient(clientTweaks{poolSize: 1, dialer: dialer})
	defer h.pub.Close()
	defer h.track.Close()

	ctx, cancel := context.WithCancel(context.Background())
	h.ps = h.pub.Subscribe(ctx, "__redis__:invalidate")
	h.recvWG.Add(1)
	go h.receive(ctx)
	defer func() {
		cancel()
		h.ps.Close()
		h.recvWG.Wait()
	}()

	defer h.c.routes.watch(false)
	ticker := time.NewTicker(verifyInterval)
	defer ticker.Stop()
	current := ""
	for {
		select {
		case <-h.stop:
			return
		case <-h.changed:
			current = ""
		case <-ticker.C:
		}
		want := h.prefixes()
		key := strings.Join(want, "\x00") + "\x00" + itoa64(h.clientID.Load())
		if key != current || !h.verify(ctx, want) {
			// Until tracking is on again, changes may go unannounced.
			h.c.routes.watch(false)
			if h.configure(ctx, want) {
				current = key
			} else {
				current = ""
			}
		}
	}
}

// receive reads invalidation messages and wakes the subscriptions whose
// keys changed. A (re)subscription means a new subscriber connection, whose
// ID tracking must be redirected to.
func (h *wakeHub) receive(ctx context.Context) {
	defer h.recvWG.Done()
	for {
		msg, err := h.ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// A FLUSHDB's invalidation carries no keys, which go-redis
			// reports as an error; a broken connection is one too. Either
			// way announcements may have been missed: trust no route
			// until tracking is set up again.
			h.c.routes.watch(false)
			h.signal()
			h.wakeAll()
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			h.signal()
		case *goredis.Message:
			if len(m.PayloadSlice) > 0 {
				h.announce(m.PayloadSlice)
				h.wake(m.PayloadSlice)
			} else {
				h.c.routes.watch(false)
				h.signal()
				h.wakeAll()
			}
		}
	}
}

// announce drops the route tables of the exchanges whose binding sets
// changed.
func (h *wakeHub) announce(keys []string) {
	prefix := h.bindingPrefix()
	for _, k := range keys {
		if ex, ok := strings.CutPrefix(k, prefix); ok {
			h.c.routes.changed(ex)
		}
	}
}

// configure (re)enables tracking for the prefixes, redirected to the
// subscriber, and wakes every consumer, since writes may have been missed.
func (h *wakeHub) configure(ctx context.Context, prefixes []string) bool {
	defer h.wakeAll()
	id := h.clientID.Load()
	if id == 0 {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := h.track.Do(cctx, "CLIENT", "TRACKING", "OFF").Err(); err != nil {
		h.unavailable(err)
		return false
	}
	if len(prefixes) == 0 {
		h.active.Store(false)
		return true
	}
	args := []any{"CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST"}
	for _, p := range prefixes {
		args = append(args, "PREFIX", p)
	}
	if err := h.track.Do(cctx, args...).Err(); err != nil {
		h.unavailable(err)
		return false
	}
	h.active.Store(true)
	h.c.routes.watch(true)
	return true
}

func (h *wakeHub) unavailable(err error) {
	h.active.Store(false)
	if !h.warned {
		h.warned = true
		h.c.log.Warn("redis: client tracking unavailable; consumers poll their queues instead (every 100 ms unless polling_interval is set)", "error", err)
	}
}

// verify checks with CLIENT TRACKINGINFO that tracking is on, in broadcast
// mode, redirected to the current subscriber, with the prefixes wanted.
func (h *wakeHub) verify(ctx context.Context, want []string) bool {
	if len(want) == 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if h.parent == nil && h.moved(cctx) {
		return false
	}
	v, err := h.track.Do(cctx, "CLIENT", "TRACKINGINFO").Slice()
	if err != nil {
		return false
	}
	var flags, prefixes []string
	var redirect int64
	for i := 0; i+1 < len(v); i += 2 {
		name, _ := v[i].(string)
		switch name {
		case "flags":
			flags = strings_(v[i+1])
		case "redirect":
			redirect, _ = v[i+1].(int64)
		case "prefixes":
			prefixes = strings_(v[i+1])
		}
	}
	slices.Sort(prefixes)
	return slices.Contains(flags, "on") && slices.Contains(flags, "bcast") && !slices.Contains(flags, "broken_redirect") &&
		redirect == h.clientID.Load() && slices.Equal(prefixes, want)
}

// moved reports, on a cluster, that the keyprefix's slot has left the node
// the hub's connections are on (a reshard, or a failover those connections
// did not notice): tracking there no longer sees the writes. It then
// closes both connections, so that they are made again on the slot's
// owner (ownerDialer), and the subscriber's new ID is tracked again.
func (h *wakeHub) moved(ctx context.Context) bool {
	cc, ok := h.c.rdb.(*goredis.ClusterClient)
	if !ok {
		return false
	}
	err := h.track.Do(ctx, "EXISTS", h.c.ks.prefix).Err()
	if err == nil {
		return false
	}
	// "MOVED <slot> <host:port>"
	f := strings.Fields(err.Error())
	if len(f) != 3 || f[0] != "MOVED" {
		return false
	}
	h.owner.Store(&f[2])
	cc.ReloadState(ctx)
	// Closing them from this side makes go-redis dial both again, the
	// subscriber included, and the subscriber's new ID is tracked.
	h.connsMu.Lock()
	conns := slices.Collect(maps.Keys(h.conns))
	h.connsMu.Unlock()
	for _, nc := range conns {
		nc.Close()
	}
	return true
}

// dialed keeps a connection ownerDialer made, for moved to close, until
// it is closed.
func (h *wakeHub) dialed(nc net.Conn) net.Conn {
	h.connsMu.Lock()
	defer h.connsMu.Unlock()
	if h.conns == nil {
		h.conns = map[net.Conn]struct{}{}
	}
	tc := &trackedConn{Conn: nc, h: h}
	h.conns[tc] = struct{}{}
	return tc
}

type trackedConn struct {
	net.Conn
	h *wakeHub
}

func (c *trackedConn) Close() error {
	c.h.connsMu.Lock()
	delete(c.h.conns, c)
	c.h.connsMu.Unlock()
	return c.Conn.Close()
}

func strings_(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// runSharded is run in the sharded mode. Tracking announces the writes
// made on the node it is enabled on, and a sharded cluster's queues are on
// every master: so the hub keeps a child per master, each with its own
// subscriber and tracking connections to that master alone (nodeDialer),
// tracking the same prefixes (every node announces the writes to its own
// keys among them). Every verifyInterval, and whenever the subscriptions
// change, it lists the masters again (a failover or a new master starts a
// child, a node no longer master loses its own) and checks each child's
// tracking as the single-node hub checks its own. Consumers poll at the
// fallback rate unless every master's tracking is on. Routes are not
// trusted in this mode (publish.go reads the binding sets every time), so
// the announcements only wake consumers.
func (h *wakeHub) runSharded() {
	cc, ok := h.c.rdb.(*goredis.ClusterClient)
	if !ok {
		<-h.stop
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	children := map[string]*wakeHub{}
	current := map[string]string{}
	defer func() {
		h.active.Store(false)
		for _, ch := range children {
			ch.closeChild()
		}
	}()
	ticker := time.NewTicker(verifyInterval)
	defer ticker.Stop()
	for {
		want := h.prefixes()
		if masters, err := h.masters(ctx, cc); err == nil {
			for addr, ch := range children {
				if !masters[addr] {
					ch.closeChild()
					delete(children, addr)
					delete(current, addr)
				}
			}
			for addr := range masters {
				if children[addr] == nil {
					children[addr] = h.newChild(ctx, addr)
				}
			}
		}
		all := len(children) > 0
		for addr, ch := range children {
			key := strings.Join(want, "\x00") + "\x00" + itoa64(ch.clientID.Load())
			if key != current[addr] || !ch.verify(ctx, want) {
				if ch.configure(ctx, want) {
					current[addr] = key
				} else {
					current[addr] = ""
					all = false
				}
			}
		}
		h.active.Store(all)
		select {
		case <-h.stop:
			return
		case <-h.changed:
		case <-ticker.C:
		}
	}
}

// masters returns the addresses of the cluster's masters, as the cluster
// client knows them (reloaded when it finds them out of date).
func (h *wakeHub) masters(ctx context.Context, cc *goredis.ClusterClient) (map[string]bool, error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var mu sync.Mutex
	out := map[string]bool{}
	err := cc.ForEachMaster(cctx, func(_ context.Context, node *goredis.Client) error {
		mu.Lock()
		out[node.Options().Addr] = true
		mu.Unlock()
		return nil
	})
	return out, err
}

// newChild starts the tracking pair of the master at addr.
func (h *wakeHub) newChild(ctx context.Context, addr string) *wakeHub {
	o := h.c.opts
	ch := &wakeHub{c: h.c, parent: h}
	dialer := nodeDialer(addr, o)
	ch.pub = o.newClient(clientTweaks{poolSize: 1, dialer: dialer, onConnect: func(ctx context.Context, cn *goredis.Conn) error {
		id, err := cn.ClientID(ctx).Result()
		if err == nil {
			ch.clientID.Store(id)
		}
		return nil
	}})
	ch.track = o.newClient(clientTweaks{poolSize: 1, dialer: dialer})
	cctx, cancel := context.WithCancel(ctx)
	ch.stop = make(chan struct{})
	ch.ps = ch.pub.Subscribe(cctx, "__redis__:invalidate")
	ch.recvWG.Add(1)
	go ch.receive(cctx)
	go func() {
		<-ch.stop
		cancel()
	}()
	return ch
}

// closeChild stops a child and closes its connections.
func (h *wakeHub) closeChild() {
	close(h.stop)
	h.ps.Close()
	h.recvWG.Wait()
	h.pub.Close()
	h.track.Close()
}
