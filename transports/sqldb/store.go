package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers "sqlite" with database/sql

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// store is a virtual.Store over Kombu's tables.
type store struct {
	o   *options
	d   dialect
	st  *statements
	log *slog.Logger
	db  *sql.DB
	// takeDB is the pool takes and acks run on: on PostgreSQL one whose
	// sessions commit without waiting for the disk (synchronous_commit
	// off), since a take or an ack lost in a crash only makes its message
	// come back (at least once); publishes, restores and rejects wait.
	// Elsewhere it is db.
	takeDB *sql.DB
	// sqlite: the process's one pool for the file, shared by its stores
	// (SQLite lets one writer at a time: one connection per process keeps
	// the process's own writers from waiting on each other's locks).
	shared *sharedDB

	owner      string // this store's lease owner id
	identity   string // the database, as the outbox compares it
	payloadMax int    // bytes kombu_message.payload holds (MySQL's TEXT), 0: no limit

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // prepared (MySQL, SQLite); pgx caches its own

	acks    *acker
	delay   *delayMover
	hub     *hub
	onLost  func(error) // set by the connection: the database is unreachable
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.Once
}

var (
	_ virtual.Store      = (*store)(nil)
	_ virtual.Waker      = (*store)(nil)
	_ virtual.Rejecter   = (*store)(nil)
	_ virtual.BatchTaker = (*store)(nil)
)

// takeTimeout bounds a take, which its caller cannot cut short.
const takeTimeout = 15 * time.Second

// receipt is a taken row.
type receipt struct {
	id    int64
	queue string
}

// openStore connects, makes the tables that are missing, registers the
// store's lease and restores what connections that are gone left taken.
func openStore(ctx context.Context, o *options, log *slog.Logger) (*store, error) {
	s := &store{o: o, d: o.dialect, log: log, st: newStatements(o.dialect, o.tables, false), owner: virtual.NewDeliveryTag(),
		stmts: map[string]*sql.Stmt{}, stop: make(chan struct{}), stopped: make(chan struct{}), onLost: func(error) {},
		delay: newDelayMover()}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	fail := func(err error) (*store, error) {
		s.closeDB()
		return nil, err
	}
	if s.d == mariadb {
		var version string
		if err := s.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
			return fail(s.opError("ask the server's version", err))
		}
		if hasSequences(version) {
			s.st = newStatements(o.dialect, o.tables, true)
		}
		if !hasSkipLocked(version) {
			s.st.takeSelect = strings.Replace(s.st.takeSelect, " SKIP LOCKED", "", 1)
			s.st.delayedSelect = strings.Replace(s.st.delayedSelect, " SKIP LOCKED", "", 1)
			log.Info("sqldb: this MySQL/MariaDB has no FOR UPDATE SKIP LOCKED (MySQL 8, MariaDB 10.6): consumers wait for each other's row locks", "version", version)
		}
	}
	if err := s.ensureSchema(ctx); err != nil {
		return fail(err)
	}
	for _, q := range s.st.syncSequences {
		var maxID int64
		err := s.db.QueryRowContext(ctx, q.maxID).Scan(&maxID)
		if err == nil {
			_, err = s.db.ExecContext(ctx, fmt.Sprintf("SELECT SETVAL(%s, %d)", q.sequence, maxID))
		}
		if err != nil {
			return fail(s.opError("move sequence "+q.sequence+" past its table's ids", err))
		}
	}
	if err := s.prepareAll(ctx); err != nil {
		return fail(err)
	}
	if err := s.db.QueryRowContext(ctx, s.st.identity).Scan(&s.identity); err != nil {
		return fail(s.opError("ask the database who it is", err))
	}
	if s.d == mariadb {
		// TEXT holds 65535 bytes; a longer envelope would fail (or, without
		// strict mode, be cut short): refuse it before, naming the limit.
		var max sql.NullInt64
		err := s.db.QueryRowContext(ctx, `SELECT CHARACTER_OCTET_LENGTH FROM information_schema.columns
WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'payload'`, o.tables.message).Scan(&max)
		if err == nil && max.Valid && max.Int64 > 0 && max.Int64 < 1<<31 {
			s.payloadMax = int(max.Int64)
		}
	}
	if _, err := s.exec(ctx, s.st.ownerUpsert, s.owner, o.leaseTimeout.Milliseconds()); err != nil {
		return fail(s.opError("register the connection's lease", err))
	}
	var listen func(ctx context.Context) (*pgx.Conn, error)
	if s.d == postgres && o.notify {
		cfg := o.pg.Copy()
		listen = func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) }
	}
	s.hub = acquireHub(s.identity+"/"+o.tables.message, o.tables.channel, log, listen)
	s.recover(ctx)
	s.acks = newAcker(s)
	go s.leaseLoop()
	go s.delayLoop()
	return s, nil
}

