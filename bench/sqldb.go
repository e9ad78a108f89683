package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/sqldb" // also registers modernc.org/sqlite as "sqlite"
)

// The SQL workloads, on PostgreSQL, MySQL/MariaDB and SQLite, in tables
// of the run's own (table_name_prefix kombu_go_bench_, dropped at the
// end; SQLite: a file in a temporary folder).
//
// The bare client is database/sql (pgx's stdlib driver, go-sql-driver,
// modernc.org/sqlite) running the statements the SDK's transport runs, on
// the same tables, with the same prepared statements: a publish reads the
// exchange's bindings and inserts the row (NOTIFY included on
// PostgreSQL), a batch does it in one transaction; a consumer takes the
// oldest visible rows with their leases (FOR UPDATE SKIP LOCKED), four at
// a time as the SDK's consumer at its default prefetch does, decodes each
// and deletes it with its lease, one statement each (the SDK writes its
// acks in the background, many to a transaction); on PostgreSQL takes and
// acks commit without waiting for the disk (synchronous_commit off), as
// the SDK's do. It
// stores the serialized body in base64 (the payload column is text) where
// the SDK stores Kombu's JSON envelope: the difference between the two is
// what kombu-go costs on top of the database's own work. Python Kombu's
// SQLAlchemy transport runs on the same tables.

const (
	bareTake  = 4 // rows per take: the SDK's at its default prefetch (4)
	sqlPrefix = "kombu_go_bench_"
	sqlChunk  = 250 // messages per turn
	sqlScale  = 4   // -n ÷ this: a database takes thousands of messages a second, not tens of thousands
)

func benchPostgres(ctx context.Context, tab *table) error {
	base := os.Getenv("KOMBU_TEST_POSTGRES_URL")
	if base == "" {
		base = brokertest.DefaultPostgresURL
	}
	d, err := sql.Open("pgx", base)
	if err != nil {
		return err
	}
	// Takes and acks on sessions that commit without waiting for the
	// disk, as the SDK's transport runs them.
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	takeDB, err := sql.Open("pgx", base+sep+"synchronous_commit=off")
	if err != nil {
		return err
	}
	return benchSQL(ctx, tab, sqlBench{dialect: "postgresql", goURL: base, pyURL: "sqla+" + strings.Replace(base, "postgresql://", "postgresql+psycopg2://", 1), db: d, takeDB: takeDB})
}

func benchMySQL(ctx context.Context, tab *table) error {
	base := os.Getenv("KOMBU_TEST_MYSQL_URL")
	if base == "" {
		base = brokertest.DefaultMySQLURL
	}
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	c := mysql.NewConfig()
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.Net, c.Addr, c.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
	d, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return err
	}
	return benchSQL(ctx, tab, sqlBench{dialect: "mysql", goURL: base, pyURL: "sqla+" + strings.Replace(base, "mysql://", "mysql+pymysql://", 1), db: d})
}

