package sqldb_test

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// The tables kombu-go makes are the tables Kombu's models make: the same
// columns, types, nullability and indexes (kombu-go adds one index of its
// own). Python makes one set, Go another, and the test compares them.
func TestLayoutIsKombus(t *testing.T) {
	forEachDB(t, func(t *testing.T, goDB *database) {
		pyDB := newDB(t, goDB.name)
		if goDB.name == "sqlite" {
			pyDB.file = goDB.file // both sets in one file, as in one database on the servers
			pyDB.base = goDB.base
		}
		requirePython(t, pyDB)
		open(t, goDB.url()) // Go makes its tables
		pyDB.peer(t, "declare", map[string]any{"queues": []any{map[string]any{"name": "layout"}}})
		d := goDB.sql(t)
		for _, table := range []string{"kombu_queue", "kombu_message"} {
			goCols, pyCols := columns(t, d, goDB.name, goDB.prefix+table), columns(t, d, goDB.name, pyDB.prefix+table)
			if len(pyCols) == 0 {
				t.Fatalf("Python made no table %s", pyDB.prefix+table)
			}
			if !slices.Equal(goCols, pyCols) {
				t.Errorf("%s: Go's columns\n  %q\nKombu's\n  %q", table, goCols, pyCols)
			}
			goIx, pyIx := indexes(t, d, goDB.name, goDB.prefix, table), indexes(t, d, goDB.name, pyDB.prefix, table)
			goIx = slices.DeleteFunc(goIx, func(s string) bool { return strings.Contains(s, "kombu_go_take") })
			if !slices.Equal(goIx, pyIx) {
				t.Errorf("%s: Go's indexes\n  %q\nKombu's\n  %q", table, goIx, pyIx)
			}
			t.Logf("%s: %q, indexes %q", table, goCols, goIx)
		}
	})
}

// columns describes a table's columns: name, type, nullable.
func columns(t *testing.T, d *sql.DB, dialect, table string) []string {
	t.Helper()
	var q string
	switch dialect {
	case "postgresql":
		q = `SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`
	case "mysql":
		// extra: AUTO_INCREMENT, which Kombu's id columns have on MySQL
		// and not on MariaDB (sequences there).
		q = `SELECT column_name, TRIM(CONCAT(column_type, ' ', extra)), is_nullable FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position`
	case "sqlite":
		q = `SELECT name, type, CASE "notnull" WHEN 1 THEN 'NO' ELSE 'YES' END FROM pragma_table_info(?) ORDER BY cid`
	}
	rows, err := d.QueryContext(ctx(t), q, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, typ, null string
		if err := rows.Scan(&name, &typ, &null); err != nil {
			t.Fatal(err)
		}
		out = append(out, name+" "+typ+" null="+null)
	}
	return out
}

// indexes describes a table's indexes, with the table's prefix cut from
// their names: name(columns).
func indexes(t *testing.T, d *sql.DB, dialect, prefix, table string) []string {
	t.Helper()
	var q string
	switch dialect {
	case "postgresql":
		q = `SELECT i.relname, string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE c.relname = $1 AND NOT x.indisprimary AND NOT x.indisunique GROUP BY i.relname`
	case "mysql":
		q = `SELECT index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM information_schema.statistics
WHERE table_schema = DATABASE() AND table_name = ? AND index_name <> 'PRIMARY' AND non_unique = 1 GROUP BY index_name`
	case "sqlite":
		q = `SELECT il.name, (SELECT group_concat(name, ',') FROM pragma_index_info(il.name)) FROM pragma_index_list(?) il WHERE il."unique" = 0`
	}
	rows, err := d.QueryContext(ctx(t), q, prefix+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, cols string
		if err := rows.Scan(&name, &cols); err != nil {
			t.Fatal(err)
		}
		name = strings.Replace(name, prefix, "", 1)
		if name == "FK_kombu_message_queue" || strings.HasPrefix(name, "FK_") {
			continue // MySQL's index behind the foreign key: named after the constraint
		}
		out = append(out, fmt.Sprintf("%s(%s)", name, cols))
	}
	slices.Sort(out)
	return out
}