// hasSequences reports whether the server is a MariaDB with sequences
// (10.3 on), on which SQLAlchemy, and so Python Kombu, takes Kombu's table
// ids from them.
func hasSequences(version string) bool {
	var major, minor int
	fmt.Sscanf(version, "%d.%d", &major, &minor)
	return strings.Contains(strings.ToLower(version), "mariadb") && (major > 10 || major == 10 && minor >= 3)
}

// hasSkipLocked reports whether a MySQL or MariaDB server of the version
// has SELECT ... FOR UPDATE SKIP LOCKED: MySQL 8.0 and MariaDB 10.6 on.
func hasSkipLocked(version string) bool {
	var major, minor int
	fmt.Sscanf(version, "%d.%d", &major, &minor)
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return major > 10 || major == 10 && minor >= 6
	}
	return major >= 8
}

// connect opens the pool and checks that the database answers.
func (s *store) connect(ctx context.Context) error {
	switch s.d {
	case postgres:
		s.db = stdlib.OpenDB(*s.o.pg)
		s.db.SetMaxOpenConns(cmpOr(s.o.maxConns, 8))
		s.db.SetMaxIdleConns(cmpOr(s.o.maxConns, 8))
		takeCfg := s.o.pg.Copy()
		takeCfg.RuntimeParams["synchronous_commit"] = "off"
		s.takeDB = stdlib.OpenDB(*takeCfg)
		s.takeDB.SetMaxOpenConns(max(s.o.maxConns/2, 4))
		s.takeDB.SetMaxIdleConns(max(s.o.maxConns/2, 4))
		s.takeDB.SetConnMaxIdleTime(time.Minute)
	case mariadb:
		c, err := mysql.NewConnector(s.o.my)
		if err != nil {
			return fmt.Errorf("sqldb: %s: %s", s.o.display, maskedError(err, s.o.my.Passwd))
		}
		s.db = sql.OpenDB(c)
		s.db.SetMaxOpenConns(cmpOr(s.o.maxConns, 8))
		s.db.SetMaxIdleConns(cmpOr(s.o.maxConns, 8))
	case sqlite:
		sh, err := acquireSQLite(s.o.sqlitePath, s.o.maxConns, s.o.synchronous)
		if err != nil {
			return fmt.Errorf("sqldb: %s: %w", s.o.display, err)
		}
		s.shared, s.db = sh, sh.db
	}
	s.db.SetConnMaxIdleTime(time.Minute)
	if s.d == sqlite {
		s.db.SetConnMaxIdleTime(0)
	}
	if s.takeDB == nil {
		s.takeDB = s.db
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.closeDB()
		if why, ok := refusedLogin(err); ok {
			return fmt.Errorf("sqldb: %s: %s: %w: %w", s.o.display, why, transport.ErrAccessRefused, &maskErr{err, s.password()})
		}
		if s.d == sqlite {
			return fmt.Errorf("sqldb: %s: cannot open the SQLite file %s: %w", s.o.display, s.o.sqlitePath, err)
		}
		return fmt.Errorf("sqldb: %s: cannot reach the database: %w: %w", s.o.display, transport.ErrClosed, &maskErr{err, s.password()})
	}
	return nil
}

func (s *store) password() string {
	switch s.d {
	case postgres:
		return s.o.pg.Password
	case mariadb:
		return s.o.my.Passwd
	}
	return ""
}

// opError wraps a failure of the store's own statements: a database that
// cannot be reached loses the connection (see conn.lose), and the error
// then is transport.ErrClosed.
func (s *store) opError(what string, err error) error {
	if err == nil {
		return nil
	}
	if unreachable(err) && s.d != sqlite {
		lost := &lostError{cause: &maskErr{err, s.password()}}
		s.onLost(lost)
		return fmt.Errorf("%s: %w", what, lost)
	}
	return fmt.Errorf("%s: %w", what, &maskErr{err, s.password()})
}