func benchSQLite(ctx context.Context, tab *table) error {
	dir, err := os.MkdirTemp("", "kombu-go-bench-sqlite-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "bench.db")
	// The bare client's own pool of one, as the SDK's: SQLite takes one
	// writer at a time.
	d, err := sql.Open("sqlite", file+"?_busy_timeout=10000&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1")
	if err != nil {
		return err
	}
	d.SetMaxOpenConns(1)
	return benchSQL(ctx, tab, sqlBench{dialect: "sqlite", goURL: "sqlite:///" + file, pyURL: "sqla+sqlite:///" + file, db: d})
}

type sqlBench struct {
	dialect      string
	goURL, pyURL string
	db           *sql.DB // the bare client's
	takeDB       *sql.DB // its takes and acks (PostgreSQL); nil: db
}

func benchSQL(ctx context.Context, tab *table, b sqlBench) error {
	defer b.db.Close()
	if b.takeDB == nil {
		b.takeDB = b.db
	} else {
		defer b.takeDB.Close()
	}
	url := b.goURL + "?table_name_prefix=" + sqlPrefix
	defaults, tuned, err := dialSides(ctx, url, url)
	if err != nil {
		return err
	}
	defer defaults.conn.Close()
	defer tuned.conn.Close()
	st := newBareStatements(b.dialect)
	bareQueue := benchQueue + ".bare"
	prepared := map[string]*sql.Stmt{}
	for name, q := range st.all() {
		s, err := b.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %s: %w", name, err)
		}
		defer s.Close()
		prepared[q] = s
	}
	stmt := func(q string) *sql.Stmt { return prepared[q] }
	if _, err := stmt(st.createQueue).ExecContext(ctx, bareQueue); err != nil {
		return err
	}
	owner := "kombu-go-bench-bare"
	if _, err := b.db.ExecContext(ctx, st.owner, owner); err != nil {
		return err
	}
	purge := func() error {
		if err := defaults.purge(ctx); err != nil && !errors.Is(err, kombu.ErrNotFound) {
			return err
		}
		_, err := stmt(st.purge).ExecContext(ctx, bareQueue)
		return err
	}
	// publishOne is one bare publish, on the pool or in tx.
	publishOne := func(tx *sql.Tx, readBindings bool) error {
		st1 := func(q string) *sql.Stmt {
			if tx != nil {
				return tx.StmtContext(ctx, stmt(q))
			}
			return stmt(q)
		}
		if readBindings {
			rows, err := st1(st.bindings).QueryContext(ctx, benchExchange)
			if err != nil {
				return err
			}
			for rows.Next() {
				var rk, pattern, queue string
				if err := rows.Scan(&rk, &pattern, &queue); err != nil {
					rows.Close()
					return err
				}
			}
			rows.Close()
		}
		body, err := encode()
		if err != nil {
			return err
		}
		payload := base64.StdEncoding.EncodeToString(body)
		if b.dialect == "postgresql" {
			var one int
			return st1(st.put).QueryRowContext(ctx, payload, bareQueue, sqlPrefix+"kombu_go").Scan(&one)
		}
		_, err = st1(st.put).ExecContext(ctx, payload, bareQueue)
		return err
	}
	bareBatched := func(count int) error {
		for sent := 0; sent < count; {
			tx, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			for i := 0; sent < count && i < pipelineWindow; i, sent = i+1, sent+1 {
				if err := publishOne(tx, i == 0); err != nil {
					tx.Rollback()
					return err
				}
			}
			if err := tx.Commit(); err != nil {
				return err
			}
		}
		return nil
	}
	barePublish := func(count int) error {
		for range count {
			if err := publishOne(nil, true); err != nil {
				return err
			}
		}
		return nil
	}
	type row struct {
		id      int64
		payload string
	}
	// takeRows takes up to bareTake rows with their leases, as the SDK's
	// consumer at its default prefetch takes them.
	takeRows := func(max int) ([]row, error) {
		var out []row
		scan := func(rows *sql.Rows) error {
			defer rows.Close()
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.id, &r.payload); err != nil {
					return err
				}
				out = append(out, r)
			}
			return rows.Err()
		}
		if b.dialect == "postgresql" {
			rows, err := b.takeDB.QueryContext(ctx, st.take, bareQueue, owner, max) // pgx prepares and caches it
			if err != nil {
				return nil, err
			}
			return out, scan(rows)
		}
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		rows, err := tx.StmtContext(ctx, stmt(st.takeSelect)).QueryContext(ctx, bareQueue, max)
		if err == nil {
			err = scan(rows)
		}
		for _, r := range out {
			if err == nil {
				_, err = tx.StmtContext(ctx, stmt(st.takeMark)).ExecContext(ctx, r.id)
			}
			if err == nil {
				_, err = tx.StmtContext(ctx, stmt(st.leaseInsert)).ExecContext(ctx, r.id, owner)
			}
		}
		if err != nil {
			tx.Rollback()
			return nil, err
		}
		return out, tx.Commit()
	}
	var taken []row
	bareConsume := func(count int) error {
		for range count {
			if len(taken) == 0 {
				var err error
				if taken, err = takeRows(bareTake); err != nil {
					return err
				}
				if len(taken) == 0 {
					return errors.New("the bare queue is empty")
				}
			}
			id, payload := taken[0].id, taken[0].payload
			taken = taken[1:]
			body, err := base64.StdEncoding.DecodeString(payload)
			if err != nil {
				return err
			}
			if err := decode(body); err != nil {
				return err
			}
			if b.dialect == "sqlite" {
				tx, err := b.db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				_, err = tx.StmtContext(ctx, stmt(st.leaseDelete)).ExecContext(ctx, id, owner)
				if err == nil {
					_, err = tx.StmtContext(ctx, stmt(st.deleteMessage)).ExecContext(ctx, id)
				}
				if err != nil {
					tx.Rollback()
					return err
				}
				if err := tx.Commit(); err != nil {
					return err
				}
			} else if b.dialect == "postgresql" {
				if _, err := b.takeDB.ExecContext(ctx, st.ack, id, owner); err != nil {
					return err
				}
			} else if _, err := stmt(st.ack).ExecContext(ctx, id, owner); err != nil {
				return err
			}
		}
		return nil
	}
	pyOpts, _ := json.Marshal(map[string]string{"queue_tablename": sqlPrefix + "kombu_queue", "message_tablename": sqlPrefix + "kombu_message"})
	python := func(workload string, prepare func(int) error) func(int) (pythonResult, error) {
		if !tab.cfg.python || !hasPythonSQL(b.dialect) {
			return nil
		}
		run := pythonSide(b.pyURL, workload, "SQLAlchemy", prepare)
		return func(n int) (pythonResult, error) {
			os.Setenv("KOMBU_BENCH_TRANSPORT_OPTIONS", string(pyOpts))
			defer os.Unsetenv("KOMBU_BENCH_TRANSPORT_OPTIONS")
			return run(n)
		}
	}
	n := max(tab.cfg.n/sqlScale, 2*sqlChunk)
	pyN := max(tab.cfg.pythonN/sqlScale, 100)
	targets := []target{{who: sdkDefaults, minVsBare: 0.8, minVsPython: 10}}

	err = tab.add(workload{
		name: "publish, one by one", n: n, chunk: sqlChunk, setup: only(purge),
		sides: []side{
			{sdkDefaults, "", publishEach(ctx, defaults.producer)},
			{bare, "database/sql, same statements", barePublish},
		},
		python:  pythonN(pyN, python("publish-unconfirmed", func(int) error { return purge() })),
		targets: targets,
	})
	if err != nil {
		return err
	}
	err = tab.add(workload{
		name: fmt.Sprintf("publish, batched (%d)", pipelineWindow), n: 4 * n, chunk: pipelineWindow, setup: only(purge),
		sides: []side{
			{sdkTuned, "kombu.Batch: one transaction", publishBatched(ctx, tuned.producer)},
			{bare, "database/sql, one transaction", bareBatched},
		},
		python: pythonN(pyN, python("publish-unconfirmed", func(int) error { return purge() })),
		// No target against the bare client: with one commit for a
		// thousand rows the database waits no more, and what is left is
		// the SDK's CPU, writing Kombu's JSON envelope (four times the
		// bare client's base64 body) for Python to read.
		targets: []target{{who: sdkTuned, minVsPython: 10}},
		note:    "Python Kombu has no batch: its row publishes one by one",
	})
	if err != nil {
		return err
	}
	consumers := []*held{
		sdkConsumer(ctx, sdkDefaults, defaults.conn),
		sdkConsumer(ctx, sdkTuned, tuned.conn, kombu.WithPrefetch(tunedPrefetch)),
	}
	err = tab.add(workload{
		name: "consume, ack each", n: n, chunk: sqlChunk,
		setup: func() (func() error, error) {
			if err := purge(); err != nil {
				return nil, err
			}
			if err := publishBatched(ctx, defaults.producer)(len(consumers) * (n + sqlChunk + tunedPrefetch)); err != nil {
				return nil, err
			}
			for range n + sqlChunk {
				body, err := encode()
				if err != nil {
					return nil, err
				}
				args := []any{base64.StdEncoding.EncodeToString(body), bareQueue}
				if b.dialect == "postgresql" {
					args = append(args, sqlPrefix+"kombu_go")
					var one int
					err = stmt(st.put).QueryRowContext(ctx, args...).Scan(&one)
				} else {
					_, err = stmt(st.put).ExecContext(ctx, args...)
				}
				if err != nil {
					return nil, err
				}
			}
			return beginAll(consumers...)
		},
		sides: []side{
			{sdkDefaults, "", defaults.explained(ctx, consumers[0].take)},
			{sdkTuned, "prefetch 100", defaults.explained(ctx, consumers[1].take)},
			{bare, "database/sql, same statements", bareConsume},
		},
		python: pythonN(pyN, python("consume", func(n int) error {
			return errors.Join(purge(), publishBatched(ctx, defaults.producer)(n))
		})),
		targets: targets,
	})
	if err != nil {
		return err
	}
	err = defaults.remove(ctx)
	if b.dialect != "sqlite" {
		for _, t := range []string{"kombu_go_exchange", "kombu_go_binding", "kombu_go_owner", "kombu_go_lease", "kombu_go_rejected", "kombu_message", "kombu_queue"} {
			if _, derr := b.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+sqlPrefix+t); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}
	return err
}