// A PostgreSQL consumer wakes at a publish from another connection at
// once (LISTEN/NOTIFY), not at its next poll.
func TestNotifyWakesConsumers(t *testing.T) {
	db := newDB(t, "postgresql")
	consumerConn := open(t, db.url("polling_interval=30"))
	queue := "wake." + randomHex(4)
	transporttest.DeclareQueue(t, consumerConn, transport.Queue{Name: queue})
	sub, err := consumerConn.Consume(ctx(t), transport.ConsumeSpec{Queues: []string{queue}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(ctx(t))
	time.Sleep(300 * time.Millisecond) // the consumer has found the queue empty and waits
	// Write the row as kombu-go in another process does, with its NOTIFY
	// (a connection in this process would also wake the consumer through
	// the process's own hub, which is not what this checks).
	_, message, _ := db.tables()
	queueTable := db.prefix + "kombu_queue"
	d := db.sql(t)
	envelope := `{"body": "aGk=", "content-encoding": "utf-8", "content-type": "text/plain", "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "` + queue + `"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "x"}}`
	start := time.Now()
	if _, err := d.ExecContext(ctx(t), `WITH m AS (INSERT INTO `+message+` (id, visible, payload, version, queue_id)
SELECT nextval('message_id_sequence'), true, $1, 1, id FROM `+queueTable+` WHERE name = $2 RETURNING 1)
SELECT 1 FROM m, pg_notify($3, $2)`, envelope, queue, db.prefix+"kombu_go"); err != nil {
		t.Fatal(err)
	}
	select {
	case dl := <-sub.Deliveries():
		if string(dl.Body) != "hi" {
			t.Fatalf("got %q", dl.Body)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("woke after %v", took)
		} else {
			t.Logf("woken %v after the NOTIFY (polling_interval=30)", took.Round(time.Microsecond))
		}
		dl.Acknowledger.Ack(dl.Tag, false)
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer was not woken")
	}
}

// Exchange types are recorded where every process sees them: a connection
// that never declared a topic or fanout exchange routes through it by its
// type, and declaring it with another type fails as on RabbitMQ.
func TestExchangeTypesAreShared(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		a, b := open(t, db.url()), open(t, db.url())
		topic, fanout := "ex.topic."+randomHex(4), "ex.fanout."+randomHex(4)
		transporttest.DeclareExchange(t, a, transport.Exchange{Name: topic, Type: transport.ExchangeTopic, Durable: true})
		transporttest.DeclareExchange(t, a, transport.Exchange{Name: fanout, Type: transport.ExchangeFanout, Durable: true})
		q1, q2 := "ex.q1."+randomHex(4), "ex.q2."+randomHex(4)
		for _, q := range []string{q1, q2} {
			transporttest.DeclareQueue(t, a, transport.Queue{Name: q})
			transporttest.Bind(t, a, transport.Binding{Source: fanout, Destination: q})
		}
		transporttest.Bind(t, a, transport.Binding{Source: topic, Destination: q1, RoutingKey: "order.*"})
		// b never declared them.
		transporttest.Publish(t, b, &transport.Publishing{Exchange: topic, RoutingKey: "order.placed", Body: []byte("topic")})
		transporttest.Publish(t, b, &transport.Publishing{Exchange: fanout, RoutingKey: "whatever", Body: []byte("fanout")})
		if d := get(t, b, q1); string(d.Body) != "topic" {
			t.Fatalf("q1 got %q first", d.Body)
		} else {
			d.Acknowledger.Ack(d.Tag, false)
		}
		for _, q := range []string{q1, q2} {
			d := get(t, b, q)
			if string(d.Body) != "fanout" {
				t.Fatalf("%s got %q", q, d.Body)
			}
			d.Acknowledger.Ack(d.Tag, false)
			wantEmpty(t, b, q)
		}
		err := b.DeclareExchange(ctx(t), transport.Exchange{Name: topic, Type: transport.ExchangeDirect, Durable: true})
		if err == nil || !strings.Contains(err.Error(), "recorded as topic") {
			t.Fatalf("declaring the topic exchange as direct elsewhere: %v", err)
		}
	})
}