// stmt returns the statement prepared on the pool (MySQL, SQLite), or nil
// where the driver prepares and caches statements itself (pgx).
func (s *store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if s.d == postgres {
		return nil, nil
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

// exec runs a statement on the pool and returns the rows it changed.
func (s *store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return 0, err
	}
	var res sql.Result
	if st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = s.db.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// query runs a query on the pool.
func (s *store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.db.QueryContext(ctx, query, args...)
}

// queryRow runs a query of one row on the pool.
func (s *store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st, err := s.stmt(ctx, query); err == nil && st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}

// prepareAll prepares the statements the store runs in its own
// transactions (MySQL, SQLite), so that a transaction never waits for a
// connection of the pool to prepare one: SQLite's pool has one.
func (s *store) prepareAll(ctx context.Context) error {
	if s.d == postgres {
		return nil
	}
	for _, q := range []string{s.st.queueID, s.st.createQueue, s.st.put, s.st.takeSelect, s.st.takeMark, s.st.leaseInsert,
		s.st.leaseDelete, s.st.deleteMessage, s.st.restore, s.st.keepRejected, s.st.size, s.st.purge, s.st.detach,
		s.st.unbindQueue, s.st.deleteQueueRw, s.st.bind, s.st.unbind, s.st.bindings, s.st.dropBindings, s.st.exchangeType,
		s.st.ownerRenew, s.st.payloadOf, s.st.delayedPut, s.st.delayedNext, s.st.delayedSelect, s.st.delayedDelete,
		s.st.delayedDropQueue} {
		if _, err := s.stmt(ctx, q); err != nil {
			return s.opError("prepare "+q, err)
		}
	}
	return nil
}

// txStmt returns the statement, prepared on the pool, for a transaction
// of the store's; nil if it is not prepared.
func (s *store) txStmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if s.d == postgres {
		return nil
	}
	s.stmtMu.Lock()
	st := s.stmts[query]
	s.stmtMu.Unlock()
	if st == nil {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

func (s *store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := s.txStmt(ctx, tx, query); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = tx.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *store) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := s.txStmt(ctx, tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// inTx runs fn in a transaction of the store's, committed if fn returns
// nil, and again (a few times) if the database gave the transaction up
// for a deadlock (see retry).
func (s *store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTxOn(ctx, s.db, fn)
}

// inTxOn is inTx on a pool of the store's: s.db, or s.takeDB.
func (s *store) inTxOn(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	return s.retry(ctx, func() error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// retry runs fn again while it fails for a deadlock or a lock wait that
// timed out (InnoDB picks a victim among transactions that lock rows of
// one table in different orders), up to five times.
func (s *store) retry(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || attempt == 5 || !retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
}

// checkQueue refuses a queue name kombu_queue.name cannot hold.
func checkQueue(queue string) error {
	if n := len([]rune(queue)); n > maxQueueName {
		return fmt.Errorf("queue name of %d characters (kombu_queue.name is VARCHAR(%d)): %w", n, maxQueueName, transport.ErrNotSupported)
	}
	return nil
}

// DeclareQueue makes the queue's kombu_queue row, as Kombu's
// _get_or_create does, unless it exists.
func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	if err := checkQueue(queue); err != nil {
		return err
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return err
	}
	row := s.queryRow
	if tx != nil {
		row = tx.QueryRowContext
	}
	var id int64
	err = row(ctx, s.st.queueID, queue).Scan(&id)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return s.opError("look up the queue", err)
	}
	if t := txFrom(ctx); t != nil && s.d == sqlite {
		// One writer at a time: write where the caller's transaction
		// writes. A rollback takes the row with it; Put makes it again.
		r, err := s.runnerFor(ctx, t)
		if err != nil {
			return err
		}
		_, err = r.exec(ctx, s.st.createQueue, queue)
		return err
	}
	_, err = s.exec(ctx, s.st.createQueue, queue)
	return s.opError("create the queue's row", err)
}

// Size counts the queue's visible rows; the queue exists if its
// kombu_queue row does.
func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	var id int64
	err := s.queryRow(ctx, s.st.queueID, queue).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.opError("look up the queue", err)
	}
	var n int
	if err := s.queryRow(ctx, s.st.size, queue).Scan(&n); err != nil {
		return 0, false, s.opError("count the queue's rows", err)
	}
	return n, true, nil
}

// Purge deletes the queue's visible rows. Taken rows stay taken.
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	n, err := s.exec(ctx, s.st.purge, queue)
	return int(n), s.opError("purge", err)
}

// DeleteQueue deletes the queue's visible rows, its bindings and its
// kombu_queue row. The rows still taken, and those Kombu leaves behind
// (acked or taken by Python, visible=false), lose their queue (queue_id
// NULL): a taken one that is acked goes, one that is restored is dropped.
func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if n, err = s.txExec(ctx, tx, s.st.purge, queue); err != nil {
			return err
		}
		if _, err = s.txExec(ctx, tx, s.st.detach, queue); err != nil {
			return err
		}
		if _, err = s.txExec(ctx, tx, s.st.unbindQueue, queue); err != nil {
			return err
		}
		if _, err = s.txExec(ctx, tx, s.st.delayedDropQueue, queue); err != nil {
			return err
		}
		_, err = s.txExec(ctx, tx, s.st.deleteQueueRw, queue)
		return err
	})
	if err != nil {
		return 0, s.opError("delete the queue", err)
	}
	return int(n), nil
}

