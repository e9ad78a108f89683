package redis

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Redis Cluster. A redis+cluster:// URL names seed nodes; the connection
// goes through go-redis's ClusterClient, which learns the slot map from
// whichever seed answers and follows MOVED and ASK redirections
// (resharding, failovers) by itself.
//
// Redis Cluster refuses a command, script or transaction whose keys hash
// to different slots (CROSSSLOT). Kombu's layout has several: BRPOP over a
// queue's priority lists, the take script (lists, unacked, unacked_index,
// the receipt), the routing publish script (binding set and queues), the
// restore's transaction. Two modes avoid them, chosen by cluster_mode:
//
// cluster_mode=sharded (the default) gives each queue its own hash tag,
// its name, so each queue lives on one master and queues spread over the
// cluster (global_keyprefix, if any, must hold no brace):
//
//	<prefix>{<queue>}                    LIST, priority step 0
//	<prefix>{<queue>}\x06\x16<step>       LIST, priority steps 3, 6 and 9
//	<prefix>{<queue>}:unacked            HASH, the queue's unacked records (Kombu's form)
//	<prefix>{<queue>}:unacked_index      ZSET, their scores
//	<prefix>{<queue>}:unacked_mutex      STRING, the queue's restore lock
//	<prefix>{<queue>}:<receipt key>      STRING, a take's receipt (receipt.go)
//	<prefix>_kombu.binding.<exchange>    SET, as Kombu's, in a slot of its own
//
// Every script and transaction then touches one queue's keys, in one slot:
// a take from a subscription's queues runs the take script once per queue,
// first each for an equal share of the free prefetch, pipelined (the
// cluster client sends each master its queues' takes at once, so a look
// at idle queues is one round trip), then one queue after another, in the
// rotation's order, for the rest from the queues that gave their whole
// share (so priorities order messages within a queue, not across the
// queues of one subscription; see conn.take); acks, lease
// renewals, requeues, returns and receipts address the queue's own unacked
// keys (a connection records each unsettled message with its queue); the
// restorer finds the queues' unacked_index keys by SCAN on every master and
// restores each queue under its own lock. A publish through an exchange
// reads the binding set (one SMEMBERS per exchange per pipeline, every
// time: nothing announces changes here, see below) and then LPUSHes to each
// queue routed to, pipelined, which the cluster client sends to each
// master at once. Consumers of empty queues are woken as on one node, by
// client tracking, but on every master: client tracking announces only the
// writes made on its own node, so the wake hub keeps a subscriber and a
// tracking connection on each master (wake.go, runSharded), following
// failovers as the master list changes. There is no blocking take: a take
// is a script, and scripts cannot block; the wake-ups stand in for it.
//
// What the sharded mode gives up, against one node or the kombu mode:
//   - a publish routed to several queues is several writes, not one
//     script: if one fails, the publish fails (nothing confirmed is lost)
//     but the queues written before it have the message, and a publish
//     made again duplicates it there; a binding changed between the read
//     of the set and the pushes is used by the next publish;
//   - dead-lettering and delayed messages, which move a message between a
//     queue's unacked keys and other queues' (or a delay index) in one
//     step: the features are not offered (transport.ErrNotSupported);
//   - a queue name starting with "}" (its hash tag would be empty) is
//     refused;
//   - the restorer finds the queues' unacked_index keys by SCAN of every
//     master's keyspace, every restore interval (10 s by default), per
//     connection that consumes: cheap for a broker's keyspace, not for a
//     master shared with millions of application keys;
//   - a take over several queues whose reply is lost for one queue while
//     others answered returns what it took from that queue now, or once
//     Redis answers; should a later take from that queue overwrite the
//     receipt first, those messages wait for the visibility timeout (they
//     are not lost);
//   - the names of the unacked keys are fixed (unacked_key,
//     unacked_index_key and unacked_mutex_key apply to the kombu mode);
//   - Python Kombu cannot read the layout (Kombu has no cluster support,
//     and its keys have no braces): use the kombu mode to share queues
//     with Python.
//
// cluster_mode=kombu puts every key in one slot by requiring a hash tag in
// global_keyprefix ("{kombu}:" when none is given; a global_keyprefix that
// holds a hash tag also selects this mode when cluster_mode is not given,
// as it did before the sharded mode existed). Redis hashes only the text
// between the first "{" and the next "}", so "{kombu}:orders" and
// "{kombu}:unacked" share a slot. Every script and transaction of the
// single-node transport then runs unchanged, and Python Kombu configured
// with the same global_keyprefix reads and writes the same keys. The cost
// is no sharding: the whole keyspace lives on the master that owns that
// slot (its replicas follow it), so a cluster brings failover, not
// throughput. Kombu 5.2's redis transport has no cluster client: a plain
// redis.Redis pointed at the master owning the tag's slot works, since
// every key it touches is in that slot (any other node answers MOVED).
//
// What differs from a single node in both modes, besides the URL:
//   - the database is always 0 (a cluster has no others);
//   - consumers' wake-ups (client tracking, wake.go) are set up, in the
//     kombu mode, on the master owning the tag's slot, found again after
//     each reconnect, so a failover or a reshard of that slot moves them
//     with it; in the sharded mode on every master;
//   - a SCAN (deleting a queue removes it from every binding set; the
//     sharded restorer) runs on every master;
//   - fanout uses plain PUB/SUB, which a cluster broadcasts to every node.

