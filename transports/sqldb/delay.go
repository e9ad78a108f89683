package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Delayed delivery (transport.FeatureDelay). Kombu's SQL transport has
// none; the layout is kombu-go's. A delayed message is routed when it is
// published, as any message, and each queue's copy waits as a row of
// kombu_go_delayed (id, queue, payload, due_at), due_at in unix
// milliseconds of the database server's clock (so that processes whose
// clocks disagree agree on when it is due). Kombu reads only
// kombu_message, so no Python consumer sees it before it is due. Every
// kombu-go connection moves the due rows into kombu_message, as a publish
// would insert them then, in one transaction that deletes them from
// kombu_go_delayed: FOR UPDATE SKIP LOCKED (PostgreSQL; MySQL 8 and
// MariaDB 10.6) or SQLite's write lock keeps two movers from moving one
// row twice. A connection looks every second, and sooner when a message it
// stored itself is due sooner, so a message arrives within about a second
// of its time while any kombu-go process with the database is connected;
// with none, it waits in its row, as durable as a published one.

var _ virtual.Delayer = (*store)(nil)

// delayLookEvery bounds how long a connection sleeps between looks at
// kombu_go_delayed.
const delayLookEvery = time.Second

// delayedBatch bounds the rows moved in one transaction.
const delayedBatch = 500

// delayMover is a store's mover of due delayed rows.
type delayMover struct {
	wake chan struct{}
	done chan struct{} // closed when the loop has returned

	mu     sync.Mutex
	sooner time.Time // the soonest due time this store stored, by the local clock (zero: none pending)
}

func newDelayMover() *delayMover {
	return &delayMover{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// PutDelayed inserts the message into kombu_go_delayed, due after delay by
// the database's clock; under WithTx, inside the caller's transaction.
// The queue's kombu_queue row is made first if it has none, as Put makes
// it.
func (s *store) PutDelayed(ctx context.Context, m virtual.Message, delay time.Duration) error {
	if err := checkQueue(m.Queue); err != nil {
		return err
	}
	if s.payloadMax > 0 && len(m.Envelope) > s.payloadMax {
		return fmt.Errorf("a delayed message of %d bytes as Kombu's envelope: %s.payload holds %d (MySQL's TEXT): %w",
			len(m.Envelope), s.o.tables.message, s.payloadMax, transport.ErrNotSupported)
	}
	// Rounded up to the millisecond: never due before its time.
	ms := (delay + time.Millisecond - 1) / time.Millisecond
	due := time.Now().Add(delay)
	var r runner = poolRunner{s}
	t := txFrom(ctx)
	if t != nil {
		var err error
		if r, err = s.runnerFor(ctx, t); err != nil {
			return err
		}
	}
	var err error
	if t != nil && s.d == sqlite {
		// One writer at a time, and the transaction is it: the queue's row
		// is written there (as Put writes it).
		_, err = r.exec(ctx, s.st.createQueue, m.Queue)
	} else {
		err = s.DeclareQueue(ctx, m.Queue)
	}
	if err != nil {
		if t != nil && t.internal {
			t.failed.Store(true)
		}
		return err
	}
	if t != nil {
		_, err = r.exec(ctx, s.st.delayedPut, m.Queue, string(m.Envelope), int64(ms))
	} else {
		err = s.retry(ctx, func() error {
			_, err := r.exec(ctx, s.st.delayedPut, m.Queue, string(m.Envelope), int64(ms))
			return err
		})
	}
	switch {
	case err != nil && t != nil && t.internal:
		t.failed.Store(true)
		return s.opError("insert the delayed message in the batch's transaction", err)
	case err != nil && t != nil:
		return fmt.Errorf("insert the delayed message in the caller's transaction: %w", &maskErr{err, s.password()})
	case err != nil:
		return s.opError("insert the delayed message", err)
	}
	s.delay.mu.Lock()
	if s.delay.sooner.IsZero() || due.Before(s.delay.sooner) {
		s.delay.sooner = due
	}
	s.delay.mu.Unlock()
	select {
	case s.delay.wake <- struct{}{}:
	default:
	}
	return nil
}

// delayLoop moves due delayed rows until the store closes.
func (s *store) delayLoop() {
	defer close(s.delay.done)
	for {
		wait := s.moveDue()
		s.delay.mu.Lock()
		if !s.delay.sooner.IsZero() {
			// A row this store stored that the database did not show yet
			// (a transaction not committed when it looked): look again
			// when it is due by the local clock, then rely on the database.
			if w := time.Until(s.delay.sooner); w > 0 {
				wait = min(wait, w+time.Millisecond)
			} else {
				s.delay.sooner = time.Time{}
			}
		}
		s.delay.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.delay.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// moveDue moves the due rows and returns how long until the next is due
// by the database's clock, at most delayLookEvery. It looks before it
// moves: a connection with nothing due writes nothing (SQLite: takes no
// write lock).
func (s *store) moveDue() time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 100 {
		var next sql.NullInt64
		if err := s.db.QueryRowContext(ctx, s.st.delayedNext).Scan(&next); err != nil {
			s.log.Warn("sqldb: looking for due delayed messages failed; trying again in a second", "table", s.o.tables.delayed, "error", &maskErr{err, s.password()})
			return delayLookEvery
		}
		switch {
		case !next.Valid:
			return delayLookEvery
		case next.Int64 >= 0:
			// +1 ms: a row is due once the clock has passed due_at.
			return min(delayLookEvery, time.Duration(next.Int64+1)*time.Millisecond)
		}
		queues, err := s.moveBatch(ctx)
		if err != nil {
			s.log.Warn("sqldb: moving due delayed messages failed; trying again in a second", "table", s.o.tables.delayed, "error", &maskErr{err, s.password()})
			return delayLookEvery
		}
		for q := range queues {
			s.announce(ctx, q)
		}
		if len(queues) == 0 {
			return 10 * time.Millisecond // another mover holds the due rows: see that it committed
		}
	}
	return 0
}

// moveBatch moves up to delayedBatch due rows in one transaction and
// returns the queues it moved to.
func (s *store) moveBatch(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	if s.d == postgres {
		rows, err := s.db.QueryContext(ctx, s.st.delayedMove)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var q string
			if err := rows.Scan(&q); err != nil {
				return nil, err
			}
			out[q]++
		}
		return out, rows.Err()
	}
	var opts *sql.TxOptions
	if s.d == mariadb {
		// No gap locks: publishers inserting later rows do not wait.
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	err := s.retry(ctx, func() error {
		clear(out)
		tx, err := s.db.BeginTx(ctx, opts)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		type row struct {
			id             int64
			queue, payload string
		}
		var due []row
		rows, err := tx.QueryContext(ctx, s.st.delayedSelect)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.queue, &r.payload); err != nil {
				rows.Close()
				return err
			}
			due = append(due, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range due {
			// No queue row (deleted meanwhile): the message is dropped.
			if _, err := s.txExec(ctx, tx, s.st.put, r.payload, r.queue); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.st.delayedDelete, r.id); err != nil {
				return err
			}
			out[r.queue]++
		}
		return tx.Commit()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