// pythonN runs a Python side with n messages, whatever the workload asks
// (Python Kombu's SQL transport manages a few hundred a second).
func pythonN(n int, run func(int) (pythonResult, error)) func(int) (pythonResult, error) {
	if run == nil {
		return nil
	}
	return func(int) (pythonResult, error) { return run(n) }
}

// hasPythonSQL reports whether Python Kombu's SQLAlchemy transport can
// reach the database (python3-sqlalchemy with psycopg2 or PyMySQL).
func hasPythonSQL(dialect string) bool {
	mod := map[string]string{"postgresql": "psycopg2", "mysql": "pymysql", "sqlite": "sqlite3"}[dialect]
	if exec.Command(pythonBin, "-c", "import kombu, sqlalchemy, "+mod).Run() != nil {
		fmt.Fprintf(os.Stderr, "bench: Python Kombu's SQL transport not installed (apt-get install python3-sqlalchemy python3-psycopg2 python3-pymysql); its %s rows are left out\n", dialect)
		return false
	}
	return true
}

// bareStatements are the statements transports/sqldb runs (statements.go
// there), for the bare client, on the benchmark's tables.
type bareStatements struct {
	createQueue, purge, bindings, put, take, takeSelect, takeMark, leaseInsert, ack, leaseDelete, deleteMessage, owner string
}