// defaultClusterPrefix is global_keyprefix on a cluster URL that sets none.
const defaultClusterPrefix = "{kombu}:"

type clusterURL struct {
	nodes      []string
	user, pass string
	query      url.Values
	path       string
	hasPath    bool
}

// parseClusterURL reads redis+cluster://[user:password@]host1[:port],host2[:port]/[0][?options].
func parseClusterURL(u *transport.URL) (*clusterURL, error) {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	rest := strings.TrimPrefix(u.SubURL, "cluster://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts, hasUser := strings.Cut(authority, "@")
	if !hasUser {
		userinfo, hosts = "", authority
	}
	var nodes []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			nodes = append(nodes, hostPort(h, defaultPort))
		}
	}
	if len(nodes) == 0 {
		return nil, bad("redis+cluster:// needs at least one node: redis+cluster://host1:7000,host2:7001")
	}
	// The rest is an ordinary URL's: let the common parser read it, with
	// the first node as its host.
	first := nodes[0]
	if userinfo != "" {
		first = userinfo + "@" + first
	}
	p, err := transport.Parse("redis://" + first + tail)
	if err != nil {
		return nil, err
	}
	return &clusterURL{nodes: nodes, user: p.User, pass: p.Password, query: p.Query, path: p.Path, hasPath: p.HasPath}, nil
}

// checkCluster validates a cluster URL's options once they are all read.
func (o *options) checkCluster(u *transport.URL, query url.Values) error {
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: u.String(), Reason: fmt.Sprintf(format, args...)}
	}
	if o.cluster == nil {
		if query.Has("cluster_mode") {
			return bad("option cluster_mode is for redis+cluster:// URLs")
		}
		return nil
	}
	if o.db != 0 {
		return bad("a Redis Cluster has database 0 only, not %d", o.db)
	}
	mode := query.Get("cluster_mode")
	if mode == "" {
		// A global_keyprefix with a hash tag asks for Kombu's layout in
		// that tag's slot, as before the sharded mode existed.
		mode = "sharded"
		if hashTag(o.keyprefix) != "" {
			mode = "kombu"
		}
	}
	switch mode {
	case "kombu":
	case "sharded":
		if strings.ContainsAny(o.keyprefix, "{}") {
			return bad("global_keyprefix=%q holds a brace: in cluster_mode=sharded each queue's name is its keys' hash tag, and a brace in the prefix would take its place", o.keyprefix)
		}
		o.sharded = true
		return nil
	default:
		return bad("cluster_mode=%q: want sharded or kombu", mode)
	}
	if !query.Has("global_keyprefix") {
		o.keyprefix = defaultClusterPrefix
	}
	if hashTag(o.keyprefix) == "" {
		return bad("global_keyprefix=%q has no hash tag: on a cluster it must hold one, as {app}: so that every key of the layout hashes to one slot (else CROSSSLOT)", o.keyprefix)
	}
	return nil
}

