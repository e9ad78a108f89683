// Package redis is kombu-go's Redis transport, built on
// github.com/redis/go-redis/v9. It registers the "redis", "rediss" and
// "sentinel" schemes, as Kombu does, and keeps Kombu's Redis layout byte for
// byte, so that Python Kombu and Celery read what it writes and the other
// way round, and redis-cli shows the same keys whichever side wrote them.
//
// Import it for its side effect:
//
//	import _ "github.com/kombu-go/kombu/transports/redis"
//
// # URLs
//
//	redis://[user:password@]host[:6379][/db]
//	rediss://[user:password@]host[:6379][/db]           TLS, verified
//	redis+socket:///run/redis.sock[?virtual_host=db]
//	sentinel://[user:password@]host[:26379][/db]?master_name=mymaster&sentinel=host2:26379&sentinel=host3
//	redis+cluster://[user:password@]host1[:6379],host2[:6379]/[?cluster_mode=sharded|kombu]   Redis Cluster (cluster.go)
//
// The path is the database number (0 when absent, "/" or empty), as Kombu's
// virtual host. User and password authenticate to Redis (the user through
// Redis 6 ACLs). Query options, with Kombu's transport option names:
//
//	visibility_timeout=3600       seconds before an unacknowledged message is restored (Kombu's default)
//	global_keyprefix=app:         prefixed to every key and channel name
//	polling_interval=1            seconds a consumer waits for a wake-up before looking anyway (also brpop_timeout)
//	unacked_restore_interval=10   seconds between restores (default: 10, or half the visibility timeout if shorter)
//	unacked_restore_limit=0       entries restored per pass (0: all)
//	unacked_mutex_expire=300      seconds the restore lock lives
//	unacked_key, unacked_index_key, unacked_mutex_key   the key names (defaults unacked, unacked_index, unacked_mutex)
//	fanout_prefix=true            false: no "/<db>." prefix on fanout channels (Kombu 3); or the prefix itself
//	fanout_patterns=true          false: publish fanout messages on the exchange's channel only
//	exact_bindings=false          true: check the binding set in Redis on every publish (see Routing below)
//	max_connections=20            size of the command connection pool (default: go-redis's, 10 per CPU)
//	socket_timeout=3              seconds for a command's reply
//	socket_connect_timeout=5      seconds to connect
//	client_name=orders            CLIENT SETNAME of every connection
//	ssl=true                      TLS on a redis:// or sentinel:// URL
//	ssl_cert_reqs=required        required (default), optional or none; also CERT_REQUIRED, ...
//	ssl_ca_certs=/ca.pem          CA bundle to verify the server with
//	ssl_certfile=/c.pem           client certificate (ssl_keyfile: its key)
//	ssl_check_hostname=false      verify the chain but not the host name
//	insecure=true                 skip certificate verification altogether
//	master_name=mymaster          sentinel:// only, required: the master Sentinel monitors
//	sentinel=h2:26379             sentinel:// only, repeatable or comma-separated: more Sentinels
//	sentinel_username, sentinel_password   credentials for the Sentinels themselves
//	cluster_mode=sharded          redis+cluster:// only: sharded (default: each queue in its own slot) or kombu
//	                              (every key under global_keyprefix's hash tag; implied by a prefix with one)
//
// Any other key is an error wrapping transport.ErrInvalidURL. Options from
// transport.Config (connect timeout, TLS configuration, connection name)
// win over the URL's. Kombu does not verify a rediss:// server's certificate
// unless told to; this transport verifies it (against the system roots, or
// ssl_ca_certs) unless told not to, with insecure=true or ssl_cert_reqs=none.
//
// Kombu lists Sentinels as separate URLs, "sentinel://h1:26379;sentinel://h2:26379",
// but a ";" list reaches a driver one URL at a time, as failover
// alternatives. Give the other Sentinels with sentinel= instead:
// "sentinel://h1:26379?master_name=m&sentinel=h2:26379". Connections go
// through go-redis's failover client, which asks the Sentinels for the
// current master and follows failovers.
//
// A redis+cluster:// URL lists seed nodes of a Redis Cluster (any one that
// answers is enough) and goes through go-redis's cluster client, which
// follows MOVED and ASK. Redis Cluster refuses scripts and transactions
// whose keys are in different slots, so the layout is adapted, in one of
// two modes. cluster_mode=sharded (the default) gives every key of a queue
// the queue's name as hash tag ("{orders}", "{orders}:unacked", ...), so
// each queue lives on one master and queues spread over the cluster; each
// script touches one queue's slot, a publish to several queues is several
// pipelined writes, there is no dead-lettering or delay, consumers are
// woken by client tracking on every master, and Python Kombu cannot read
// the layout. cluster_mode=kombu
// requires a hash tag in global_keyprefix ("{kombu}:" by default; a prefix
// with a tag selects this mode), which puts the whole layout in one slot on
// one master: Kombu compatible (Python Kombu with the same prefix, pointed
// at that master, shares the keys), failover-capable, not sharded. See
// cluster.go.
//
// # Layout
//
// A message is Kombu's JSON envelope, written as Python's json.dumps writes
// it (", " and ": " separators, non-ASCII escaped), with this key order:
//
//	{"body": "<base64 of the serialized, compressed body>",
//	 "content-encoding": "utf-8", "content-type": "application/json",
//	 "headers": {<application headers; "compression": "<mime type>" when compressed>},
//	 "properties": {<correlation_id, reply_to, message_id, timestamp (epoch
//	                 seconds), type, user_id, app_id: those set>,
//	                "delivery_mode": 2,
//	                "delivery_info": {"exchange": "<exchange>", "routing_key": "<key>"},
//	                "priority": 0, "body_encoding": "base64",
//	                "delivery_tag": "<uuid4, one per queue's copy>"}}
//
// Header values are JSON: strings, numbers, booleans, null, lists and
// objects; a time.Time is written as Kombu writes a datetime, an ISO 8601
// string ("2024-05-06T07:08:09Z"), and comes back a string, except in
// x-death (see dead-lettering under Differences from Kombu).
//
// The envelope is LPUSHed to the queue's list; consumers take from the
// right, so queues are FIFO. A queue has four lists, one per priority step:
// "<queue>" for priorities 0 to 2 and "<queue>\x06\x163",
// "<queue>\x06\x166", "<queue>\x06\x169" for 3-5, 6-8 and 9 and above.
// Lower numbers are served first, as Kombu does on Redis, which is the
// opposite of AMQP. Every queue has them: x-max-priority is accepted and
// changes nothing.
//
// Exchanges exist only in the memory of the connection that declared them,
// as in Kombu: an exchange this connection did not declare is taken to be
// direct (amq.direct, amq.topic and amq.fanout are known). Bindings are
// Redis sets, "_kombu.binding.<exchange>", of "<key>\x06\x16<pattern>\x06\x16<queue>",
// where the pattern is the Python regular expression Kombu matches topic
// keys with. On Redis a topic "*" matches one or more words, not exactly
// one, and "a.#" does not match "a", because of the regular expression
// Kombu builds from the pattern; kombu-go matches as Kombu does, so both
// sides route alike. Publishing to a direct or topic
// exchange routes with the binding set as it is at that moment (read once
// and cached; the script that publishes checks, in the same round trip,
// that the set has not changed, and the publish is routed again if it
// has), so a binding added by any client takes effect at once. A fanout exchange
// PUBLISHes on the channel "/<db>.<exchange>", or "/<db>.<exchange>/<key>"
// with a routing key; the connection that binds a queue to it subscribes
// with the binding's key (PSUBSCRIBE, on a PUB/SUB connection of its own,
// as Kombu's consumers do) before Bind returns, and copies each broadcast
// into the queue's list until the binding goes: Unbind, deleting the
// queue or the exchange, or closing the connection.
//
// Unacknowledged messages are recorded as Kombu records them: the "unacked"
// hash maps a delivery tag to [message, exchange, routing key] and the
// "unacked_index" sorted set scores it with the time it was taken. Ack
// removes both. Reject with requeue pushes the message to the back of its
// queue (LPUSH) marked redelivered ("redelivered": true in its headers and
// in its delivery_info, as Kombu's restore writes it); reject without
// requeue drops it, unless the queue has a dead-letter exchange (see
// Differences). A message unacknowledged for visibility_timeout goes back
// to the front of its queue (RPUSH), marked redelivered, by the first
// consumer (Go or Python) whose periodic restore gets the "unacked_mutex"
// lock. Closing a connection returns its unsettled messages at once.
//
// Delayed messages (transport.FeatureDelay, which Kombu's Redis transport
// does not have) wait in sorted sets of kombu-go's, "_kombu_go.delayed.q:<queue>"
// with the index "_kombu_go.delayed", which no Kombu process reads, until a
// kombu-go connection moves them into the lists when due: see delay.go.
//
// # Differences from Kombu
//
//   - Taking is atomic: a script pops the message and records it in
//     unacked and unacked_index in one step, so a consumer that dies at any
//     moment loses nothing (Kombu pops with BRPOP and records afterwards).
//     Consumers take up to their free prefetch per round trip.
//   - Leases: while a message is unsettled, its connection renews its
//     unacked_index score (four times per visibility timeout, at least
//     every 30 s), so a handler that runs longer than the visibility timeout
//     is not handed to a second consumer while it runs. A message is
//     restored only after its connection stopped renewing it for a
//     visibility timeout: the process died or lost Redis.
//   - The unacked record names the queue the message was taken from: its
//     exchange is "" and its routing key the queue, which Kombu's restore
//     reads as "push to that queue". Kombu records the message's exchange
//     and routing key, and its restore routes them again through the
//     bindings with the exchange's type as the restoring process knows it:
//     a topic message restored by a process that never declared the
//     exchange is dropped, and a message taken from one of two queues bound
//     with the same key is restored to both.
//   - Each queue's copy of a routed message gets its own delivery tag;
//     Kombu gives every copy the same tag, so their unacked records collide.
//     When Go takes a message whose tag is already recorded (a copy Kombu
//     published), it records it under "<tag>.2".
//   - Restored and requeued messages go back to the bucket of their
//     priority; Kombu puts them in the priority-0 list.
//   - A stale unacked record (written by Kombu) that routes to no queue from
//     this connection is left where it is, for a restorer that knows its
//     exchange, and logged; Kombu drops it.
//   - Consumers do not wait in BRPOP, which pops, since a scripted take
//     cannot block: a consumer that finds its queues empty waits for Redis
//     to announce a write to one of its lists, through client-side
//     caching's broadcast mode (Redis 6 and later: CLIENT TRACKING ... BCAST
//     with the queues' key prefixes, redirected to a connection subscribed
//     to __redis__:invalidate), which needs no server configuration; it
//     also looks every polling_interval in case a wake-up is missed, or
//     every 100 ms where tracking is refused (an ACL without CLIENT).
//   - Acknowledgements are sent in the background, batched: Ack returns at
//     once, as an AMQP basic.ack does. While Redis does not answer they are
//     kept and sent once it does (see "When Redis goes away"), as are
//     requeues and dead-letters.
//   - A broadcast is received by the connection that bound the queue, from
//     the moment Bind returns, whether or not anything consumes the queue
//     yet; it is copied into the queue's list and taken from there, so
//     prefetch, acknowledgement and restore apply to it. Kombu subscribes
//     only when a consumer starts and hands broadcasts to it straight from
//     PUB/SUB, so a broadcast sent between binding and consuming is lost.
//     It is still at-most-once on the wire: a broadcast published while no
//     connection holding the binding is subscribed (none is open, or its
//     PUB/SUB connection is reconnecting) is lost, as with Kombu. A queue
//     bound on one connection with several keys whose patterns match the
//     same broadcast gets one copy, not one per pattern.
//   - Unbind removes the binding from Redis (Kombu 5.2's unbind does not),
//     and deleting a queue removes it from every binding set, not only
//     from those its connection made.
//   - Mandatory publishing is supported: ErrUnroutable when no binding
//     matches, or when a fanout exchange has no subscriber (no open
//     connection holds a binding whose pattern matches). A message
//     published with NotifyUnroutable that goes nowhere is reported the
//     same way, to Config.Unroutable, without failing the publish.
//   - A dead letter says why: a message the kombu-go consumer rejected
//     because its handler failed carries the error's text in its
//     "kombu_error" header (transport.ErrorHeader), beside x-death, which
//     RabbitMQ's dead-lettering cannot do.
//   - Dead-lettering (FeatureDeadLetter), which Kombu's Redis transport
//     does not have, is emulated for kombu-go consumers.
//     A queue declared with x-dead-letter-exchange ("" for the default
//     exchange) and optionally x-dead-letter-routing-key keeps them in the
//     declaring connection's memory, as exchanges are kept; a reject
//     without requeue on that connection republishes the message to the
//     exchange as RabbitMQ does: with the dead-letter routing key, else the
//     message's own, an x-death header (a list of tables: count, reason
//     "rejected", queue, exchange, routing-keys, time) whose count grows
//     with each death in the same queue, for the same reason, of a message
//     published to the same exchange, and x-first-death-* (RabbitMQ's
//     record, written by package virtual for every transport that
//     dead-letters by itself). Removing the unacked record and pushing to the
//     routed queues is one script, so a crash neither loses nor duplicates
//     the message. Routing is publishing's (the exchange's type as this
//     connection knows it, the binding set as it is now), except that a
//     fanout dead-letter exchange pushes to the lists of its bound queues
//     instead of PUBLISHing, so no subscriber need be listening. Only
//     rejections dead-letter: there is no expiry (no FeatureTTL) and no
//     length limit on Redis. The x-death time is stored as an ISO 8601
//     string in UTC, whole seconds ("2024-05-06T07:08:09Z"), as Kombu 5.2's
//     JSON encoder writes a datetime (virtual.AppendISOTime), and delivered as a time.Time, as RabbitMQ's
//     and the memory broker's are (Python reads the string). Python Kombu
//     consumers of the same queue, and Go processes that did not declare
//     it, do not dead-letter: their rejects drop the message. A message
//     that is not a Kombu envelope is dropped, as it cannot carry x-death.
//   - Per-message expiration is refused (Kombu stores it and never enforces
//     it), as are exclusive consumers, binding and exchange arguments,
//     ifUnused on queue deletion (Redis does not know consumers), consuming
//     amq.rabbitmq.reply-to, and every queue argument except
//     x-max-priority, x-queue-type=classic, x-dead-letter-exchange and
//     x-dead-letter-routing-key.
//   - Deleting a queue ends this connection's subscriptions to it, as
//     RabbitMQ cancels a deleted queue's consumers; Redis does not know the
//     consumers of other connections, which keep waiting on the name.
//   - Exclusive queues, and auto-delete queues bound to a fanout exchange,
//     are deleted when the connection that declared them closes.
//
// # Routing
//
// Bindings are Kombu's sets, which any client may change. A publish
// through an exchange routes with a cached copy of the set, checked by the
// publish script, or, while the connection watches the sets (client
// tracking: Redis announces every write to them), trusted without a check,
// which makes a publish to one queue a plain LPUSH. A binding changed by
// any client is then used by every publish that starts after Redis's
// announcement reached this process: normally well under a millisecond; at
// worst, when tracking lapses unannounced, within 2 s (when the hub next
// verifies tracking; until then nothing is trusted once a lapse is known).
// exact_bindings=true checks the set on every publish instead, so that the
// very next publish uses a change, as Kombu does (Kombu reads the set on
// every publish, one more round trip), at a script run per publish.
//
// # Connections and costs
//
// A connection is a go-redis client with a pool of command connections.
// Consumers never hold a pooled connection while they wait (they wait for a
// wake-up, not in BRPOP), so the pool does not have to grow with the number
// of consumers: go-redis's default (10 per CPU) serves many; max_connections
// sets it. Besides the pool, a connection that consumes opens two
// connections for wake-ups, and a connection that binds queues to fanout
// exchanges one PUB/SUB connection for all of them.
//
// A publish is one round trip (LPUSH, or a script for an exchange with
// bindings); PublishBatch pipelines up to 512 messages per round trip. A
// consumer takes up to its free prefetch in one round trip and acknowledges
// in batches, against Kombu's three round trips per message (BRPOP, the
// unacked record, the acknowledgement). An idle consumer is woken by every
// write to its queues' keys, including other consumers' takes, so N idle
// consumers of one queue make about 2N cheap, empty take calls per message
// at low rates.
//
// # When Redis goes away
//
// go-redis reconnects by itself, and a connection rides out a Redis that
// is slow (a command that times out fails alone) and connections killed
// one by one (go-redis retries on a new one). But when a command fails
// because Redis cannot be reached at all (refused, reset, a dial that
// fails), after go-redis's own retries, the connection is lost, as an AMQP
// connection whose socket breaks: Done closes, Err says why, subscriptions
// end, and operations fail with errors that are transport.ErrClosed. Under
// package kombu that means what it means on RabbitMQ: a publish caught by
// the loss waits for a new connection (bounded by its context) and is made
// again there, and consumers resume on the new connection. Meanwhile the
// lost connection keeps the settlements its deliveries' handlers make
// (acknowledgements, requeues, dead-letters) and sends them as soon as
// Redis answers; once the runtime has a new connection it closes the lost
// one, which returns the messages still unsettled to their queues at once
// (their handlers' later settlements fail as stale), not after the
// visibility timeout. Only if Redis is still unreachable when the
// connection is closed, or the process dies, do they wait for it. The same
// holds for a take whose reply never came (Redis stopped after running it):
// its receipt says what it took, and those messages go back to their
// queues too (receipt.go), where Kombu leaves them for the visibility
// timeout.
//
// Publish returns once Redis has applied the write (FeatureConfirms), which
// is not once it is on disk: with Debian's default configuration (RDB
// snapshots, no AOF) a Redis crash loses recent writes, acknowledged or not.
// A process killed while it holds the unacked_mutex lock (for the few
// milliseconds a restore pass takes) delays every restore until the lock
// expires: unacked_mutex_expire, 300 s as in Kombu.
package redis

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/runtime/transport"
)

