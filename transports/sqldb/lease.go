package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// Leases. Kombu marks a taken row invisible and forgets it: if the
// consumer dies before it is done, the message is lost. kombu-go records
// who took each row in <tables>_go_lease (message_id, owner), and each
// connection keeps a row in <tables>_go_owner (owner, expires) whose
// expiry it pushes forward every third of lease_timeout. Every connection,
// when it opens and every half lease_timeout after, deletes the owners
// whose expiry passed (the database's clock decides) and makes the rows
// leased by owners that are gone visible again, marked redelivered. A
// connection that closes deletes its owner row, so that what it could not
// restore itself comes back at once.

// leaseLoop renews the store's lease and recovers others' until Close.
func (s *store) leaseLoop() {
	defer close(s.stopped)
	renew := time.NewTicker(max(s.o.leaseTimeout/3, 10*time.Millisecond))
	defer renew.Stop()
	recoverEvery := time.NewTicker(max(s.o.leaseTimeout/2, 10*time.Millisecond))
	defer recoverEvery.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-renew.C:
			s.renew()
		case <-recoverEvery.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(s.o.leaseTimeout, 5*time.Second))
			s.recover(ctx)
			cancel()
		}
	}
}

// renew pushes the lease's expiry forward. An owner row that is gone (the
// connection was taken for dead after a pause longer than the lease) is
// made again; what it held has been restored, and settling it fails with
// ErrLeaseLost.
func (s *store) renew() {
	ctx, cancel := context.WithTimeout(context.Background(), max(s.o.leaseTimeout/3, time.Second))
	defer cancel()
	n, err := s.exec(ctx, s.st.ownerRenew, s.o.leaseTimeout.Milliseconds(), s.owner)
	if err != nil {
		s.log.Warn("sqldb: renewing the lease failed; if it runs out, the messages this connection holds go back to their queues",
			"error", err, "lease_timeout", s.o.leaseTimeout)
		return
	}
	if n == 0 {
		s.log.Warn("sqldb: this connection's lease ran out and others restored the messages it held; they may be delivered twice",
			"lease_timeout", s.o.leaseTimeout)
		if _, err := s.exec(ctx, s.st.ownerUpsert, s.owner, s.o.leaseTimeout.Milliseconds()); err != nil {
			s.log.Warn("sqldb: renewing the lease failed", "error", err)
		}
	}
}

// recover restores the rows leased by owners that are gone.
func (s *store) recover(ctx context.Context) {
	if _, err := s.exec(ctx, s.st.ownersExpire); err != nil {
		s.log.Debug("sqldb: recovery: expiring owners failed", "error", err)
		return
	}
	for {
		type orphan struct {
			id    int64
			owner string
		}
		var orphans []orphan
		rows, err := s.query(ctx, s.st.orphans)
		if err != nil {
			s.log.Debug("sqldb: recovery: listing leases failed", "error", err)
			return
		}
		for rows.Next() {
			var o orphan
			if err := rows.Scan(&o.id, &o.owner); err == nil {
				orphans = append(orphans, o)
			}
		}
		rows.Close()
		restored := 0
		for _, o := range orphans {
			ok, err := s.restoreOrphan(ctx, o.id, o.owner)
			if err != nil {
				s.log.Warn("sqldb: recovery: restoring a message failed", "id", o.id, "error", err)
				return
			}
			if ok {
				restored++
			}
		}
		if restored > 0 {
			s.log.Info("sqldb: restored messages taken by connections that are gone", "count", restored)
			s.announce(ctx, "")
		}
		if len(orphans) < 100 {
			return
		}
	}
}

// restoreOrphan claims a lease whose owner is gone (deleting it: only one
// recoverer succeeds) and makes its row visible, marked redelivered; a row
// whose queue was deleted is deleted.
func (s *store) restoreOrphan(ctx context.Context, id int64, owner string) (bool, error) {
	claimed := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		n, err := s.txExec(ctx, tx, s.st.leaseDelete, id, owner)
		if err != nil || n == 0 {
			return err
		}
		claimed = true
		var payload []byte
		err = s.txQueryRow(ctx, tx, s.st.payloadOf, id).Scan(&payload)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if marked, err := virtual.MarkRedelivered(payload); err == nil {
			payload = marked
		}
		if n, err = s.txExec(ctx, tx, s.st.restore, string(payload), id); err != nil || n > 0 {
			return err
		}
		_, err = s.txExec(ctx, tx, s.st.deleteMessage, id)
		return err
	})
	return claimed, err
}
