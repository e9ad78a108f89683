// Package sqldb is Kombu's SQL transport for kombu-go: queues in a
// PostgreSQL, MySQL, MariaDB or SQLite database, in the tables Kombu's
// SQLAlchemy transport uses, so that Python Kombu (and Celery) services
// and Go services share them both ways. It is a module of its own
// (github.com/kombu-go/kombu/transports/sqldb), so that only programs that
// import it download its database drivers: pgx v5 for PostgreSQL,
// go-sql-driver/mysql for MySQL and MariaDB, modernc.org/sqlite (pure Go,
// no cgo) for SQLite.
//
//	import _ "github.com/kombu-go/kombu/transports/sqldb"
//
//	conn, err := kombu.Dial(ctx, "postgresql://app:secret@db.internal/orders")
//
// # URLs
//
// Kombu's forms, an SQLAlchemy URL after "sqla+" or "sqlalchemy+", with or
// without SQLAlchemy's driver name (kombu-go uses its own client whichever
// is named), and the databases' own:
//
//	sqla+postgresql://user:password@host:5432/database
//	sqla+postgresql+psycopg2://user:password@host/database     (+pg8000, +asyncpg, +psycopg, ...)
//	sqlalchemy+postgresql://...
//	sqla+mysql+pymysql://user:password@host:3306/database     (+mysqldb, +mysqlconnector, ...)
//	sqla+sqlite:///relative/path.db      sqla+sqlite:////absolute/path.db
//	postgres://...  postgresql://...  mysql://...  sqlite:///path.db
//
// A SQLite path follows SQLAlchemy: three slashes and a relative path,
// four for an absolute one (sqlite:////var/lib/app/queue.db);
// sqlite:// and sqlite:///:memory: are a database in memory, shared by the
// connections of one process. MySQL's unix_socket option connects through
// a socket. Query options the transport does not know go to the database
// driver (sslmode, application_name, charset, tls, ...). The transport's
// own, written after the URL (inside the database URL of an sqla+ URL):
//
//	polling_interval=1       seconds a consumer with empty queues waits before it looks again (Kombu's; see Wake-ups)
//	lease_timeout=30         seconds after which a consumer that stopped renewing its lease is taken for dead
//	table_name_prefix=app_   prefixed to every table's name (app_kombu_queue, app_kombu_go_lease, ...)
//	queue_tablename=...      Kombu's transport option: the queue table's name (default kombu_queue)
//	message_tablename=...    Kombu's transport option: the message table's name (default kombu_message)
//	keep_acked=false         true: an acked row stays, invisible, as Kombu leaves it (default: deleted)
//	keep_rejected=true       false: a rejected message is deleted, as AMQP drops it (default: kept aside)
//	notify=true              PostgreSQL: false sends no NOTIFY on publish
//	max_connections=8        the connection pool's size (PostgreSQL: and half as many, at least 4, for takes and acks; SQLite: 1, see below)
//	synchronous=NORMAL       SQLite: FULL fsyncs every commit (see Guarantees)
//
// Kombu reads its transport options from transport_options rather than
// from the URL; give Python the same queue_tablename and
// message_tablename. Connection.URL masks the password; errors never
// show it.
//
// # Layout
//
// Kombu's two tables, made if missing exactly as Kombu's models
// (kombu/transport/sqlalchemy/models.py, the same in Kombu 5.2 to 5.6)
// make them on each database (on PostgreSQL and on MariaDB 10.3 and later,
// with Kombu's sequences queue_id_sequence and message_id_sequence, from
// which every insert takes its id as SQLAlchemy's do; AUTO_INCREMENT ids on
// MySQL and older MariaDB). The sequences' names carry no prefix: every
// table set in a database shares them, as in Kombu. On MariaDB, tables an
// earlier kombu-go made with AUTO_INCREMENT keep it; inserts name the
// sequence there too, moved at connect past the tables' largest ids:
//
//	kombu_queue   (id INTEGER PRIMARY KEY, name VARCHAR(200) UNIQUE)
//	kombu_message (id INTEGER PRIMARY KEY, visible BOOLEAN, timestamp TIMESTAMP,
//	               payload TEXT NOT NULL, version SMALLINT NOT NULL,
//	               queue_id INTEGER REFERENCES kombu_queue (id))
//	indexes ix_kombu_message_visible (visible), ix_kombu_message_timestamp (timestamp),
//	        ix_kombu_message_timestamp_id (timestamp, id)
//
// A message is one row, its payload Kombu's JSON envelope (see package
// virtual), inserted visible with a NULL timestamp as Kombu inserts it.
// kombu-go adds one index to kombu_message, ix_kombu_message_kombu_go_take
// (queue_id, visible, id), so that a consumer finds its queue's oldest row
// at once however long the table; Kombu ignores it. With other table names
// (a prefix, or Kombu's options), the indexes and the foreign key are named
// after the message table (Kombu would reuse ix_kombu_message_timestamp_id,
// which fails on PostgreSQL and SQLite where index names are per database).
//
// What kombu-go keeps beside Kombu's tables lives in six tables of its
// own, named after the message table (kombu_message: kombu_go_*;
// app_kombu_message: app_kombu_go_*; a message table "jobs": jobs_go_*):
//
//	kombu_go_exchange (name PRIMARY KEY, type, durable, auto_delete)      exchanges declared by any process
//	kombu_go_binding  (exchange, routing_key, queue PRIMARY KEY, pattern) Kombu's binding rows, pattern the Python topic regex
//	kombu_go_owner    (owner PRIMARY KEY, expires)                        one row per open connection; expires in unix ms of the database's clock
//	kombu_go_lease    (message_id PRIMARY KEY, owner)                     who holds each taken row
//	kombu_go_rejected (message_id, queue, payload, reason, rejected_at)   messages rejected with no dead-letter exchange, kept aside
//	kombu_go_delayed  (id PRIMARY KEY, queue, payload, due_at)            delayed messages not yet due (see Delayed delivery); index on due_at
//
// A user without the privilege to create tables gets one error naming the
// table and the privilege (transport.ErrAccessRefused); tables made
// beforehand with the DDL above are used as they are.
//
// # Taking, acking, leases
//
// A consumer takes its queue's oldest visible row (by id: every visible
// row has a NULL timestamp, as Kombu writes it, so Kombu's ORDER BY
// timestamp, id is the same order) with SELECT ... FOR UPDATE SKIP LOCKED
// (PostgreSQL; MySQL 8 and MariaDB 10.6 and later), so that consumers do
// not queue behind each other's row locks; SQLite, which has no row locks,
// takes it under its write lock (BEGIN IMMEDIATE, as Kombu does). In the
// same transaction it marks the row invisible, as Kombu does (visible
// false, timestamp now, version + 1), and records its lease in
// kombu_go_lease. A consumer takes as many rows at once, in one
// transaction, as its prefetch has room for (the rest wait in its memory,
// taken, and go back as they were if it stops first); Get takes one. An
// ack deletes the row and the lease (keep_acked: the lease only); acks are
// written in the background, those that arrive while one batch is being
// written in the next, in one transaction, as an AMQP broker takes acks
// without a reply: a connection that closes writes those still pending,
// and one that dies leaves them to come back when its lease runs out, as
// unacked messages (at least once). A requeue makes the row visible again
// in its old place, marked redelivered; a reject without requeue dead-letters the message
// where the queue was declared with x-dead-letter-exchange, and otherwise
// moves it to kombu_go_rejected with its reason. Kombu, which has no acks,
// loses a message whose consumer dies before it is done; kombu-go does
// not: each connection renews its row in kombu_go_owner every third of
// lease_timeout, and every connection, when it opens and every half
// lease_timeout after, makes the rows leased by owners whose expiry passed
// visible again, marked redelivered. A consumer killed with SIGKILL
// mid-handler has its message back within lease_timeout and a half.
// A requeue or reject of a message whose lease was taken over fails with
// ErrLeaseLost; an ack of one is logged.
// Rows Python took (invisible, no lease) are Kombu's and are left alone.
//
// # Wake-ups
//
// Consumers whose queues are empty are woken at once by a publish through
// any kombu-go connection of the same process to the same tables, and on
// PostgreSQL by a publish from any kombu-go process: a publish sends
// NOTIFY <tables>_go, '<queue>' in its transaction (so at commit, never
// after a rollback), and one connection per process LISTENs for its
// consumers. Python Kombu sends no NOTIFY, and MySQL and SQLite have none:
// what other processes write there is found by polling, every
// polling_interval.
//
// # Exchanges and routing
//
// Direct, topic and fanout exchanges route in the client, as Kombu's
// virtual transports do, through the binding rows in kombu_go_binding,
// which every process reads (Kombu 5.2 to 5.6's SQL transport keeps its
// bindings in process memory, so a Python process routes only through the
// bindings it made itself; a Go process sees Go's). Declarations are
// recorded in kombu_go_exchange too, so that a process that never
// declared a topic or fanout exchange routes through it by its type, a
// declaration with another type fails with transport.ErrPrecondition in
// any process, and a publish to an exchange no process declared and that
// has no bindings fails with transport.ErrNotFound. Headers exchanges,
// priorities, message and queue TTLs and max-length are refused with
// transport.ErrNotSupported, as Kombu's SQL transport has none;
// dead-lettering is emulated (x-dead-letter-exchange, x-death).
//
// # Delayed delivery
//
// A delayed publish (kombu.WithDelay, kombu.WithETA;
// transport.FeatureDelay) is routed when it is published, as any publish,
// and each queue's copy waits as a row of kombu_go_delayed: queue (the
// queue's name; its kombu_queue row is made if missing), payload (Kombu's
// envelope, as kombu_message.payload holds it) and due_at, in unix
// milliseconds of the database server's clock (the publish's delay, rounded
// up to the millisecond, added to the server's now), so that processes
// whose own clocks disagree agree on when it is due. Kombu reads only
// kombu_message: no Python consumer sees a delayed message, nor does any
// Size or Purge count it, before it is due. Every open kombu-go connection
// moves the rows due (due_at past the server's now) into kombu_message, as
// visible rows inserted as a publish would insert them then, deleting them
// from kombu_go_delayed in the same transaction (up to 500 a transaction);
// the rows are locked FOR UPDATE SKIP LOCKED on PostgreSQL and on MySQL 8
// and MariaDB 10.6 (FOR UPDATE on older ones), and moved under SQLite's
// write lock, so that movers in many processes never move one row twice.
// A connection looks every second, and sooner for the soonest row in the
// table and for a row it stored itself, and wakes the queue's consumers
// (NOTIFY on PostgreSQL). A message therefore arrives within about a
// second of its time while any kombu-go process is connected to the
// database (any consumer or publisher; measured: tens of milliseconds);
// with none, it waits in its row, and the first connection that opens
// moves it. A row is committed as durably as a publish's, so it survives
// its process and the server as published messages do. Under WithTx the
// row is written in the caller's transaction (a delayed outbox message):
// nothing if it rolls back. A queue deleted while its messages wait takes
// them with it (DeleteQueue deletes its kombu_go_delayed rows; a row whose
// kombu_queue row is gone when due is dropped). A step of the server's
// clock moves the due times with it.
//
// # The transactional outbox
//
// Under the context WithTx returns, a publish writes its rows inside the
// caller's own transaction (*sql.Tx, or pgx.Tx on PostgreSQL): committed
// with the caller's writes, or never visible. Generated producers need no
// change. See WithTx.
//
// # Losing the database
//
// A statement that fails because the database cannot be reached (refused,
// reset, a server shutting down, a backend terminated) loses the
// connection, as a broken socket loses an AMQP one: Done closes, Err says
// why, subscriptions end, and every later call fails with an error that is
// transport.ErrClosed, so that the runtime opens a new connection (and
// makes a publish caught by the loss again there) and resumes its
// consumers. Messages delivered before the loss can still be settled; what
// cannot be comes back when the connection's lease runs out. SQLite
// connections are never lost.
//
// # Guarantees and limits
//
// A publish returns once its row is committed (transport.FeatureConfirms),
// and a batch (kombu.Batch, PublishBatch) is one transaction: one commit,
// one wait for the disk, for all of it; a statement that fails rolls it
// back, and then none of it is published. Commits are, on PostgreSQL and
// MySQL, as durable as the server's commit
// (synchronous_commit, innodb_flush_log_at_trx_commit), but for takes
// and acks on PostgreSQL, which commit without waiting for the disk
// (synchronous_commit off for their sessions): one lost in a server crash
// only makes its message ready again, to be delivered again (at least
// once), and nothing is ever lost that way. SQLite files are
// put in WAL mode with synchronous=NORMAL, in which a committed message
// survives its process, killed or not, but a power cut may take the last
// commits; synchronous=FULL fsyncs every commit. SQLite lets one writer at
// a time: kombu-go's connections to one file in one process share one
// database connection, and other processes wait up to ten seconds for the
// write lock. MySQL's TEXT payload holds 65535 bytes: a longer envelope is
// refused with transport.ErrNotSupported, naming the ALTER TABLE that
// lifts the limit. MySQL's default collations compare queue names without
// case and trailing spaces, as they do for Kombu. A transaction InnoDB
// gives up for a deadlock (consumers and acks lock rows in different
// orders) is made again, up to five times. Queue names are at most
// 200 characters, exchange names and binding keys 255.
package sqldb