func (s bareStatements) all() map[string]string {
	m := map[string]string{"createQueue": s.createQueue, "purge": s.purge, "bindings": s.bindings, "put": s.put}
	for name, q := range map[string]string{"take": s.take, "takeSelect": s.takeSelect, "takeMark": s.takeMark,
		"leaseInsert": s.leaseInsert, "ack": s.ack, "leaseDelete": s.leaseDelete, "deleteMessage": s.deleteMessage} {
		if q != "" {
			m[name] = q
		}
	}
	return m
}

func newBareStatements(dialect string) bareStatements {
	r := strings.NewReplacer("QUEUE", sqlPrefix+"kombu_queue", "MESSAGE", sqlPrefix+"kombu_message",
		"BINDING", sqlPrefix+"kombu_go_binding", "LEASE", sqlPrefix+"kombu_go_lease", "OWNER", sqlPrefix+"kombu_go_owner")
	var s bareStatements
	switch dialect {
	case "postgresql":
		s = bareStatements{
			createQueue: `INSERT INTO QUEUE (id, name) VALUES (nextval('queue_id_sequence'), $1) ON CONFLICT (name) DO NOTHING`,
			purge:       `DELETE FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = $1) AND visible = true`,
			bindings:    `SELECT routing_key, pattern, queue FROM BINDING WHERE exchange = $1`,
			put: `WITH q AS (SELECT id FROM QUEUE WHERE name = $2),
m AS (INSERT INTO MESSAGE (id, visible, timestamp, payload, version, queue_id)
      SELECT nextval('message_id_sequence'), true, NULL, $1, 1, q.id FROM q RETURNING 1)
SELECT 1 FROM m, pg_notify($3, $2)`,
			take: `WITH c AS (
  SELECT id FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = $1) AND visible = true
  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED),
t AS (UPDATE MESSAGE m SET visible = false, timestamp = LOCALTIMESTAMP, version = m.version + 1
      FROM c WHERE m.id = c.id RETURNING m.id, m.payload),
l AS (INSERT INTO LEASE (message_id, owner) SELECT id, $2 FROM t)
SELECT id, payload FROM t ORDER BY id`,
			ack: `WITH l AS (DELETE FROM LEASE WHERE message_id = $1 AND owner = $2 RETURNING message_id)
DELETE FROM MESSAGE WHERE id IN (SELECT message_id FROM l)`,
			owner: `INSERT INTO OWNER (owner, expires) VALUES ($1, 9223372036854775807) ON CONFLICT (owner) DO NOTHING`,
		}
	case "mysql":
		s = bareStatements{
			// MariaDB: ids from Kombu's sequences, as SQLAlchemy and the SDK take them there.
			createQueue: `INSERT INTO QUEUE (id, name) VALUES (NEXTVAL(queue_id_sequence), ?) ON DUPLICATE KEY UPDATE name = name`,
			purge:       `DELETE FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = ?) AND visible = 1`,
			bindings:    `SELECT routing_key, pattern, queue FROM BINDING WHERE exchange = ?`,
			put:         `INSERT INTO MESSAGE (id, visible, timestamp, payload, version, queue_id) SELECT NEXTVAL(message_id_sequence), 1, NULL, ?, 1, id FROM QUEUE WHERE name = ?`,
			takeSelect:  `SELECT id, payload FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = ?) AND visible = 1 ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
			takeMark:    `UPDATE MESSAGE SET visible = 0, timestamp = NOW(), version = version + 1 WHERE id = ?`,
			leaseInsert: `INSERT INTO LEASE (message_id, owner) VALUES (?, ?)`,
			ack:         `DELETE m, l FROM LEASE l JOIN MESSAGE m ON m.id = l.message_id WHERE l.message_id = ? AND l.owner = ?`,
			owner:       `INSERT IGNORE INTO OWNER (owner, expires) VALUES (?, 9223372036854775807)`,
		}
	case "sqlite":
		s = bareStatements{
			createQueue:   `INSERT INTO QUEUE (name) VALUES (?) ON CONFLICT (name) DO NOTHING`,
			purge:         `DELETE FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = ?) AND visible = 1`,
			bindings:      `SELECT routing_key, pattern, queue FROM BINDING WHERE exchange = ?`,
			put:           `INSERT INTO MESSAGE (visible, timestamp, payload, version, queue_id) SELECT 1, NULL, ?, 1, id FROM QUEUE WHERE name = ?`,
			takeSelect:    `SELECT id, payload FROM MESSAGE WHERE queue_id = (SELECT id FROM QUEUE WHERE name = ?) AND visible = 1 ORDER BY id LIMIT ?`,
			takeMark:      `UPDATE MESSAGE SET visible = 0, timestamp = strftime('%Y-%m-%d %H:%M:%f000', 'now', 'localtime'), version = version + 1 WHERE id = ?`,
			leaseInsert:   `INSERT INTO LEASE (message_id, owner) VALUES (?, ?)`,
			leaseDelete:   `DELETE FROM LEASE WHERE message_id = ? AND owner = ?`,
			deleteMessage: `DELETE FROM MESSAGE WHERE id = ?`,
			owner:         `INSERT INTO OWNER (owner, expires) VALUES (?, 9223372036854775807) ON CONFLICT (owner) DO NOTHING`,
		}
	}
	for _, f := range []*string{&s.createQueue, &s.purge, &s.bindings, &s.put, &s.take, &s.takeSelect, &s.takeMark, &s.leaseInsert, &s.ack, &s.leaseDelete, &s.deleteMessage, &s.owner} {
		*f = r.Replace(*f)
	}
	return s
}
