package virtual

import "context"

// Store is what a virtual transport implements: the storage primitives of
// its broker. NewConn builds a whole transport.Conn on one, the way
// Kombu's virtual Channel is built on a transport's _put, _get, _purge,
// _size, _delete and binding table. A Store sees queue names, Kombu's
// JSON envelopes as bytes, opaque receipts for the messages it handed out,
// and binding rows; it never decodes an envelope, routes, or counts
// deliveries.
//
// # The contract
//
// A Store is used by one connection, from many goroutines at once: every
// method must be safe for concurrent use. Other connections, in this
// process and others (Go or Python), use the same broker at the same time
// through stores of their own; a Store never assumes it is alone.
//
// Errors: a missing message or queue is not an error unless a method says
// so. Take reports an empty queue with an error wrapping
// transport.ErrEmpty, and nothing else does. A name the broker cannot hold
// (a queue name with '/' in a folder, one too long for SQS) fails with an
// error wrapping transport.ErrNotSupported and naming it. Any other error
// is the broker's, returned as it is (wrapped with what was done); the
// connection adds its transport's name. A Store retries nothing: the
// connection and the runtime decide what to do again.
//
// Contexts: every call gets a context that bounds it. Put is called in the
// publisher's goroutine with the context the publisher gave Publish, so a
// store may take per-publish values from it (a *sql.Tx of the caller's,
// for a transactional outbox); no method keeps its context past its
// return.
//
// Queues: a queue exists in the store either by itself (a kombu_queue row,
// an SQS queue), once DeclareQueue made it, or as the messages stored under
// its name (a folder's files, a Redis list), when DeclareQueue does
// nothing and Size reports that the queue exists while it holds ready
// messages. The connection remembers the queues it declared itself, so
// that a passive declaration finds an empty queue it made.
//
// Messages: Put stores a ready message. Take takes the oldest ready one
// (in the store's order: by name, by timestamp, by offset; by priority
// first where the store has priorities) and leases it to this store: no
// other Take, of this store or any other, in this process or another,
// returns it while it is taken. It stays taken until this store acks or
// restores it with its receipt, or until the store finds its taker gone
// (the process died, its lease expired without renewal), when the store
// makes it ready again, marked redelivered (MarkRedelivered) where it can
// rewrite it. Ack removes a taken message for good; Restore makes it
// ready again. Ready counts (Size, Purge, DeleteQueue) never include taken
// messages, and Purge and DeleteQueue leave them taken: they can still be
// acked or restored (a restore to a deleted queue makes it again where
// queues exist as their messages, and is dropped where they do not).
//
// Bindings: the rows of Kombu's routing tables (Binding), one table per
// exchange, kept where every process using the broker sees them (Kombu's
// binding sets on Redis, control files on the filesystem). Exchanges
// themselves, and their types, live in the memory of the connections that
// declare them, as in Kombu; the store only holds the tables.
//
// # Fitting a broker to it
//
// A folder (transports/filesystem): a file per message, taken by an atomic
// rename into a folder of the taker's, whose lock dies with the process.
// SQL: Take selects the oldest visible row FOR UPDATE SKIP LOCKED and marks
// it invisible (a lease column restores it if the taker dies), Ack deletes
// it, Restore makes it visible again; Put takes the caller's transaction
// from its context. SQS and Azure Storage Queues: the receipt is the
// receipt handle or pop receipt, Ack deletes the message, Restore sets its
// visibility timeout to zero (the envelope cannot be rewritten: Taken
// reports Redelivered from the receive count instead). Kafka: the receipt
// is the record's offset; Ack marks it done and the store commits up to
// the lowest offset not yet done, so that offsets are committed in order;
// Restore hands the record out again before reading further. Google
// Pub/Sub: the receipt is the ack id, Restore is a nack. A broker that
// routes by itself (Pub/Sub subscriptions with filters, SNS, a MongoDB
// broadcast collection) or that can wake consumers (PostgreSQL
// LISTEN/NOTIFY, inotify, a blocking receive) adds an optional interface:
// Waker, Quarantiner, Rejecter (keeping rejected messages aside),
// BatchTaker (taking several at once; SQL's first), BatchPutter
// (storing a publisher's batch in few calls; SQS's SendMessageBatch),
// Broadcaster (a fanout exchange's messages stored once; MongoDB's) and
// QuickAcker (an ack that never blocks; Kafka's and NATS's) so far; others
// (broker-side routing, lease renewal, priorities) come with the first
// store that needs them.
type Store interface {
	// DeclareQueue makes the queue exist, where the store keeps queues
	// apart from their messages; elsewhere it does nothing. Declaring an
	// existing queue succeeds.
	DeclareQueue(ctx context.Context, queue string) error
	// Size returns how many ready messages the queue holds, and whether
	// the queue exists (see the contract: declared, or holding ready
	// messages where queues exist as their messages).
	Size(ctx context.Context, queue string) (ready int, exists bool, err error)
	// Purge removes the queue's ready messages and returns how many it
	// removed.
	Purge(ctx context.Context, queue string) (int, error)
	// DeleteQueue removes the queue and its ready messages, returning how
	// many it removed, and its rows from every exchange's table. Deleting
	// a queue that does not exist returns 0 and nil.
	DeleteQueue(ctx context.Context, queue string) (int, error)

	// Put stores m as the newest ready message of m.Queue. It returns once
	// a Take can find the message: the connection's publisher confirms
	// rest on it.
	Put(ctx context.Context, m Message) error
	// Take takes the oldest ready message of the queue (see the contract)
	// or fails with an error wrapping transport.ErrEmpty. When it returns
	// an error, it took nothing.
	Take(ctx context.Context, queue string) (Taken, error)
	// Ack removes a taken message for good.
	Ack(ctx context.Context, r Receipt) error
	// Restore makes a taken message ready again, in its queue, with
	// envelope as its content where the store can rewrite a message (the
	// connection passes it marked redelivered when it was delivered, as it
	// was taken when it never was). Where the store keeps an order by
	// name or time, the message takes its old place, ahead of those
	// stored after it; elsewhere it goes to the head or the tail.
	Restore(ctx context.Context, r Receipt, envelope []byte) error

	// Bind adds the row to the exchange's table, unless the table has it
	// already. Kombu inserts new rows at the front.
	Bind(ctx context.Context, exchange string, b Binding) error
	// Unbind removes the exchange's rows with b's routing key and queue,
	// whatever their pattern (a connection that knew the exchange by
	// another type wrote another one). Removing what is not there
	// succeeds.
	Unbind(ctx context.Context, exchange string, b Binding) error
	// Bindings returns the exchange's table, empty when it has none. The
	// connection reads it at every publish through the exchange (Python
	// processes may change it at any time): a store that can tell cheaply
	// that it has not changed caches it.
	Bindings(ctx context.Context, exchange string) ([]Binding, error)
	// DeleteExchange removes the exchange's table.
	DeleteExchange(ctx context.Context, exchange string) error

	// Close releases what the store holds. The connection has acked or
	// restored every message it took before; a message it could not
	// restore is left for the store's recovery (its taker is gone).
	Close() error
}

