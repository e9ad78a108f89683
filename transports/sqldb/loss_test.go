package sqldb_test

import (
	"errors"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// Backends terminated under a connection (pg_terminate_backend, as an
// administrator or a failover does) lose it: Done closes, Err and the
// failed call are transport.ErrClosed, and the runtime reconnects and
// publishes again. Only this test's own backends are terminated, found by
// their application_name.
func TestTerminatedBackendsLoseTheConnection(t *testing.T) {
	db := newDB(t, "postgresql")
	app := "kombu_go_loss_" + randomHex(4)
	url := db.url("application_name=" + app)
	admin := db.sql(t)
	terminate := func() int {
		var n int
		if err := admin.QueryRowContext(ctx(t), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("driver", func(t *testing.T) {
		c := open(t, url)
		queue := "loss." + randomHex(4)
		if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: queue}); err != nil {
			t.Fatal(err)
		}
		if n := terminate(); n == 0 {
			t.Fatal("no backend to terminate")
		}
		var err error
		for range 10 { // the pool may hold a connection the server has not closed yet
			if err = c.Publish(ctx(t), &transport.Publishing{RoutingKey: queue, Body: []byte("x")}); err != nil {
				break
			}
			terminate()
		}
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("publish after the backends were terminated: %v; want ErrClosed", err)
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("Done is open after the loss")
		}
		if !errors.Is(c.Err(), transport.ErrClosed) {
			t.Fatalf("Err() = %v", c.Err())
		}
		t.Log(err)
	})

	t.Run("runtime", func(t *testing.T) {
		conn := dialKombu(t, url)
		queue := kombu.Queue{Name: "loss.rt." + randomHex(4)}
		if _, err := queue.Declare(ctx(t), conn); err != nil {
			t.Fatal(err)
		}
		p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue.Name))
		if err := p.Publish(ctx(t), "before"); err != nil {
			t.Fatal(err)
		}
		terminate()
		for i := range 5 {
			if err := p.Publish(ctx(t), "after"); err != nil {
				t.Fatalf("publish %d after the backends were terminated: %v", i, err)
			}
		}
		got := 0
		deadline := time.Now().Add(10 * time.Second)
		for got < 6 && time.Now().Before(deadline) {
			msg, err := queue.Get(ctx(t), conn)
			if errors.Is(err, kombu.ErrEmpty) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			msg.Ack()
			got++
		}
		if got < 6 {
			t.Fatalf("got %d of 6 messages", got)
		}
	})
}
