package sqldb_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/sqldb"
)

// nowMillis is the database's clock in unix ms, as the driver reads it.
func (db *database) nowMillis() string {
	switch db.name {
	case "postgresql":
		return "(extract(epoch from clock_timestamp()) * 1000)::bigint"
	case "mysql":
		return "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"
	}
	return "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"
}

func (db *database) delayedTable() string { return db.prefix + "kombu_go_delayed" }

// TestDelayLayout: a delayed message waits as a row of kombu_go_delayed,
// due_at on the database's clock, and kombu_message (all Kombu reads)
// holds nothing for the queue until it is due; then a Python consumer
// gets it as a plain message.
func TestDelayLayout(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		c := open(t, db.url())
		d := db.sql(t)
		queue := "delayed.layout." + randomHex(4)
		if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: queue, Durable: true}); err != nil {
			t.Fatal(err)
		}
		const delay = 1500 * time.Millisecond
		start := time.Now()
		if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: queue, Body: []byte(`{"later": true}`), Delay: delay, Confirm: true,
			Properties: transport.Properties{ContentType: "application/json", ContentEncoding: "utf-8"}}); err != nil {
			t.Fatal(err)
		}
		_, message, _ := db.tables()
		inKombu := func() int {
			return count(t, d, "SELECT count(*) FROM "+message+" m JOIN "+db.prefix+"kombu_queue q ON q.id = m.queue_id WHERE q.name = '"+queue+"'")
		}
		var payload string
		var left int64
		err := d.QueryRowContext(ctx(t), "SELECT payload, due_at - "+db.nowMillis()+" FROM "+db.delayedTable()+" WHERE queue = '"+queue+"'").Scan(&payload, &left)
		if err != nil {
			t.Fatalf("the delayed row: %v", err)
		}
		var env map[string]any
		if err := json.Unmarshal([]byte(payload), &env); err != nil || env["body"] == nil || !strings.Contains(payload, `"routing_key": "`+queue+`"`) {
			t.Errorf("payload %q is not Kombu's envelope of the message (%v)", payload, err)
		}
		if left <= 0 || left > delay.Milliseconds() {
			t.Errorf("due_at is %d ms from the database's now, want in (0, %d]", left, delay.Milliseconds())
		}
		if n := inKombu(); n != 0 {
			t.Fatalf("%d rows in %s before the delay passed", n, message)
		}
		time.Sleep(time.Until(start.Add(delay - 300*time.Millisecond)))
		if n := inKombu(); n != 0 {
			t.Fatalf("%d rows in %s 300 ms before the delay passed", n, message)
		}
		transporttest.Eventually(t, "the message in "+message, func() bool { return inKombu() == 1 })
		if late := time.Since(start) - delay; late < 0 {
			t.Errorf("moved %v early", -late)
		}
		if n := count(t, d, "SELECT count(*) FROM "+db.delayedTable()+" WHERE queue = '"+queue+"'"); n != 0 {
			t.Errorf("%d rows left in %s after the move", n, db.delayedTable())
		}
		requirePython(t, db)
		var got []pyMessage
		out := db.peer(t, "consume", nil, queue, "1", "--timeout", "10")
		if err := json.Unmarshal(out, &got); err != nil || len(got) != 1 || !strings.Contains(string(got[0].Body), "later") {
			t.Fatalf("Python consumed %s (%v)", out, err)
		}
		t.Logf("Python consumed %s once it was due", got[0].Body)
	})
}

// TestDelaySurvivesItsConnection: a delayed message outlives the
// connection that stored it; nothing moves it while no connection is
// open, and a new connection delivers it.
func TestDelaySurvivesItsConnection(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		queue := "delayed.survive." + randomHex(4)
		c, err := dial(db.url())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: queue, Durable: true}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: queue, Body: []byte("remind"), Delay: 700 * time.Millisecond, Confirm: true}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		time.Sleep(time.Until(start.Add(1200 * time.Millisecond)))
		d := db.sql(t)
		if n := count(t, d, "SELECT count(*) FROM "+db.delayedTable()+" WHERE queue = '"+queue+"'"); n != 1 {
			t.Fatalf("%d delayed rows with no connection open, want 1", n)
		}
		c2 := open(t, db.url())
		if got := get(t, c2, queue); string(got.Body) != "remind" {
			t.Fatalf("got %q", got.Body)
		}
	})
}

// TestDelayInTx: under WithTx the delayed row is written in the caller's
// transaction: a rollback leaves nothing, a commit delivers it when due.
func TestDelayInTx(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		c := open(t, db.url())
		queue := "delayed.tx." + randomHex(4)
		if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: queue, Durable: true}); err != nil {
			t.Fatal(err)
		}
		d := db.sql(t)
		for _, commit := range []bool{false, true} {
			tx, err := d.BeginTx(ctx(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			body := map[bool]string{false: "rolled back", true: "committed"}[commit]
			if err := c.Publish(sqldb.WithTx(ctx(t), tx), &transport.Publishing{RoutingKey: queue, Body: []byte(body), Delay: 300 * time.Millisecond, Confirm: true}); err != nil {
				t.Fatal(err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := get(t, c, queue); string(got.Body) != "committed" {
			t.Fatalf("got %q, want the committed message", got.Body)
		}
		time.Sleep(1500 * time.Millisecond)
		wantEmpty(t, c, queue)
		if n := count(t, d, "SELECT count(*) FROM "+db.delayedTable()); n != 0 {
			t.Errorf("%d delayed rows left", n)
		}
	})
}

// TestDelayLateness measures how late delayed messages arrive.
func TestDelayLateness(t *testing.T) {
	if testing.Short() {
		t.Skip("takes several seconds")
	}
	forEachDB(t, func(t *testing.T, db *database) {
		c := open(t, db.url())
		queue := "delayed.late." + randomHex(4)
		if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: queue, Durable: true}); err != nil {
			t.Fatal(err)
		}
		p50, p99, worst := transporttest.Lateness(transporttest.DelayLateness(t, c, queue, 40))
		t.Logf("%s: 40 messages delayed 1-3.9 s: lateness p50 %v p99 %v max %v", db.name, p50, p99, worst)
		if worst > 1500*time.Millisecond {
			t.Errorf("a message arrived %v late, want within about a second", worst)
		}
	})
}
