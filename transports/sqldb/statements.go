package sqldb

import (
	"fmt"
	"strings"
)

// statements is the SQL a store runs, written for its dialect. Every
// statement takes its arguments in the order its comment gives.
type statements struct {
	// schema creates what is missing, in order; each is idempotent (IF NOT
	// EXISTS). Kombu's tables first, exactly as Kombu's models create them.
	schema []ddl

	// queueID(name) -> id
	queueID string
	// createQueue(name): nothing if it exists.
	createQueue string
	// put(payload, queue name [, channel on PostgreSQL]): one row if the
	// queue exists, none otherwise. putQuiet: PostgreSQL without NOTIFY.
	put, putQuiet string
	// take(queue name, owner, limit) -> id, payload: PostgreSQL only (one
	// statement); elsewhere takeSelect, takeMark and leaseInsert in a
	// transaction.
	take        string
	takeSelect  string // (queue name, limit) -> id, payload
	takeMark    string // (id)
	leaseInsert string // (id, owner)
	// ack(id, owner): deletes the lease and the row (PostgreSQL and MySQL
	// in one statement: rows affected > 0 when the lease was ours);
	// elsewhere leaseDelete then deleteMessage.
	ack           string
	ackMany       string // PostgreSQL: (ids array, owner)
	leaseDelete   string // (id, owner)
	deleteMessage string // (id)
	// restore(payload, id): visible again, in its old place.
	restore      string
	keepRejected string // (id, queue, payload, reason): a rejected message kept aside
	// size(name) -> ready rows; purge(name) -> deleted.
	size  string
	purge string
	// deleteQueue: purge, detach taken rows, drop bindings, drop the row.
	detach        string // (name)
	unbindQueue   string // (name)
	deleteQueueRw string // (name)

	bind           string // (exchange, routing key, queue, pattern): insert or update the pattern
	unbind         string // (exchange, routing key, queue)
	bindings       string // (exchange) -> routing key, pattern, queue
	dropBindings   string // (exchange)
	declareEx      string // (name, type, durable, auto delete): nothing if it exists
	exchangeType   string // (name) -> type, durable, auto delete
	deleteExchange string // (name)

	// Leases. now is the database's clock in unix milliseconds.
	ownerUpsert  string // (owner, lease ms)
	ownerRenew   string // (lease ms, owner)
	ownerDelete  string // (owner)
	ownersExpire string // () delete owners whose lease ran out
	orphans      string // () -> message id, owner: leases whose owner is gone
	payloadOf    string // (id) -> payload

	identity string // () -> one text identifying the database (outbox checks)

	// Delayed delivery (delay.go). Due times are unix ms of the database's
	// clock.
	delayedPut       string // (queue, payload, delay ms)
	delayedNext      string // () -> ms until the soonest row is due (NULL: none)
	delayedMove      string // PostgreSQL: () -> queues; moves up to delayedBatch due rows in one statement
	delayedSelect    string // elsewhere: () -> id, queue, payload of up to delayedBatch due rows, locked
	delayedDelete    string // (id)
	delayedDropQueue string // (queue): DeleteQueue drops the queue's delayed rows

	// syncSequences (MariaDB with sequences): each sequence is moved past
	// the largest id in its table once the schema is there.
	syncSequences []sequenceSync
}

// sequenceSync names a sequence and the query for the largest id it must
// pass (SETVAL takes only a literal).
type sequenceSync struct {
	sequence, maxID string
}

// takeMarkIn is takeMark for n rows at once (MySQL): (id...).
func (s *statements) takeMarkIn(n int) string {
	return strings.Replace(s.takeMark, "WHERE id = ?", "WHERE id IN (?"+strings.Repeat(", ?", n-1)+")", 1)
}

// leaseInsertValues is leaseInsert for n rows at once (MySQL): (id, owner)...
func (s *statements) leaseInsertValues(n int) string {
	return s.leaseInsert + strings.Repeat(", (?, ?)", n-1)
}

// ackIn is the MySQL ack of n rows at once: (owner, id...); it deletes two
// rows (lease and message) per message whose lease was the owner's.
func (s *statements) ackIn(n int) string {
	return strings.Replace(s.ack, "WHERE l.message_id = ? AND l.owner = ?", "WHERE l.owner = ? AND l.message_id IN (?"+strings.Repeat(", ?", n-1)+")", 1)
}