// Message is a message for Put.
type Message struct {
	Queue string
	// Envelope is the message as Kombu stores it: its JSON envelope
	// (AppendEnvelopeHead). The store may keep it.
	Envelope []byte
	// Priority is the envelope's properties.priority (0 to MaxPriority).
	// A store without priorities ignores it.
	Priority int
}

// Taken is a message Take took.
type Taken struct {
	Envelope []byte
	// Receipt identifies the taken message to Ack and Restore.
	Receipt Receipt
	// Redelivered reports that the store knows the message was taken
	// before (a receive count, a delivery attempt) where it cannot mark
	// the envelope itself. The envelope's own marks count too.
	Redelivered bool
}

// Receipt is a store's handle on a message it took: a file name, a row id,
// an SQS receipt handle, a Kafka offset. The connection only hands it
// back.
type Receipt any

// Quarantiner is implemented by a store that can set aside a taken
// message that is not a Kombu envelope (a foreign or truncated file), where
// a person can look at it. The connection then quarantines such a message
// and takes the next one, instead of delivering it as UndecodableDelivery
// for the runtime to reject (and, on most stores, lose).
type Quarantiner interface {
	// Quarantine moves the taken message aside for good; reason says what
	// is wrong with it.
	Quarantine(ctx context.Context, r Receipt, reason error) error
}

