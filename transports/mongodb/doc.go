// Package mongodb is Kombu's MongoDB transport for kombu-go, registered as
// the "mongodb" scheme: Go and Python processes (Kombu, Celery) share
// queues in one MongoDB database, with Kombu's collections and documents.
// It is a module of its own (github.com/kombu-go/kombu/transports/mongodb),
// so that only programs that import it download the MongoDB driver
// (go.mongodb.org/mongo-driver/v2).
//
//	import _ "github.com/kombu-go/kombu/transports/mongodb"
//
//	conn, err := kombu.Dial(ctx, "mongodb://user:secret@db.example:27017/kombu_default")
//
// # URLs
//
// mongodb://[user:password@]host[:port][/database][?options]: the database
// is Kombu's kombu_default unless named. Query options are MongoDB's
// connection string options (authSource, tls, replicaSet, ...), passed to
// the driver, except kombu-go's own: visibility_timeout (seconds a taken
// message stays leased to its consumer without news of it, default 60;
// the lease is extended every third of it while the message is unsettled)
// and polling_interval (seconds between looks at an empty queue, default
// 1, Kombu's). Open pings the server, bounded by its context: a server
// that does not answer or refuses the credentials fails there, with the
// password masked in the error (and in URL() and logs).
//
// # Layout
//
// Kombu's (kombu/transport/mongodb.py): the collection "messages" holds a
// document {payload, queue, priority} per message, payload being Kombu's
// JSON envelope (package virtual) and priority 9 minus the message's
// (lower is served first); consumers take the first document of their
// queue sorted by priority, then _id. "messages.routing" holds the
// bindings, {exchange, queue, routing_key, pattern}, shared by every
// process. The indexes are Kombu's.
//
// # Where kombu-go differs
//
// Kombu deletes a message when it takes it, so a consumer that dies loses
// it. kombu-go keeps a taken message as a copy whose queue is
// "kombu-go:taken:<queue>" (which no Kombu take matches), leased to its
// consumer and extended while the handler runs; an ack deletes it, a
// requeue puts it back under its old _id (so it keeps its place), and a
// copy whose lease ran out (its consumer died) is put back marked
// redelivered by the next consumer of its queue. A take inserts the copy,
// whose _id is derived from the original's, so that only one consumer's
// insert goes in, and then deletes the original by _id, whose count says
// whether it was still there: an insert under a unique _id and a delete
// are atomic on every server that speaks MongoDB's protocol, where
// findOneAndUpdate is not on FerretDB. A consumer with a prefetch takes as
// many as it has room for with one find and one insert; a find reads the
// queue's first 100 documents, which the process's takes claim from for
// half a second (FerretDB scans the collection for every sorted find), so
// a message another process puts ahead of them waits that long at most.
//
// Acks are deleted in batches: Ack queues the copy's delete (its lease is
// extended until the delete has landed, so that no other consumer gets it
// meanwhile); one delete command carries every ack that waits (up to 100),
// 2 ms after the first, and closing the connection sends what waits and
// waits for it. Four commands run at once at most; while four more
// batches wait behind them an Ack waits too (or fails with its context),
// so a slow server slows acks down rather than gathering deletes. The
// command holds a delete by _id per copy, which FerretDB hands SQLite,
// rather than one delete by an $in list, which FerretDB would read by
// decoding every document of the collection. (FerretDB 1.24's SQLite
// query by _id does not match its _id index's expression, so SQLite
// scans the table too, but some ten times faster: about 9 ms for a find
// by _id and 22 ms for a delete by _id at 700 documents, against 90 ms for
// a find of a queue's first documents.) Ack returns once the
// delete is queued, not once it has landed, as Google's Pub/Sub Go client
// acks: a consumer settling its messages one after another would
// otherwise wait for a round trip per message, and batching would gain it
// nothing. Nothing is lost by it: a delete that fails (a failed statement
// is retried alone, and a failure of that logged with the message id)
// leaves the copy, whose lease runs out and whose message is put back
// and delivered again: the at-least-once of an ack that never reached the
// server.
//
// A document that is not a Kombu envelope is moved to the collection
// "messages.kombu_go_quarantine", with its queue and the reason, and
// logged, not lost.
//
// Fanout exchanges work as Kombu's (supports_fanout): the connection
// makes Kombu's capped collection "messages.broadcast" (100000 bytes, its
// capped_queue_size) if it is missing; a publish through a fanout exchange
// with bound queues inserts one document {payload, queue: <exchange>}
// there, not a copy per queue; a queue bound to a fanout exchange reads
// the exchange's documents through a tailable cursor, from the time of its
// binding on. As in Kombu, which queues are fanout queues and how far they
// have read lives in the process's memory (shared by its connections to
// the database, so each message reaches each queue of a process once); an
// ack does nothing, a requeue gives the message back to the queue in this
// process, and the capped collection drops the oldest broadcasts beyond
// its size. Python fanout consumers see Go's fanout messages and Go's see
// theirs. FerretDB ends a tailable cursor that reached the end, and Kombu
// 5.2 never opens another, so a Python fanout consumer on FerretDB sees
// only what was broadcast before its first read (Python to Python alike);
// kombu-go opens a new cursor after the last document read.
// Kombu's ttl option (TTL indexes, "messages.queues") is not implemented;
// TTLs and priorities are refused with ErrNotSupported.
//
// Tested against FerretDB v1.24 (a MongoDB wire-protocol server in Go, on
// SQLite) and interop-tested both ways with Python Kombu 5.2 (pymongo 3.11)
// on it; not against a MongoDB server, which is not packaged for this
// project's machines.
package mongodb
