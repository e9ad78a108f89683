package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// WithTx returns a context under which every publish on a kombu-go
// connection to the same database writes its messages inside tx, the
// caller's transaction, instead of on its own: a transactional outbox. The
// messages become visible to consumers when tx commits, together with the
// caller's own writes in it, and never if it rolls back.
//
//	tx, _ := db.BeginTx(ctx, nil)
//	tx.ExecContext(ctx, `INSERT INTO orders ...`)
//	err := producer.PlaceOrder(sqldb.WithTx(ctx, tx), order) // generated code, unchanged
//	tx.Commit()
//
// tx is a *sql.Tx on any of the three databases, or on PostgreSQL a
// pgx.Tx (from a pgx.Conn or pgxpool.Pool). The first publish checks that
// tx is on the database the connection publishes to (same server, database
// and schema, or same SQLite file) and fails with an error wrapping
// ErrForeignTx if not, as it does for any other type of tx.
//
// Only the message rows are written in tx. Declarations (queues,
// exchanges, bindings) are made on the connection's own, and committed at
// once: a rollback does not undo them. On SQLite, which lets one writer at
// a time, a declaration that has to write while tx is open would wait for
// tx, which waits for the publish: declare the topology before beginning
// the transaction (a consumer or Topology.Declare at startup); a publish
// that would need to write a declaration fails at once instead.
//
// A connection to another transport (RabbitMQ, Redis) does not read the
// context's transaction: under WithTx it publishes at once, outside tx.
// Relay such messages from the database instead (kombu.Shovel).
func WithTx(ctx context.Context, tx any) context.Context {
	return context.WithValue(ctx, txKey{}, &txState{tx: tx})
}

type txKey struct{}

// txState is the caller's transaction and, once known, the database it is
// on.
type txState struct {
	tx       any
	once     sync.Once
	identity string
	err      error

	// internal: the connection's own transaction for a batch (no check);
	// failed: a statement in it failed, so it is rolled back; queues: the
	// queues it wrote to, woken after the commit.
	internal bool
	failed   atomic.Bool
	mu       sync.Mutex
	queues   []string
}

func txFrom(ctx context.Context) *txState {
	t, _ := ctx.Value(txKey{}).(*txState)
	return t
}

// runner runs statements: on the store's pool, or in a transaction.
type runner interface {
	// rows runs a query and returns how many rows it returned.
	rows(ctx context.Context, query string, args ...any) (int64, error)
	// exec runs a statement and returns how many rows it changed.
	exec(ctx context.Context, query string, args ...any) (int64, error)
	// text runs a query returning one text value.
	text(ctx context.Context, query string, args ...any) (string, error)
}

// runnerFor checks the caller's transaction and returns a runner for it.
func (s *store) runnerFor(ctx context.Context, t *txState) (runner, error) {
	if t.internal {
		return storeTx{s, t.tx.(*sql.Tx)}, nil
	}
	var r runner
	switch tx := t.tx.(type) {
	case *sql.Tx:
		r = sqlTx{tx}
	case pgx.Tx:
		r = pgxTx{tx}
	default:
		return nil, fmt.Errorf("%w: sqldb.WithTx was given a %T, not a *sql.Tx or (on PostgreSQL) a pgx.Tx", ErrForeignTx, t.tx)
	}
	t.once.Do(func() {
		id, err := r.text(ctx, s.st.identity)
		if err != nil {
			t.err = fmt.Errorf("%w: asking the transaction which database it is on (as %s) failed: %v", ErrForeignTx, s.o.dialect, err)
			return
		}
		t.identity = id
	})
	if t.err != nil {
		return nil, t.err
	}
	if t.identity != s.identity {
		return nil, fmt.Errorf("%w: the transaction is on %s, the connection publishes to %s (%s)", ErrForeignTx, t.identity, s.identity, s.o.display)
	}
	return r, nil
}

type sqlTx struct{ tx *sql.Tx }

func (r sqlTx) rows(ctx context.Context, query string, args ...any) (int64, error) {
	rows, err := r.tx.QueryContext(ctx, query, args...)
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

func (r sqlTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := r.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (r sqlTx) text(ctx context.Context, query string, args ...any) (string, error) {
	var s string
	err := r.tx.QueryRowContext(ctx, query, args...).Scan(&s)
	return s, err
}

// storeTx runs in a transaction of the store's own, with the statements
// the store prepared.
type storeTx struct {
	s  *store
	tx *sql.Tx
}

func (r storeTx) rows(ctx context.Context, query string, args ...any) (int64, error) {
	return sqlTx{r.tx}.rows(ctx, query, args...)
}

func (r storeTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return r.s.txExec(ctx, r.tx, query, args...)
}

func (r storeTx) text(ctx context.Context, query string, args ...any) (string, error) {
	return sqlTx{r.tx}.text(ctx, query, args...)
}

type pgxTx struct{ tx pgx.Tx }

func (r pgxTx) rows(ctx context.Context, query string, args ...any) (int64, error) {
	rows, err := r.tx.Query(ctx, query, args...)
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

func (r pgxTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := r.tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (r pgxTx) text(ctx context.Context, query string, args ...any) (string, error) {
	var s string
	err := r.tx.QueryRow(ctx, query, args...).Scan(&s)
	return s, err
}
