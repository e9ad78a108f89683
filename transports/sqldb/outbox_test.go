package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/transports/sqldb"
)

// The transactional outbox: the generated producer, unchanged, publishes
// inside the caller's transaction under sqldb.WithTx.

const ordersQueue = "quickstart.orders"

// drainOrders takes every order the queue holds.
func drainOrders(t *testing.T, conn *kombu.Connection) []string {
	t.Helper()
	var ids []string
	for {
		msg, err := kombu.Queue{Name: ordersQueue}.Get(ctx(t), conn)
		if errors.Is(err, kombu.ErrEmpty) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		var o quickstartv1.OrderPlaced
		if err := msg.Decode(&o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.OrderId)
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

// outboxSetup dials the database and declares the quickstart's topology
// (before any transaction, as SQLite needs).
func outboxSetup(t *testing.T, db *database) (*kombu.Connection, *quickstartv1.ShopProducer, *sql.DB) {
	t.Helper()
	conn := dialKombu(t, db.url())
	if err := quickstartv1.ShopTopology().Declare(ctx(t), conn); err != nil {
		t.Fatal(err)
	}
	return conn, quickstartv1.NewShopProducer(conn), db.sql(t)
}

func TestOutboxRollbackPublishesNothing(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		conn, producer, sqlDB := outboxSetup(t, db)
		tx, err := sqlDB.BeginTx(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.PlaceOrder(sqldb.WithTx(ctx(t), tx), &quickstartv1.OrderPlaced{OrderId: "rolled-back"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got := drainOrders(t, conn); len(got) != 0 {
			t.Fatalf("after the rollback the queue holds %q", got)
		}
		_, message, _ := db.tables()
		if n := count(t, sqlDB, "SELECT count(*) FROM "+message); n != 0 {
			t.Fatalf("%d rows in %s after the rollback", n, message)
		}
	})
}

func TestOutboxCommitDeliversOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		conn, producer, sqlDB := outboxSetup(t, db)
		tx, err := sqlDB.BeginTx(ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		txCtx := sqldb.WithTx(ctx(t), tx)
		for _, id := range []string{"A-1", "A-2"} {
			if err := producer.PlaceOrder(txCtx, &quickstartv1.OrderPlaced{OrderId: id}); err != nil {
				t.Fatal(err)
			}
		}
		// On SQLite the open transaction holds the write lock a take
		// needs: the take looks first, and finds nothing visible.
		if got := drainOrders(t, conn); len(got) != 0 {
			t.Fatalf("before the commit a consumer got %q", got)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := drainOrders(t, conn); len(got) != 2 || got[0] != "A-1" || got[1] != "A-2" {
			t.Fatalf("after the commit the queue held %q, want [A-1 A-2] once each", got)
		}
	})
}

// On PostgreSQL a pgx.Tx works as a *sql.Tx does.
func TestOutboxPgxTx(t *testing.T) {
	db := newDB(t, "postgresql")
	conn, producer, _ := outboxSetup(t, db)
	pc, err := pgx.Connect(ctx(t), db.base)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	for _, commit := range []bool{false, true} {
		tx, err := pc.Begin(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.PlaceOrder(sqldb.WithTx(ctx(t), tx), &quickstartv1.OrderPlaced{OrderId: "pgx"}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx(t))
		} else {
			err = tx.Rollback(ctx(t))
		}
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if commit {
			want = 1
		}
		if got := drainOrders(t, conn); len(got) != want {
			t.Fatalf("commit %t: the queue held %q", commit, got)
		}
	}
}

// A transaction on another database is refused, and nothing is published.
func TestOutboxForeignTx(t *testing.T) {
	pg, my, lite := newDB(t, "postgresql"), newDB(t, "mysql"), newDB(t, "sqlite")
	other := newDB(t, "sqlite")
	for _, c := range []struct {
		name        string
		publishTo   *database
		transaction *database
	}{
		{"mysql tx, postgresql connection", pg, my},
		{"postgresql tx, mysql connection", my, pg},
		{"sqlite tx, postgresql connection", pg, lite},
		{"another sqlite file", lite, other},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, producer, _ := outboxSetup(t, c.publishTo)
			foreign := c.transaction.sql(t)
			if c.transaction.name == "sqlite" {
				// Make the file (a connection makes its tables).
				dialKombu(t, c.transaction.url()).Close()
			}
			tx, err := foreign.BeginTx(ctx(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			err = producer.PlaceOrder(sqldb.WithTx(ctx(t), tx), &quickstartv1.OrderPlaced{OrderId: "foreign"})
			if !errors.Is(err, sqldb.ErrForeignTx) || !errors.Is(err, kombu.ErrPrecondition) {
				t.Fatalf("publish under a transaction of another database: %v; want ErrForeignTx", err)
			}
			t.Logf("%v", err)
			if got := drainOrders(t, conn); len(got) != 0 {
				t.Fatalf("the queue holds %q", got)
			}
		})
	}
	t.Run("not a transaction", func(t *testing.T) {
		_, producer, _ := outboxSetup(t, lite)
		err := producer.PlaceOrder(sqldb.WithTx(ctx(t), "tx"), &quickstartv1.OrderPlaced{OrderId: "x"})
		if !errors.Is(err, sqldb.ErrForeignTx) {
			t.Fatalf("publish under WithTx(ctx, a string): %v", err)
		}
	})
}

// On SQLite the process's kombu-go connections share one database
// connection, and a take needs the file's one write lock. A consumer taking
// while a caller's transaction (the write lock's holder) publishes must not
// make that publish wait for the connection the take holds: the take waits
// for the transaction, which would wait for the take, until busy_timeout.
func TestOutboxSQLiteTxBesideAWaitingTake(t *testing.T) {
	db := newDB(t, "sqlite")
	conn, producer, sqlDB := outboxSetup(t, db)
	if err := producer.PlaceOrder(ctx(t), &quickstartv1.OrderPlaced{OrderId: "before"}); err != nil {
		t.Fatal(err)
	}
	tx, err := sqlDB.BeginTx(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	txCtx := sqldb.WithTx(ctx(t), tx)
	// The first publish writes: the transaction holds the write lock.
	if err := producer.PlaceOrder(txCtx, &quickstartv1.OrderPlaced{OrderId: "in-tx-1"}); err != nil {
		t.Fatal(err)
	}
	// A consumer takes: "before" is visible, so the take asks for the
	// write lock and waits for the transaction, holding the connection.
	taken := make(chan string, 1)
	go func() {
		msg, err := kombu.Queue{Name: ordersQueue}.Get(ctx(t), conn)
		if err != nil {
			taken <- "error: " + err.Error()
			return
		}
		var o quickstartv1.OrderPlaced
		if err := msg.Decode(&o); err != nil {
			taken <- "error: " + err.Error()
			return
		}
		msg.Ack()
		taken <- o.OrderId
	}()
	time.Sleep(200 * time.Millisecond) // let the take start waiting
	// Well under busy_timeout (10 s): a publish that waited for the
	// take's connection would fail here with the context's deadline.
	short, cancel := context.WithTimeout(txCtx, 3*time.Second)
	defer cancel()
	if err := producer.PlaceOrder(short, &quickstartv1.OrderPlaced{OrderId: "in-tx-2"}); err != nil {
		t.Fatalf("a publish in the transaction while a take waits for its lock: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := <-taken; got != "before" {
		t.Fatalf("the waiting take got %q, want the order published before the transaction", got)
	}
	if got := drainOrders(t, conn); len(got) != 2 || got[0] != "in-tx-1" || got[1] != "in-tx-2" {
		t.Fatalf("after the commit the queue held %q, want [in-tx-1 in-tx-2]", got)
	}
}
