// Package nats is kombu-go's transport for NATS JetStream (nats://). Kombu
// has no NATS transport, so this package defines the layout; it is
// Kombu's virtual transport (runtime/transport/virtual) over JetStream
// storage, so that exchanges, bindings, routing and settlement mean what
// they mean on every other kombu-go transport.
//
//	import _ "github.com/kombu-go/kombu/transports/nats"
//
//	conn, err := kombu.Dial(ctx, "nats://127.0.0.1:4222")
//
// # The layout
//
// A queue is a JetStream stream with work-queue retention,
// <stream_prefix>_<queue> (KOMBU_celery), capturing one subject,
// <subject_prefix>.q.<queue> (kombu.q.celery), and holding Kombu's JSON
// envelope as each message's data. Queue names are escaped into one
// subject token (letters, digits and '-' stay; every other byte becomes
// '_' and two hex digits: "celery.pidbox" is celery_2Epidbox), so a name
// with '.', '*', '>' or spaces is never taken for subject syntax, and
// names that would make a stream name over 200 bytes are refused with
// transport.ErrNotSupported.
//
// Each queue's stream has one durable pull consumer, "kombu", that every
// connection (in this process and others) shares: a work-queue stream
// takes one unfiltered consumer, and sharing it makes connections
// competing consumers of the queue, as on RabbitMQ. Its ack wait is
// ack_wait; a message out with a consumer is not handed to another until
// it is acked, requeued or its taker stops telling the server it is in
// progress.
//
// Exchanges and bindings are Kombu's: exchanges live in the memory of the
// connections that declare them, bindings in the key-value bucket
// <stream_prefix>_bindings (one key per exchange, a JSON list of [routing
// key, pattern, queue] rows, updated with compare-and-set). Each
// connection mirrors the bucket with a watcher, so a publish through an
// exchange reads its table from memory: a binding made on this connection
// routes its next publish, one made elsewhere as soon as the server has
// pushed it (milliseconds; Kombu's Redis transport, which reads the table
// at every publish, has no such window). A publish routes in the client (direct by
// key, topic with Kombu's '*' and '#', fanout to every bound queue) and
// stores one copy per queue, in that queue's stream.
//
// Why not subjects per routing key with filtered consumers: a work-queue
// stream refuses consumers whose filters overlap, so two queues bound with
// overlapping topic keys, or one queue bound twice, cannot share one
// stream, while a stream per exchange with interest retention would give
// the queues' consumers no work-queue semantics of their own (a per-queue
// ack, purge and count). A stream per queue, with routing done once in the
// client, keeps AMQP's model (a message copied to each matching queue,
// each copy settled alone) for every exchange type. The price is that a
// fanout publish writes one copy per bound queue, and that routing is
// Kombu's (in the client), not the server's subject wildcards. Plain NATS publishers can still
// feed a queue: publishing a Kombu envelope to its subject is enough.
//
// # Delivery and settlement
//
//   - Publish waits for the stream's publish ack: every publish is
//     confirmed. A publish to a queue this connection has not declared
//     or found yet sets the expected stream, so that a foreign stream
//     capturing the subject refuses it (an error, not a silent success);
//     once the queue's stream is known (the server then lets no other
//     stream take its subject), the header is left out, as the stream
//     would keep it on every message for every consumer to decode, and
//     the ack's stream is checked instead (a foreign stream that took
//     the subject after the queue's was deleted fails the publish with
//     ErrPrecondition, the message being in that stream). PublishBatch
//     pipelines: the store gets the batch's routed copies, up to 1000 at a
//     time (virtual.BatchPutter), sends each run of them before awaiting
//     its first ack, and returns once every ack came; failures are per
//     message, in a *transport.BatchError. A publish to a queue whose
//     stream does not exist yet makes it (a virtual queue is made by its
//     messages).
//   - A message bigger than the server's max_payload (from its INFO) fails
//     with transport.ErrLimitExceeded before it is sent.
//   - Consumers pull with no-wait pull requests for up to their prefetch's
//     room, sent one at a time over one inbox subscription of the
//     connection's, and are woken by a core subscription on their queues'
//     subjects (every publish to the queue reaches it: a watched queue's
//     messages cross the wire twice), polling every polling_interval as a
//     fallback.
//   - Ack acks. Reject with requeue naks, as a request (the server answers
//     once it has the message back, so it can be taken at once), after
//     requeue_delay when the URL sets one. A message a consumer holds is
//     reported in progress (InProgress) every third of the ack wait, so a
//     handler may run for longer than it; a process that dies stops
//     reporting, and the server delivers its messages again once the ack
//     wait has passed, marked redelivered (the server's delivery count).
//   - Reject without requeue dead-letters where the queue was declared
//     with x-dead-letter-exchange (Kombu's emulation, with x-death);
//     otherwise, and for a message that is not a Kombu envelope (delivered
//     to the runtime's decode-error handler first), the message is kept in
//     the stream <stream_prefix>_DEAD, subject
//     <subject_prefix>.dead.<queue>, with headers Kombu-Queue and
//     Kombu-Reason, for dead_letter_max_age: nothing is dropped unseen.
//   - With max_deliver=N the consumer stops delivering a message after N
//     deliveries; the server's MAX_DELIVERIES advisory makes a connection
//     that hears it copy the message into the dead-letter stream (its
//     Nats-Msg-Id makes the copies of several connections one) and delete
//     it from its queue.
//   - Size (a passive declaration, DeleteQueue's count) is the consumer's
//     pending messages plus those waiting to be redelivered. Purge takes
//     and acks the ready messages, so messages out with consumers stay
//     out; DeleteQueue deletes the stream and its binding rows.
//
// A lost server connection is reconnected by nats.go; operations that
// meet the outage fail (publishes unconfirmed, so the caller knows) and
// the next ones work. Acks sent just before a server dies may be lost, so
// a message can come again (at least once, never lost).
//
// Features: direct, topic and fanout exchanges, confirms, mandatory,
// dead-lettering and live prefetch. Not: headers exchanges, priorities,
// TTL and max-length arguments, delayed delivery, exchange-to-exchange
// bindings (transport.ErrNotSupported).
//
// # URL
//
//	nats://[user:password@]host[:port][?option=value&...]
//
// Options: stream_prefix (KOMBU), subject_prefix (kombu; dotted tokens
// allowed), ack_wait (seconds, 30), max_deliver (0: unlimited),
// requeue_delay (seconds, 0), polling_interval (seconds, 0.1), storage
// (file or memory), replicas (1), dead_letter_max_age (seconds, 14 days).
// The password is never shown in an error or log.
//
// # Servers
//
// nats.go v1.50 (go 1.25) with its jetstream package. Tested on
// nats-server 2.9.10: the calls used (named consumer creation, no-wait
// pull requests, acks with a reply, nak with a delay, key-value buckets,
// direct stream gets for advisories) all exist there; nothing of 2.10 or
// later (per-message TTL, scheduled messages, multiple filters) is used.
package nats
