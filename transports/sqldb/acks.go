package sqldb

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// ackLinger is how long the acker leaves acks pending for a take to
// write them.
const ackLinger = 2 * time.Millisecond

// acker writes acks in the background: whatever arrived while it wrote
// the last batch goes in the next, in one transaction (group commit), so
// that a consumer's acks do not each wait for the disk.
type acker struct {
	s       *store
	mu      sync.Mutex
	pending []receipt
	kick    chan struct{}
	closed  bool
	done    chan struct{}
}

func newAcker(s *store) *acker {
	a := &acker{s: s, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go a.loop()
	return a
}

func (a *acker) add(r receipt) {
	a.mu.Lock()
	a.pending = append(a.pending, r)
	a.mu.Unlock()
	signal(a.kick)
}

// take hands the pending acks to a consumer's next take, which writes them
// in its own transaction (one commit for both).
func (a *acker) take() []receipt {
	a.mu.Lock()
	defer a.mu.Unlock()
	batch := a.pending
	a.pending = nil
	return batch
}

// giveBack returns acks a take could not write.
func (a *acker) giveBack(batch []receipt) {
	if len(batch) == 0 {
		return
	}
	a.mu.Lock()
	a.pending = append(batch, a.pending...)
	a.mu.Unlock()
	signal(a.kick)
}

// close writes what is pending, trying for a while if the database does
// not answer, and stops.
func (a *acker) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	signal(a.kick)
	<-a.done
}

func (a *acker) loop() {
	defer close(a.done)
	backoff := 50 * time.Millisecond
	var failingSince time.Time
	for {
		a.mu.Lock()
		for len(a.pending) == 0 && !a.closed {
			a.mu.Unlock()
			<-a.kick
			a.mu.Lock()
		}
		closed := a.closed
		if !closed {
			// Linger a moment: a consumer's next take, which comes as soon
			// as its prefetch has room, writes what is pending in its own
			// transaction, and one commit does for both.
			a.mu.Unlock()
			time.Sleep(ackLinger)
			a.mu.Lock()
		}
		batch := a.pending
		a.pending = nil
		a.mu.Unlock()
		if len(batch) == 0 {
			if closed {
				return
			}
			continue
		}
		if err := a.write(batch); err != nil {
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if closed && time.Since(failingSince) > 5*time.Second {
				a.s.log.Warn("sqldb: acks could not be written; those messages are delivered again once this connection's lease runs out",
					"count", len(batch), "error", err)
				return
			}
			a.s.log.Warn("sqldb: writing acks failed; retrying", "count", len(batch), "error", err)
			a.mu.Lock()
			a.pending = append(batch, a.pending...)
			a.mu.Unlock()
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
			signal(a.kick)
			continue
		}
		failingSince, backoff = time.Time{}, 50*time.Millisecond
	}
}

// write deletes the batch's rows and leases (keep_acked: the leases) in
// one transaction. A lease no longer this store's is left alone, with a
// warning: its message was restored, and is delivered again.
func (a *acker) write(batch []receipt) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lost := 0
	err := a.s.inTxOn(ctx, a.s.takeDB, func(tx *sql.Tx) error {
		var err error
		lost, err = a.writeIn(ctx, tx, batch)
		return err
	})
	if err != nil {
		return a.s.opError("ack", err)
	}
	a.warnLost(lost)
	return nil
}

// writeIn writes acks in a transaction and returns how many leases were
// no longer this store's: PostgreSQL and MySQL in one statement, SQLite
// one statement each.
func (a *acker) writeIn(ctx context.Context, tx *sql.Tx, batch []receipt) (int, error) {
	s := a.s
	switch {
	case s.d == postgres && !s.o.keepAcked:
		ids := make([]int64, len(batch))
		for i, r := range batch {
			ids[i] = r.id
		}
		res, err := tx.ExecContext(ctx, s.st.ackMany, pgtype.FlatArray[int64](ids), s.owner)
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		return len(batch) - int(n), nil
	case s.d == mariadb && !s.o.keepAcked && len(batch) > 1:
		args := make([]any, 0, len(batch)+1)
		args = append(args, s.owner)
		for _, r := range batch {
			args = append(args, r.id)
		}
		res, err := tx.ExecContext(ctx, s.st.ackIn(len(batch)), args...)
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		return len(batch) - int(n)/2, nil
	}
	lost := 0
	for _, r := range batch {
		var n int64
		var err error
		switch {
		case s.o.keepAcked:
			n, err = s.txExec(ctx, tx, s.st.leaseDelete, r.id, s.owner)
		case s.st.ack != "":
			n, err = s.txExec(ctx, tx, s.st.ack, r.id, s.owner)
		default:
			if n, err = s.txExec(ctx, tx, s.st.leaseDelete, r.id, s.owner); err == nil && n > 0 {
				_, err = s.txExec(ctx, tx, s.st.deleteMessage, r.id)
			}
		}
		if err != nil {
			return lost, err
		}
		if n == 0 {
			lost++
		}
	}
	return lost, nil
}

func (a *acker) warnLost(lost int) {
	if lost > 0 {
		a.s.log.Warn("sqldb: acked messages whose lease this connection had lost: they were restored, and may be delivered twice",
			"count", lost, "error", ErrLeaseLost)
	}
}