// hashTag returns what Redis Cluster hashes in a key: the text between
// the first "{" and the next "}", if not empty; "" when the key has no tag.
func hashTag(key string) string {
	_, after, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	tag, _, ok := strings.Cut(after, "}")
	if !ok {
		return ""
	}
	return tag
}

// newClusterClient makes the connection's cluster client.
func (o *options) newClusterClient(u *goredis.UniversalOptions) *goredis.ClusterClient {
	u.Addrs = o.cluster
	return goredis.NewClusterClient(u.Cluster())
}

// clusterCheck turns the error of a cluster client pointed at a server
// that is not a cluster into one that says so.
func clusterCheck(err error) error {
	if err != nil && strings.Contains(err.Error(), "cluster support disabled") {
		return fmt.Errorf("%w: redis+cluster:// names a Redis that is not a cluster (cluster-enabled no); use redis:// for it: %v", transport.ErrInvalidURL, err)
	}
	return err
}

// ownerDialer dials the master that owns the slot of key, for connections
// that must sit on that node: client tracking only announces writes made
// on the node it is enabled on. The owner is the one a MOVED reply last
// named (hint, set by the wake hub: the cluster client's slot map may not
// have caught up yet), else the one the cluster client knows; a hinted
// node that cannot be reached is forgotten. dialed is given every
// connection made, and returns the one to use.
func ownerDialer(cc *goredis.ClusterClient, key string, o *options, hint *atomic.Pointer[string], dialed func(net.Conn) net.Conn) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		addr := ""
		if p := hint.Load(); p != nil {
			addr = *p
		} else {
			node, err := cc.MasterForKey(ctx, key)
			if err != nil {
				return nil, err
			}
			addr = node.Options().Addr
		}
		nc, err := dialNode(ctx, addr, o, dialed)
		if err != nil {
			hint.Store(nil)
		}
		return nc, err
	}
}

// nodeDialer dials the node at addr, always: the sharded mode's wake-up
// connections, one pair per master (wake.go).
func nodeDialer(addr string, o *options) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialNode(ctx, addr, o, func(nc net.Conn) net.Conn { return nc })
	}
}

// dialNode connects to addr, with TLS if the options say so.
func dialNode(ctx context.Context, addr string, o *options, dialed func(net.Conn) net.Conn) (net.Conn, error) {
	d := net.Dialer{Timeout: o.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc = dialed(nc)
	if o.tls == nil {
		return nc, nil
	}
	conf := o.tls.Clone()
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// scanKeys calls fn with the keys matching the glob: batch by batch on a
// single server; on a cluster, once with those of every master (SCAN
// walks one node's keys only).
func (c *conn) scanKeys(ctx context.Context, match string, fn func(keys []string) error) error {
	scan := func(ctx context.Context, cl goredis.Cmdable, fn func([]string) error) error {
		var cursor uint64
		for {
			keys, next, err := cl.Scan(ctx, cursor, match, 1000).Result()
			if err != nil {
				return err
			}
			if err := fn(keys); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	cc, ok := c.rdb.(*goredis.ClusterClient)
	if !ok {
		return scan(ctx, c.rdb, fn)
	}
	var mu sync.Mutex
	var all []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		return scan(ctx, node, func(keys []string) error {
			mu.Lock()
			all = append(all, keys...)
			mu.Unlock()
			return nil
		})
	})
	if err != nil {
		return err
	}
	return fn(all)
}