// keep_acked=true keeps Kombu's way: an acked row stays, invisible.
func TestKeepAcked(t *testing.T) {
	db := newDB(t, "sqlite")
	c := open(t, db.url("keep_acked=true"))
	queue := "keep." + randomHex(4)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: queue})
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: queue, Body: []byte("x")})
	d := get(t, c, queue)
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		t.Fatal(err)
	}
	_, message, goTables := db.tables()
	d2 := db.sql(t)
	transporttest.Eventually(t, "the ack written", func() bool { return count(t, d2, "SELECT count(*) FROM "+goTables[3]) == 0 })
	if n := count(t, d2, "SELECT count(*) FROM "+message+" WHERE visible = 0"); n != 1 {
		t.Fatalf("%d invisible rows after the ack, want the acked one", n)
	}
	wantEmpty(t, c, queue)
}

// sqlite:// is one database in memory, shared by the process's
// connections.
func TestSQLiteInMemory(t *testing.T) {
	a, b := open(t, "sqlite://?polling_interval=0.05"), open(t, "sqlite:///:memory:?polling_interval=0.05")
	queue := "mem." + randomHex(4)
	transporttest.DeclareQueue(t, a, transport.Queue{Name: queue})
	transporttest.Publish(t, a, &transport.Publishing{RoutingKey: queue, Body: []byte("shared")})
	d := get(t, b, queue)
	if string(d.Body) != "shared" {
		t.Fatalf("got %q", d.Body)
	}
	d.Acknowledger.Ack(d.Tag, false)
}

// URL forms and their mistakes.
func TestURLs(t *testing.T) {
	for _, bad := range []struct{ url, want string }{
		{"sqla://h/db", "needs a database URL"},
		{"sqla+oracle://h/db", "unknown database"},
		{"sqla+postgresql+nosuchdriver://h/db", "unknown postgresql driver"},
		{"postgresql://h/db?lease_timeout=0", "lease_timeout"},
		{"postgresql://h/db?table_name_prefix=a-b", "table_name_prefix"},
		{"mysql://root@127.0.0.1:3306", "names no database"},
		{"sqlite://host/x.db", "names no host"},
		{"sqlite:///no/such/folder/x.db", "does not exist"},
		{"sqlite:///tmp/x.db", "sqlite:////tmp/x.db"},
	} {
		_, err := dial(bad.url)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v; want an error saying %q", bad.url, err, bad.want)
		}
	}
}

// Every form a Kombu user writes reaches the same database.
func TestURLForms(t *testing.T) {
	db := newDB(t, "sqlite")
	queue := "forms." + randomHex(4)
	first := open(t, db.url())
	transporttest.DeclareQueue(t, first, transport.Queue{Name: queue})
	for _, form := range []string{"sqla+sqlite:///", "sqlalchemy+sqlite:///", "sqla+sqlite+pysqlite:///", "sqlite:///"} {
		c := open(t, form+db.file+"?table_name_prefix="+db.prefix)
		transporttest.Publish(t, c, &transport.Publishing{RoutingKey: queue, Body: []byte(form)})
		if d := get(t, first, queue); string(d.Body) != form {
			t.Fatalf("%s: got %q", form, d.Body)
		} else {
			d.Acknowledger.Ack(d.Tag, false)
		}
	}
	pg := newDB(t, "postgresql")
	for _, form := range []string{"sqla+", "sqlalchemy+"} {
		u := form + strings.Replace(pg.base, "postgresql://", "postgresql+psycopg2://", 1) + "?table_name_prefix=" + pg.prefix
		c := open(t, u)
		transporttest.DeclareQueue(t, c, transport.Queue{Name: queue})
	}
	my := newDB(t, "mysql")
	open(t, "sqla+"+strings.Replace(my.base, "mysql://", "mysql+pymysql://", 1)+"?table_name_prefix="+my.prefix)
}