// BatchTaker is implemented by a store that can take several messages in
// one operation (one transaction, one receive call) for less than as many
// Takes. A consumer then takes up to as many messages as its prefetch has
// room for at once, keeps those it has not handed over yet, and puts them
// back, as they were, when it ends. A consumer without a prefetch, and
// Get, take one at a time.
type BatchTaker interface {
	// TakeBatch takes up to max (at least 1) of the queue's oldest ready
	// messages, oldest first, as Take takes one; it fails with an error
	// wrapping transport.ErrEmpty when there is none. When it returns an
	// error, it took nothing.
	TakeBatch(ctx context.Context, queue string, max int) ([]Taken, error)
}

// BatchPutter is implemented by a store that can store several messages
// in fewer operations than as many Puts (SQS's SendMessageBatch of ten).
// A connection's PublishBatch then routes the batch's messages as Publish
// does, one by one and in order, and hands the copies it would Put, in
// that order, to PutBatch (delayed messages and a Broadcaster's still take
// their own paths). Publish, of one message, still uses Put.
type BatchPutter interface {
	// PutBatch stores each message as Put would, those of one queue in
	// the order given, and returns once a Take can find every one it
	// stored. It returns nil when it stored them all, else one error per
	// message (len(ms) of them), nil for each message it stored: a
	// message that fails (too big, its request refused) fails alone,
	// and none is left unaccounted for. A store may send the messages of
	// different queues in any order, and may keep the envelopes.
	PutBatch(ctx context.Context, ms []Message) []error
}

// Rejecter is implemented by a store that keeps a message rejected without
// requeue, from a queue this connection gave no dead-letter exchange,
// where a person can look at it (a table of rejected rows), instead of
// dropping it as AMQP does. The connection then calls Reject where it
// would call Ack: for a message a handler failed or the runtime could not
// decode (reason says why, "" when the consumer gave no reason), and for
// one that could not be dead-lettered because it is not a Kombu envelope.
type Rejecter interface {
	// Reject removes the taken message from its queue and keeps it aside.
	Reject(ctx context.Context, r Receipt, reason string) error
}

// QuickAcker is implemented by a store whose ack never waits on the
// broker (Kafka marks an offset for a later commit; NATS writes the ack
// into its client's buffer). The connection then acks through AckQuick,
// without the context and timer it makes for each Ack of a store that
// may block: an ack is per message, and they cost more than the ack.
type QuickAcker interface {
	// AckQuick is Ack, for a store whose Ack does not block.
	AckQuick(r Receipt) error
}

// Waker is implemented by a store that can tell a consumer when a message
// may have arrived (a file created in the folder, a PostgreSQL NOTIFY),
// instead of leaving it to look again every Config.PollInterval.
type Waker interface {
	// Watch returns a channel that receives a value (sent without
	// blocking into a buffer of one) whenever a message may have been put
	// to one of the queues, by anyone, and a function that stops watching.
	// The connection watches before it first takes, so a message put
	// after a Take found the queue empty wakes it. Waking when nothing
	// came costs a Take; missing a message costs the consumer a
	// PollInterval.
	Watch(queues []string) (wake <-chan struct{}, stop func())
}

// Broadcaster is implemented by a store that carries a fanout exchange's
// messages itself, as Kombu's transports with supports_fanout do (MongoDB:
// one document in a capped collection, read by every bound queue through
// a tailable cursor). A publish through a fanout exchange that has bound
// queues is then one PutFanout instead of a Put per queue, and the store's
// Take of a queue bound to a fanout exchange reads that exchange's
// broadcast, from the time of the binding on.
type Broadcaster interface {
	// PutFanout stores the envelope once for every queue bound to the
	// exchange. It returns once a Take of a bound queue can find it.
	PutFanout(ctx context.Context, exchange string, envelope []byte) error
	// FanoutBound tells the store, after Bind stored the row (or Unbind
	// removed it), that queue is (or is no longer) bound to the fanout
	// exchange.
	FanoutBound(ctx context.Context, exchange, queue string, bound bool) error
}