// Put inserts the envelope as a new visible row of the queue, making the
// queue's row first if it has none; under WithTx, inside the caller's
// transaction.
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	if err := checkQueue(m.Queue); err != nil {
		return err
	}
	if s.payloadMax > 0 && len(m.Envelope) > s.payloadMax {
		return fmt.Errorf("a message of %d bytes as Kombu's envelope: %s.payload holds %d (MySQL's TEXT; ALTER TABLE %s MODIFY payload MEDIUMTEXT NOT NULL for 16 MiB): %w",
			len(m.Envelope), s.o.tables.message, s.payloadMax, s.o.tables.message, transport.ErrNotSupported)
	}
	var r runner = poolRunner{s}
	t := txFrom(ctx)
	if t != nil {
		var err error
		if r, err = s.runnerFor(ctx, t); err != nil {
			return err
		}
	}
	args := []any{string(m.Envelope), m.Queue}
	put := s.st.put
	if s.d == postgres {
		if s.o.notify {
			args = append(args, s.o.tables.channel)
		} else {
			put = s.st.putQuiet
		}
	}
	for attempt := 0; ; attempt++ {
		var n int64
		var err error
		if s.d == postgres {
			n, err = r.rows(ctx, put, args...)
		} else if t != nil {
			n, err = r.exec(ctx, put, args...) // a deadlock aborted the caller's transaction: not ours to make again
		} else {
			err = s.retry(ctx, func() error {
				var err error
				n, err = r.exec(ctx, put, args...)
				return err
			})
		}
		if err != nil {
			if t != nil && t.internal {
				t.failed.Store(true)
				return s.opError("insert the message in the batch's transaction", err)
			}
			if t != nil {
				return fmt.Errorf("insert the message in the caller's transaction: %w", &maskErr{err, s.password()})
			}
			return s.opError("insert the message", err)
		}
		if n > 0 {
			switch {
			case t == nil:
				s.hub.wake(m.Queue)
			case t.internal:
				t.mu.Lock()
				t.queues = append(t.queues, m.Queue)
				t.mu.Unlock()
			}
			return nil
		}
		if attempt > 0 {
			return fmt.Errorf("insert the message: the queue's row %q vanished while publishing", m.Queue)
		}
		// No kombu_queue row: make it, as Kombu's _put does, and again.
		if t != nil && s.d == sqlite {
			_, err = r.exec(ctx, s.st.createQueue, m.Queue)
		} else {
			_, err = s.exec(ctx, s.st.createQueue, m.Queue)
		}
		if err != nil {
			return s.opError("create the queue's row", err)
		}
	}
}

// poolRunner runs on the store's pool.
type poolRunner struct{ s *store }