func init() {
	transport.Register("redis", Driver{})
	transport.Register("rediss", Driver{})
	transport.Register("sentinel", Driver{})
}

// Driver opens connections to Redis.
type Driver struct{}

// Open connects and checks the connection with a PING.
func (Driver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := parseOptions(u, cfg)
	if err != nil {
		return nil, err
	}
	if o.tls != nil && o.tls.InsecureSkipVerify && o.tls.VerifyConnection == nil && cfg.Logger != nil {
		// The opt-out is explicit, and it must be loud: anyone on the path
		// can now read and change every message.
		cfg.Logger.Warn("redis: TLS certificate verification is OFF for this connection", "url", u.String())
	}
	rdb := o.newClient(clientTweaks{})
	pctx := ctx
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, wrapErr("connect to "+u.String(), clusterCheck(err))
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger
	}
	c := newConn(rdb, o, log)
	c.onUnroutable = cfg.Unroutable
	return c, nil
}

// clientTweaks adjust a client for one use.
type clientTweaks struct {
	poolSize  int
	onConnect func(context.Context, *goredis.Conn) error
	// dialer, on a cluster, makes a plain client that dials one node
	// (ownerDialer) instead of a cluster client.
	dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// newClient makes a go-redis client for the options: a failover client
// for sentinel://, a plain one otherwise. It speaks RESP2, as redis-py
// does, which keeps pub/sub messages (and tracking invalidations) in the
// form Kombu and this driver read.
func (o *options) newClient(t clientTweaks) goredis.UniversalClient {
	poolSize := o.poolSize
	if t.poolSize > 0 {
		poolSize = t.poolSize
	}
	var tlsConf *tls.Config
	if o.tls != nil {
		tlsConf = o.tls.Clone()
	}
	// One set of options for both kinds of client; go-redis derives the
	// failover or the plain client's from it.
	u := &goredis.UniversalOptions{
		MasterName:            o.masterName,
		SentinelUsername:      o.sentinelUser,
		SentinelPassword:      o.sentinelPass,
		ClientName:            o.clientName,
		Protocol:              2,
		Username:              o.user,
		Password:              o.pass,
		DB:                    o.db,
		DialTimeout:           o.dialTimeout,
		ReadTimeout:           o.ioTimeout,
		WriteTimeout:          o.ioTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              poolSize,
		TLSConfig:             tlsConf,
		DisableIdentity:       true,
		OnConnect:             t.onConnect,
	}
	if o.cluster != nil && t.dialer == nil {
		return o.newClusterClient(u)
	}
	if len(o.sentinels) > 0 {
		u.Addrs = o.sentinels
		return goredis.NewFailoverClient(u.Failover())
	}
	u.Addrs = []string{o.addr}
	simple := u.Simple()
	simple.Network = o.network // unix sockets: UniversalOptions has no Network
	if t.dialer != nil {
		simple.Dialer = t.dialer // a cluster's node (cluster.go), TLS included
		simple.TLSConfig = nil
	}
	return goredis.NewClient(simple)
}

var discardLogger = slog.New(slog.DiscardHandler)