// ddl is one schema statement and the object it makes: a table, a
// sequence, or an index of table.
type ddl struct {
	object, table, sql string
}

// ph returns the dialect's placeholder for argument n (1-based).
func (d dialect) ph(n int) string {
	if d == postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// q substitutes the dialect's placeholders for {1}, {2}, ...
func (d dialect) q(s string) string {
	for i := 9; i >= 1; i-- {
		s = strings.ReplaceAll(s, fmt.Sprintf("{%d}", i), d.ph(i))
	}
	return s
}

// nowMillis is the database clock in unix milliseconds.
func (d dialect) nowMillis() string {
	switch d {
	case postgres:
		return "(extract(epoch from clock_timestamp()) * 1000)::bigint"
	case mariadb:
		return "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"
	}
	// ROUND: julianday holds SQLite's clock in whole milliseconds, which
	// the floating-point days would otherwise truncate a millisecond short.
	return "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"
}

// localNow is what Kombu writes in kombu_message.timestamp when it takes
// a row (SQLAlchemy's onupdate=datetime.now: local time, no zone), in the
// column's type; on SQLite, SQLAlchemy's text format.
func (d dialect) localNow() string {
	switch d {
	case postgres:
		return "LOCALTIMESTAMP"
	case mariadb:
		return "NOW()"
	}
	return "strftime('%Y-%m-%d %H:%M:%f000', 'now', 'localtime')"
}

func (d dialect) boolean(v bool) string {
	switch {
	case d == postgres && v:
		return "true"
	case d == postgres:
		return "false"
	case v:
		return "1"
	}
	return "0"
}

// newStatements writes the store's SQL. sequences is for MariaDB 10.3 and
// later, where SQLAlchemy (1.4 on) gives Kombu's tables no AUTO_INCREMENT
// but the sequences queue_id_sequence and message_id_sequence, and Python
// Kombu names them in every insert: kombu-go then does the same (also on
// tables it made with AUTO_INCREMENT, which takes an explicit id), so that
// both draw ids from one source, and it makes the sequences where missing.
func newStatements(d dialect, t tables, sequences bool) *statements {
	s := &statements{}
	T, F := d.boolean(true), d.boolean(false)
	r := strings.NewReplacer(
		"QUEUE", t.queue, "MESSAGE", t.message, "EXCHANGE", t.exchange, "BINDING", t.binding,
		"OWNER", t.owner, "LEASE", t.lease, "REJECTED", t.rejected, "DELAYED", t.delayed,
		"TRUE", T, "FALSE", F, "NOWMS", d.nowMillis(), "LOCALNOW", d.localNow(),
	)
	x := func(sql string) string { return d.q(r.Replace(sql)) }

	s.schema = schema(d, t, sequences)
	s.queueID = x(`SELECT id FROM QUEUE WHERE name = {1}`)
	switch d {
	case postgres:
		s.createQueue = x(`INSERT INTO QUEUE (id, name) VALUES (nextval('queue_id_sequence'), {1}) ON CONFLICT (name) DO NOTHING`)
		// The NOTIFY is sent at commit: at once outside a transaction,
		// with the caller's commit inside one, never after a rollback.
		s.put = x(`WITH q AS (SELECT id FROM QUEUE WHERE name = {2}),
m AS (INSERT INTO MESSAGE (id, visible, timestamp, payload, version, queue_id)
      SELECT nextval('message_id_sequence'), TRUE, NULL, {1}, 1, q.id FROM q RETURNING 1)
`)
		s.putQuiet = s.put + "SELECT 1 FROM m"
		s.put += x("SELECT 1 FROM m, pg_notify({3}, {2})")
		s.take = x(`WITH c AS (
  SELECT id FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = {1}) AND visible = TRUE
  ORDER BY id LIMIT {3} FOR UPDATE SKIP LOCKED),
t AS (UPDATE MESSAGE m SET visible = FALSE, timestamp = LOCALNOW, version = m.version + 1
      FROM c WHERE m.id = c.id RETURNING m.id, m.payload),
l AS (INSERT INTO LEASE (message_id, owner) SELECT id, {2} FROM t)
SELECT id, payload FROM t ORDER BY id`)
		s.ack = x(`WITH l AS (DELETE FROM LEASE WHERE message_id = {1} AND owner = {2} RETURNING message_id)
DELETE FROM MESSAGE WHERE id IN (SELECT message_id FROM l)`)
		s.ackMany = x(`WITH l AS (DELETE FROM LEASE WHERE message_id = ANY({1}) AND owner = {2} RETURNING message_id)
DELETE FROM MESSAGE WHERE id IN (SELECT message_id FROM l)`)
		s.bind = x(`INSERT INTO BINDING (exchange, routing_key, queue, pattern) VALUES ({1}, {2}, {3}, {4})
ON CONFLICT (exchange, routing_key, queue) DO UPDATE SET pattern = EXCLUDED.pattern`)
		s.declareEx = x(`INSERT INTO EXCHANGE (name, type, durable, auto_delete) VALUES ({1}, {2}, {3}, {4}) ON CONFLICT (name) DO NOTHING`)
		s.ownerUpsert = x(`INSERT INTO OWNER (owner, expires) VALUES ({1}, NOWMS + {2})
ON CONFLICT (owner) DO UPDATE SET expires = EXCLUDED.expires`)
		s.identity = `SELECT 'postgresql:' || current_database() || ':' || current_schema() || ':' ||
  coalesce((SELECT system_identifier::text FROM pg_control_system()), '') || ':' || coalesce(inet_server_port()::text, '')`
	case mariadb:
		s.createQueue = x(`INSERT INTO QUEUE (name) VALUES ({1}) ON DUPLICATE KEY UPDATE name = name`)
		s.put = x(`INSERT INTO MESSAGE (visible, timestamp, payload, version, queue_id) SELECT TRUE, NULL, {1}, 1, id FROM QUEUE WHERE name = {2}`)
		if sequences {
			s.createQueue = x(`INSERT INTO QUEUE (id, name) VALUES (NEXTVAL(queue_id_sequence), {1}) ON DUPLICATE KEY UPDATE name = name`)
			s.put = x(`INSERT INTO MESSAGE (id, visible, timestamp, payload, version, queue_id)
SELECT NEXTVAL(message_id_sequence), TRUE, NULL, {1}, 1, id FROM QUEUE WHERE name = {2}`)
			// Ids another writer took from the table's AUTO_INCREMENT (an
			// older kombu-go) are skipped: SETVAL never moves a sequence back.
			s.syncSequences = []sequenceSync{
				{"queue_id_sequence", x(`SELECT COALESCE(MAX(id), 0) FROM QUEUE`)},
				{"message_id_sequence", x(`SELECT COALESCE(MAX(id), 0) FROM MESSAGE`)},
			}
		}
		s.ack = x(`DELETE m, l FROM LEASE l JOIN MESSAGE m ON m.id = l.message_id WHERE l.message_id = {1} AND l.owner = {2}`)
		s.bind = x(`INSERT INTO BINDING (exchange, routing_key, queue, pattern) VALUES ({1}, {2}, {3}, {4})
ON DUPLICATE KEY UPDATE pattern = VALUES(pattern)`)
		s.declareEx = x(`INSERT IGNORE INTO EXCHANGE (name, type, durable, auto_delete) VALUES ({1}, {2}, {3}, {4})`)
		s.ownerUpsert = x(`INSERT INTO OWNER (owner, expires) VALUES ({1}, NOWMS + {2}) ON DUPLICATE KEY UPDATE expires = VALUES(expires)`)
		s.identity = `SELECT CONCAT('mysql:', DATABASE(), ':', @@hostname, ':', @@port, ':', @@server_id)`
	case sqlite:
		s.createQueue = x(`INSERT INTO QUEUE (name) VALUES ({1}) ON CONFLICT (name) DO NOTHING`)
		s.put = x(`INSERT INTO MESSAGE (visible, timestamp, payload, version, queue_id) SELECT TRUE, NULL, {1}, 1, id FROM QUEUE WHERE name = {2}`)
		s.bind = x(`INSERT INTO BINDING (exchange, routing_key, queue, pattern) VALUES ({1}, {2}, {3}, {4})
ON CONFLICT (exchange, routing_key, queue) DO UPDATE SET pattern = excluded.pattern`)
		s.declareEx = x(`INSERT INTO EXCHANGE (name, type, durable, auto_delete) VALUES ({1}, {2}, {3}, {4}) ON CONFLICT (name) DO NOTHING`)
		s.ownerUpsert = x(`INSERT INTO OWNER (owner, expires) VALUES ({1}, NOWMS + {2})
ON CONFLICT (owner) DO UPDATE SET expires = excluded.expires`)
		s.identity = `SELECT 'sqlite:' || file FROM pragma_database_list WHERE name = 'main'`
	}
	if d != postgres {
		skip := " FOR UPDATE SKIP LOCKED"
		if d == sqlite {
			skip = "" // the transaction holds the database's write lock
		}
		s.takeSelect = x(`SELECT id, payload FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = {1}) AND visible = TRUE ORDER BY id LIMIT {2}` + skip)
		s.takeMark = x(`UPDATE MESSAGE SET visible = FALSE, timestamp = LOCALNOW, version = version + 1 WHERE id = {1}`)
		s.leaseInsert = x(`INSERT INTO LEASE (message_id, owner) VALUES ({1}, {2})`)
	}
	s.leaseDelete = x(`DELETE FROM LEASE WHERE message_id = {1} AND owner = {2}`)
	s.deleteMessage = x(`DELETE FROM MESSAGE WHERE id = {1}`)
	s.restore = x(`UPDATE MESSAGE SET visible = TRUE, timestamp = NULL, payload = {1}, version = version + 1 WHERE id = {2} AND queue_id IS NOT NULL`)
	s.keepRejected = x(`INSERT INTO REJECTED (message_id, queue, payload, reason, rejected_at) VALUES ({1}, {2}, {3}, {4}, NOWMS)`)
	s.size = x(`SELECT count(*) FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = {1}) AND visible = TRUE`)
	s.purge = x(`DELETE FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = {1}) AND visible = TRUE`)
	s.detach = x(`UPDATE MESSAGE SET queue_id = NULL WHERE queue_id = (SELECT id FROM QUEUE WHERE name = {1})`)
	s.unbindQueue = x(`DELETE FROM BINDING WHERE queue = {1}`)
	s.deleteQueueRw = x(`DELETE FROM QUEUE WHERE name = {1}`)
	s.unbind = x(`DELETE FROM BINDING WHERE exchange = {1} AND routing_key = {2} AND queue = {3}`)
	s.bindings = x(`SELECT routing_key, pattern, queue FROM BINDING WHERE exchange = {1}`)
	s.dropBindings = x(`DELETE FROM BINDING WHERE exchange = {1}`)
	s.exchangeType = x(`SELECT type, durable, auto_delete FROM EXCHANGE WHERE name = {1}`)
	s.deleteExchange = x(`DELETE FROM EXCHANGE WHERE name = {1}`)
	s.ownerRenew = x(`UPDATE OWNER SET expires = NOWMS + {1} WHERE owner = {2}`)
	s.ownerDelete = x(`DELETE FROM OWNER WHERE owner = {1}`)
	s.ownersExpire = x(`DELETE FROM OWNER WHERE expires < NOWMS`)
	s.orphans = x(`SELECT l.message_id, l.owner FROM LEASE l LEFT JOIN OWNER o ON o.owner = l.owner WHERE o.owner IS NULL LIMIT 100`)
	s.payloadOf = x(`SELECT payload FROM MESSAGE WHERE id = {1}`)

	// A row is due once the database's clock has passed due_at (strictly:
	// NOWMS rounds), so that nothing is moved early.
	s.delayedPut = x(`INSERT INTO DELAYED (queue, payload, due_at) VALUES ({1}, {2}, NOWMS + {3})`)
	s.delayedNext = x(`SELECT MIN(due_at) - NOWMS FROM DELAYED`)
	due := fmt.Sprintf(`SELECT id FROM DELAYED WHERE due_at < NOWMS ORDER BY due_at, id LIMIT %d`, delayedBatch)
	switch d {
	case postgres:
		// One statement, so one transaction: the rows are deleted and
		// their messages inserted together; SKIP LOCKED leaves rows another
		// mover is moving to it. A row whose queue is gone is dropped.
		s.delayedMove = x(`WITH d AS (DELETE FROM DELAYED WHERE id IN (` + due + ` FOR UPDATE SKIP LOCKED)
  RETURNING id, queue, payload, due_at),
m AS (INSERT INTO MESSAGE (id, visible, timestamp, payload, version, queue_id)
  SELECT nextval('message_id_sequence'), TRUE, NULL, d.payload, 1, q.id FROM d JOIN QUEUE q ON q.name = d.queue
  ORDER BY d.due_at, d.id RETURNING 1)
SELECT DISTINCT queue FROM d`)
	case mariadb:
		s.delayedSelect = x(strings.Replace(due, "SELECT id", "SELECT id, queue, payload", 1) + ` FOR UPDATE SKIP LOCKED`)
	case sqlite:
		s.delayedSelect = x(strings.Replace(due, "SELECT id", "SELECT id, queue, payload", 1)) // under the write lock
	}
	s.delayedDelete = x(`DELETE FROM DELAYED WHERE id = {1}`)
	s.delayedDropQueue = x(`DELETE FROM DELAYED WHERE queue = {1}`)
	return s
}

// schema is the DDL of every table, Kombu's as its SQLAlchemy models make
// them on each database (kombu/transport/sqlalchemy/models.py, identical
// in Kombu 5.2 to 5.6), then kombu-go's.
func schema(d dialect, t tables, sequences bool) []ddl {
	r := strings.NewReplacer(
		"QUEUE", t.queue, "MESSAGE", t.message, "EXCHANGE", t.exchange, "BINDING", t.binding,
		"OWNER", t.owner, "LEASE", t.lease, "REJECTED", t.rejected, "DELAYED", t.delayed, "IXDELAYEDDUE", t.ixDelayedDue,
		"IXVISIBLE", t.ixVisible, "IXTIMESTAMPID", t.ixTimestampID, "IXTIMESTAMP", t.ixTimestamp,
		"FKQUEUE", t.fkQueue, "IXTAKE", t.ixTake, "IXLEASEOWNER", t.ixLeaseOwner,
	)
	var out []ddl
	add := func(object, sql string) { out = append(out, ddl{object: r.Replace(object), sql: r.Replace(sql)}) }
	index := func(object, table, sql string) {
		out = append(out, ddl{object: r.Replace(object), table: r.Replace(table), sql: r.Replace(sql)})
	}
	switch d {
	case postgres:
		add("queue_id_sequence", `CREATE SEQUENCE IF NOT EXISTS queue_id_sequence START WITH 1`)
		add("QUEUE", `CREATE TABLE IF NOT EXISTS QUEUE (
	id INTEGER NOT NULL, 
	name VARCHAR(200), 
	PRIMARY KEY (id), 
	UNIQUE (name)
)`)
		add("message_id_sequence", `CREATE SEQUENCE IF NOT EXISTS message_id_sequence START WITH 1`)
		add("MESSAGE", `CREATE TABLE IF NOT EXISTS MESSAGE (
	id INTEGER NOT NULL, 
	visible BOOLEAN, 
	timestamp TIMESTAMP WITHOUT TIME ZONE, 
	payload TEXT NOT NULL, 
	version SMALLINT NOT NULL, 
	queue_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT "FKQUEUE" FOREIGN KEY(queue_id) REFERENCES QUEUE (id)
)`)
	case mariadb:
		// SQLAlchemy's DDL on MariaDB 10.3 on: CREATE SEQUENCE, and no
		// AUTO_INCREMENT on the id columns.
		autoInc := " AUTO_INCREMENT"
		if sequences {
			autoInc = ""
			add("queue_id_sequence", `CREATE SEQUENCE IF NOT EXISTS queue_id_sequence`)
			add("message_id_sequence", `CREATE SEQUENCE IF NOT EXISTS message_id_sequence`)
		}
		add("QUEUE", `CREATE TABLE IF NOT EXISTS QUEUE (
	id INTEGER NOT NULL`+autoInc+`, 
	name VARCHAR(200), 
	PRIMARY KEY (id), 
	UNIQUE (name)
)ENGINE=InnoDB`)
		add("MESSAGE", "CREATE TABLE IF NOT EXISTS MESSAGE (\n"+`	id INTEGER NOT NULL`+autoInc+`, 
	visible BOOL, 
	timestamp DATETIME, 
	payload TEXT NOT NULL, 
	version SMALLINT NOT NULL, 
	queue_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT `+"`FKQUEUE`"+` FOREIGN KEY(queue_id) REFERENCES QUEUE (id)
)ENGINE=InnoDB`)
	case sqlite:
		add("QUEUE", `CREATE TABLE IF NOT EXISTS QUEUE (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	name VARCHAR(200), 
	UNIQUE (name)
)`)
		add("MESSAGE", `CREATE TABLE IF NOT EXISTS MESSAGE (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	visible BOOLEAN, 
	timestamp DATETIME, 
	payload TEXT NOT NULL, 
	version SMALLINT NOT NULL, 
	queue_id INTEGER, 
	CONSTRAINT "FKQUEUE" FOREIGN KEY(queue_id) REFERENCES QUEUE (id)
)`)
	}
	ifNot := " IF NOT EXISTS"
	if d == mariadb {
		ifNot = "" // MySQL 8 has no CREATE INDEX IF NOT EXISTS: the caller looks first
	}
	index("IXVISIBLE", "MESSAGE", "CREATE INDEX"+ifNot+" IXVISIBLE ON MESSAGE (visible)")
	index("IXTIMESTAMP", "MESSAGE", "CREATE INDEX"+ifNot+" IXTIMESTAMP ON MESSAGE (timestamp)")
	index("IXTIMESTAMPID", "MESSAGE", "CREATE INDEX"+ifNot+" IXTIMESTAMPID ON MESSAGE (timestamp, id)")
	// kombu-go's: a consumer finds its queue's oldest visible row at once
	// however many rows other queues, or taken rows, hold.
	index("IXTAKE", "MESSAGE", "CREATE INDEX"+ifNot+" IXTAKE ON MESSAGE (queue_id, visible, id)")

	boolT, bigint, text, engine := "BOOLEAN", "BIGINT", "TEXT", ""
	if d == mariadb {
		boolT, engine = "BOOL", " ENGINE=InnoDB"
	}
	add("EXCHANGE", `CREATE TABLE IF NOT EXISTS EXCHANGE (
	name VARCHAR(255) NOT NULL PRIMARY KEY,
	type VARCHAR(16) NOT NULL,
	durable `+boolT+` NOT NULL,
	auto_delete `+boolT+` NOT NULL
)`+engine)
	add("BINDING", `CREATE TABLE IF NOT EXISTS BINDING (
	exchange VARCHAR(255) NOT NULL,
	routing_key VARCHAR(255) NOT NULL,
	queue VARCHAR(200) NOT NULL,
	pattern `+text+` NOT NULL,
	PRIMARY KEY (exchange, routing_key, queue)
)`+engine)
	add("OWNER", `CREATE TABLE IF NOT EXISTS OWNER (
	owner VARCHAR(36) NOT NULL PRIMARY KEY,
	expires `+bigint+` NOT NULL
)`+engine)
	add("LEASE", `CREATE TABLE IF NOT EXISTS LEASE (
	message_id INTEGER NOT NULL PRIMARY KEY,
	owner VARCHAR(36) NOT NULL
)`+engine)
	index("IXLEASEOWNER", "LEASE", "CREATE INDEX"+ifNot+" IXLEASEOWNER ON LEASE (owner)")
	// Delayed delivery (delay.go): a message waiting for due_at, in unix
	// ms of the database's clock.
	delayedID := "id BIGSERIAL NOT NULL PRIMARY KEY"
	switch d {
	case mariadb:
		delayedID = "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"
	case sqlite:
		delayedID = "id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT"
	}
	add("DELAYED", `CREATE TABLE IF NOT EXISTS DELAYED (
	`+delayedID+`,
	queue VARCHAR(200) NOT NULL,
	payload `+text+` NOT NULL,
	due_at `+bigint+` NOT NULL
)`+engine)
	index("IXDELAYEDDUE", "DELAYED", "CREATE INDEX"+ifNot+" IXDELAYEDDUE ON DELAYED (due_at)")
	add("REJECTED", `CREATE TABLE IF NOT EXISTS REJECTED (
	message_id INTEGER NOT NULL,
	queue VARCHAR(200) NOT NULL,
	payload `+text+` NOT NULL,
	reason `+text+` NOT NULL,
	rejected_at `+bigint+` NOT NULL
)`+engine)
	return out
}