func (r poolRunner) rows(ctx context.Context, query string, args ...any) (int64, error) {
	rows, err := r.s.query(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

func (r poolRunner) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return r.s.exec(ctx, query, args...)
}

func (r poolRunner) text(ctx context.Context, query string, args ...any) (string, error) {
	var v string
	err := r.s.queryRow(ctx, query, args...).Scan(&v)
	return v, err
}

// Take takes the queue's oldest visible row (see TakeBatch).
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.TakeBatch(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// TakeBatch takes up to max of the queue's oldest visible rows: marks them
// invisible, as Kombu does, and records this store's lease on them, in one
// transaction. Rows locked by another taker are skipped (FOR UPDATE SKIP
// LOCKED) where the database has it.
func (s *store) TakeBatch(ctx context.Context, queue string, max int) ([]virtual.Taken, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Not cut short by the caller: a take cancelled as the database
	// commits it would leave rows leased that nobody knows it holds.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), takeTimeout)
	defer cancel()
	var out []virtual.Taken
	scan := func(rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var id int64
			var payload []byte
			if err := rows.Scan(&id, &payload); err != nil {
				return err
			}
			out = append(out, virtual.Taken{Envelope: payload, Receipt: receipt{id: id, queue: queue}})
		}
		return rows.Err()
	}
	// Acks waiting to be written go in the take's transaction: one commit
	// for both.
	acks := s.acks.take()
	lost := 0
	var err error
	if s.d == sqlite && len(acks) == 0 {
		// Look before taking: a take's transaction waits for SQLite's one
		// write lock, which a caller's open transaction (WithTx) may hold
		// for as long as it likes. Nothing visible, nothing to wait for.
		var n int64
		if n, err = (poolRunner{s}).rows(ctx, s.st.takeSelect, queue, 1); err != nil {
			return nil, s.opError("take messages", err)
		}
		if n == 0 {
			return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
		}
	}
	if s.d == postgres && len(acks) == 0 {
		var rows *sql.Rows
		if rows, err = s.takeDB.QueryContext(ctx, s.st.take, queue, s.owner, max); err == nil {
			err = scan(rows)
		}
	} else {
		err = s.inTxOn(ctx, s.takeDB, func(tx *sql.Tx) error {
			out = out[:0]
			if len(acks) > 0 {
				var err error
				if lost, err = s.acks.writeIn(ctx, tx, acks); err != nil {
					return err
				}
			}
			if s.d == postgres {
				rows, err := tx.QueryContext(ctx, s.st.take, queue, s.owner, max)
				if err != nil {
					return err
				}
				return scan(rows)
			}
			var rows *sql.Rows
			var err error
			if st := s.txStmt(ctx, tx, s.st.takeSelect); st != nil {
				rows, err = st.QueryContext(ctx, queue, max)
			} else {
				rows, err = tx.QueryContext(ctx, s.st.takeSelect, queue, max)
			}
			if err != nil {
				return err
			}
			if err := scan(rows); err != nil {
				return err
			}
			if s.d == mariadb && len(out) > 1 {
				// Two statements for the lot: round trips cost on a server.
				ids, pairs := make([]any, len(out)), make([]any, 0, 2*len(out))
				for i, t := range out {
					ids[i] = t.Receipt.(receipt).id
					pairs = append(pairs, ids[i], s.owner)
				}
				if _, err := tx.ExecContext(ctx, s.st.takeMarkIn(len(out)), ids...); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, s.st.leaseInsertValues(len(out)), pairs...)
				return err
			}
			for _, t := range out {
				id := t.Receipt.(receipt).id
				if _, err := s.txExec(ctx, tx, s.st.takeMark, id); err != nil {
					return err
				}
				if _, err := s.txExec(ctx, tx, s.st.leaseInsert, id, s.owner); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		s.acks.giveBack(acks)
	} else {
		s.acks.warnLost(lost)
	}
	if err != nil {
		return nil, s.opError("take messages", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	return out, nil
}

// Ack deletes the row and its lease (keep_acked: leaves the row, as Kombu
// does, invisible). It does not wait: acks are written in the background,
// many in one transaction (one wait for the disk), as an AMQP broker takes
// them without a reply. A connection that closes writes those still
// pending first; one that dies leaves them for its lease's end, when the
// messages are delivered again, as an unacked message would be.
func (s *store) Ack(ctx context.Context, r virtual.Receipt) error {
	s.acks.add(r.(receipt))
	return nil
}

// Restore makes the row visible again in its old place (its id orders
// it), with the envelope given, and drops this store's lease. A row whose
// queue was deleted meanwhile is deleted.
func (s *store) Restore(ctx context.Context, r virtual.Receipt, envelope []byte) error {
	rc := r.(receipt)
	lost := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.txExec(ctx, tx, s.st.leaseDelete, rc.id, s.owner)
		if err != nil {
			return err
		}
		if n == 0 {
			lost = true
			return nil
		}
		if n, err = s.txExec(ctx, tx, s.st.restore, string(envelope), rc.id); err != nil || n > 0 {
			return err
		}
		_, err = s.txExec(ctx, tx, s.st.deleteMessage, rc.id)
		return err
	})
	if err != nil {
		return s.opError("restore", err)
	}
	if lost {
		return fmt.Errorf("restore message %d of %q: %w", rc.id, rc.queue, ErrLeaseLost)
	}
	s.announce(ctx, rc.queue)
	return nil
}

// announce wakes the consumers of a queue ("": of every queue) that a
// row became visible again: in this process, and on PostgreSQL in others.
func (s *store) announce(ctx context.Context, queue string) {
	s.hub.wake(queue)
	if s.d == postgres && s.o.notify {
		if _, err := s.db.ExecContext(ctx, "SELECT pg_notify($1, $2)", s.o.tables.channel, queue); err != nil {
			s.log.Debug("sqldb: NOTIFY failed; consumers elsewhere find the message when they poll", "error", err)
		}
	}
}

// Reject keeps a message rejected without a dead-letter exchange in the
// rejected table (<tables>_go_rejected), with the reason, and deletes its
// row; keep_rejected=false deletes it as Ack does (AMQP drops it).
func (s *store) Reject(ctx context.Context, r virtual.Receipt, reason string) error {
	if !s.o.keepRejected {
		return s.Ack(ctx, r)
	}
	rc := r.(receipt)
	lost := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.txExec(ctx, tx, s.st.leaseDelete, rc.id, s.owner)
		if err != nil {
			return err
		}
		if n == 0 {
			lost = true
			return nil
		}
		var payload string
		queue := rc.queue
		err = s.txQueryRow(ctx, tx, s.st.payloadOf, rc.id).Scan(&payload)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if _, err := s.txExec(ctx, tx, s.st.keepRejected, rc.id, queue, payload, reason); err != nil {
			return err
		}
		_, err = s.txExec(ctx, tx, s.st.deleteMessage, rc.id)
		return err
	})
	if err != nil {
		return s.opError("reject", err)
	}
	if lost {
		return fmt.Errorf("reject message %d of %q: %w", rc.id, rc.queue, ErrLeaseLost)
	}
	return nil
}

// Bind writes the binding row, or its pattern if the row is there with
// another.
func (s *store) Bind(ctx context.Context, exchange string, b virtual.Binding) error {
	if err := checkNames(exchange, b.RoutingKey); err != nil {
		return err
	}
	if err := checkQueue(b.Queue); err != nil {
		return err
	}
	bs, err := s.Bindings(ctx, exchange)
	if err != nil {
		return err
	}
	for _, have := range bs {
		if have == b {
			return nil // nothing to write: SQLite under WithTx needs no lock
		}
	}
	if txFrom(ctx) != nil && s.d == sqlite {
		return errSQLiteDeclareInTx("bind queue " + b.Queue + " to exchange " + exchange)
	}
	_, err = s.exec(ctx, s.st.bind, exchange, b.RoutingKey, b.Queue, b.Pattern)
	return s.opError("bind", err)
}

func errSQLiteDeclareInTx(what string) error {
	return fmt.Errorf("%s: SQLite lets one writer at a time, and the transaction in the context (sqldb.WithTx) is it: declare the topology before beginning the transaction: %w",
		what, transport.ErrResourceLocked)
}

func checkNames(exchange, routingKey string) error {
	if n := len([]rune(exchange)); n > maxName {
		return fmt.Errorf("exchange name of %d characters (at most %d): %w", n, maxName, transport.ErrNotSupported)
	}
	if n := len([]rune(routingKey)); n > maxName {
		return fmt.Errorf("routing key of %d characters in a binding (at most %d): %w", n, maxName, transport.ErrNotSupported)
	}
	return nil
}

// Unbind deletes the binding row.
func (s *store) Unbind(ctx context.Context, exchange string, b virtual.Binding) error {
	_, err := s.exec(ctx, s.st.unbind, exchange, b.RoutingKey, b.Queue)
	return s.opError("unbind", err)
}

// readTx returns the transaction a read on the publish path runs in, or
// nil for the store's pool: the batch's own transaction (on SQLite the
// process's one connection is in it), or on SQLite the caller's (WithTx).
// The caller's transaction holds SQLite's one write lock; a take waiting
// for that lock holds the process's one connection, so a read queued
// behind it would wait for the transaction that waits for the read, until
// busy_timeout. In the caller's transaction the read also sees what it
// declared.
func (s *store) readTx(ctx context.Context) (*sql.Tx, error) {
	t := txFrom(ctx)
	switch {
	case t == nil:
		return nil, nil
	case t.internal:
		return t.tx.(*sql.Tx), nil
	case s.d != sqlite:
		return nil, nil
	}
	if _, err := s.runnerFor(ctx, t); err != nil { // the same file?
		return nil, err
	}
	tx, ok := t.tx.(*sql.Tx)
	if !ok { // a pgx.Tx is on PostgreSQL: runnerFor refused it above
		return nil, fmt.Errorf("%w: sqldb.WithTx was given a %T for a SQLite connection", ErrForeignTx, t.tx)
	}
	return tx, nil
}

// Bindings reads the exchange's binding rows.
func (s *store) Bindings(ctx context.Context, exchange string) ([]virtual.Binding, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, err
	}
	var rows *sql.Rows
	if tx != nil {
		rows, err = tx.QueryContext(ctx, s.st.bindings, exchange)
	} else {
		rows, err = s.query(ctx, s.st.bindings, exchange)
	}
	if err != nil {
		return nil, s.opError("read the bindings", err)
	}
	defer rows.Close()
	var out []virtual.Binding
	for rows.Next() {
		var b virtual.Binding
		if err := rows.Scan(&b.RoutingKey, &b.Pattern, &b.Queue); err != nil {
			return nil, s.opError("read the bindings", err)
		}
		out = append(out, b)
	}
	return out, s.opError("read the bindings", rows.Err())
}

// DeleteExchange deletes the exchange's bindings and its row.
func (s *store) DeleteExchange(ctx context.Context, exchange string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := s.txExec(ctx, tx, s.st.dropBindings, exchange); err != nil {
			return err
		}
		_, err := s.txExec(ctx, tx, s.st.deleteExchange, exchange)
		return err
	})
	return s.opError("delete the exchange", err)
}

// declareExchange records the exchange's type where every process sees
// it, unless it is recorded already, and returns the recorded
// declaration.
func (s *store) declareExchange(ctx context.Context, ex transport.Exchange) (transport.Exchange, bool, error) {
	if err := checkNames(ex.Name, ""); err != nil {
		return ex, false, err
	}
	have, found, err := s.exchange(ctx, ex.Name)
	if err != nil || found {
		return have, found, err
	}
	if txFrom(ctx) != nil && s.d == sqlite {
		return ex, false, errSQLiteDeclareInTx("declare exchange " + ex.Name)
	}
	if _, err := s.exec(ctx, s.st.declareEx, ex.Name, ex.Type, ex.Durable, ex.AutoDelete); err != nil {
		return ex, false, s.opError("declare the exchange", err)
	}
	return s.exchange(ctx, ex.Name)
}

// exchange reads an exchange's recorded declaration.
func (s *store) exchange(ctx context.Context, name string) (transport.Exchange, bool, error) {
	ex := transport.Exchange{Name: name}
	tx, err := s.readTx(ctx)
	if err != nil {
		return ex, false, err
	}
	row := s.queryRow
	if tx != nil {
		row = tx.QueryRowContext
	}
	err = row(ctx, s.st.exchangeType, name).Scan(&ex.Type, &ex.Durable, &ex.AutoDelete)
	if errors.Is(err, sql.ErrNoRows) {
		return ex, false, nil
	}
	if err != nil {
		return ex, false, s.opError("read the exchange", err)
	}
	return ex, true, nil
}

// Watch registers a consumer's queues with the process's hub.
func (s *store) Watch(queues []string) (<-chan struct{}, func()) { return s.hub.watch(queues) }

// Close stops the lease loop, gives up the lease (what this store still
// holds is restored by the next connection that looks) and closes the
// pool.
func (s *store) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.acks.close()
		close(s.stop)
		<-s.stopped
		<-s.delay.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, derr := s.exec(ctx, s.st.ownerDelete, s.owner); derr != nil {
			s.log.Debug("sqldb: could not give up the lease; it runs out by itself", "error", derr)
		}
		s.hub.release()
		err = s.closeDB()
	})
	return err
}

func (s *store) closeDB() error {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = map[string]*sql.Stmt{}
	s.stmtMu.Unlock()
	if s.shared != nil {
		s.shared.release()
		return nil
	}
	if s.takeDB != s.db {
		s.takeDB.Close()
	}
	return s.db.Close()
}
