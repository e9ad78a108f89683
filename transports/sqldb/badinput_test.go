package sqldb_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// Rows a consumer cannot read: not an envelope, an envelope cut short, an
// envelope with a content type nobody registered. Each goes to the
// decode-error handler and is moved aside (to the rejected table, with the
// reason); the consumer goes on with the next message.
func TestBadRowsGoAside(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *database) {
		conn := dialKombu(t, db.url())
		queue := "bad." + randomHex(4)
		if _, err := (kombu.Queue{Name: queue}).Declare(ctx(t), conn); err != nil {
			t.Fatal(err)
		}
		good := `{"body": "eyJvayI6IHRydWV9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "` + queue + `"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t"}}`
		rows := []string{
			"hello, not an envelope",
			good[:len(good)/2], // truncated
			strings.Replace(good, "application/json", "application/x-nobody-knows", 1),
			good,
		}
		queueTable, message, goTables := db.tables()
		d := db.sql(t)
		insert := "INSERT INTO " + message + " (visible, timestamp, payload, version, queue_id) SELECT ?, NULL, ?, 1, id FROM " + queueTable + " WHERE name = ?"
		switch db.name {
		case "postgresql":
			insert = "INSERT INTO " + message + " (id, visible, timestamp, payload, version, queue_id) SELECT nextval('message_id_sequence'), $1, NULL, $2, 1, id FROM " + queueTable + " WHERE name = $3"
		case "mysql": // MariaDB: Kombu's ids come from its sequence
			insert = "INSERT INTO " + message + " (id, visible, timestamp, payload, version, queue_id) SELECT NEXTVAL(message_id_sequence), ?, NULL, ?, 1, id FROM " + queueTable + " WHERE name = ?"
		}
		for _, r := range rows {
			if _, err := d.ExecContext(ctx(t), insert, true, r, queue); err != nil {
				t.Fatal(err)
			}
		}

		var mu sync.Mutex
		var decodeErrors []string
		handled := make(chan map[string]any, 1)
		consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{
			Queue: kombu.Queue{Name: queue},
			Handler: kombu.Typed(func(ctx context.Context, m *map[string]any, msg *kombu.Message) error {
				handled <- *m
				return nil
			}),
		}}, kombu.WithDecodeErrorHandler(func(msg *kombu.Message, err error) {
			mu.Lock()
			decodeErrors = append(decodeErrors, err.Error())
			mu.Unlock()
		}))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(context.Background())
		defer stop()
		done := make(chan error, 1)
		go func() { done <- consumer.Run(runCtx) }()
		select {
		case m := <-handled:
			if m["ok"] != true {
				t.Fatalf("the good message decoded as %v", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the consumer did not get past the bad rows")
		}
		stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if len(decodeErrors) != 3 {
			t.Fatalf("the decode-error handler saw %d messages: %q", len(decodeErrors), decodeErrors)
		}
		for _, e := range decodeErrors {
			t.Logf("decode error: %s", e)
		}
		transporttest.Eventually(t, "no row left in "+message, func() bool { return count(t, d, "SELECT count(*) FROM "+message) == 0 })
		if n := count(t, d, "SELECT count(*) FROM "+goTables[4]+" WHERE queue = '"+queue+"'"); n != 3 {
			t.Errorf("%d rows in %s, want the 3 bad ones", n, goTables[4])
		}
	})
}

// Logins the database refuses: one error that says why, with the URL's
// password masked, and transport.ErrAccessRefused.
func TestRefusedLogins(t *testing.T) {
	const secret = "s3cret-pass"
	check := func(t *testing.T, rawURL, want string) {
		t.Helper()
		_, err := dial(rawURL)
		if err == nil {
			t.Fatalf("%s: connected", rawURL)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("the error shows the password: %v", err)
		}
		if !errors.Is(err, transport.ErrAccessRefused) || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q: want ErrAccessRefused and %q", err, want)
		}
		t.Log(err)
		// Through the runtime, as a user sees it.
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = kombu.Dial(c, rawURL)
		if err == nil || strings.Contains(err.Error(), secret) || !errors.Is(err, kombu.ErrAccessRefused) {
			t.Fatalf("kombu.Dial: %v", err)
		}
	}
	t.Run("mysql wrong password", func(t *testing.T) {
		db := newDB(t, "mysql")
		u, _ := url.Parse(db.base)
		u.User = url.UserPassword(u.User.Username(), secret)
		check(t, u.String(), "wrong user name or password")
	})
	t.Run("mysql unknown database", func(t *testing.T) {
		db := newDB(t, "mysql")
		u, _ := url.Parse(db.base)
		u.User = url.UserPassword(u.User.Username(), "")
		u.Path = "/kombu_go_no_such_db"
		check(t, u.String(), "database does not exist")
	})
	t.Run("postgresql unknown database", func(t *testing.T) {
		db := newDB(t, "postgresql")
		u, _ := url.Parse(db.base)
		u.User = url.UserPassword(u.User.Username(), secret)
		u.Path = "/kombu_go_no_such_db"
		check(t, "sqla+"+u.String(), "database does not exist")
	})
}

// kombu.Connection.URL masks the password, in every URL form.
func TestURLMasksPassword(t *testing.T) {
	for _, raw := range []string{"sqla+postgresql+psycopg2://u:pw-secret@h/db", "postgresql://u:pw-secret@h/db", "mysql://u:pw-secret@h/db"} {
		u, err := transport.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if s := u.String(); strings.Contains(s, "pw-secret") || !strings.Contains(s, "**") {
			t.Errorf("%s shows as %s", raw, s)
		}
	}
}

// A user who may not create tables gets one error naming the table and
// the privilege it lacks. The test makes a user of its own for it, and
// drops it afterwards.
func TestNoCreatePrivilege(t *testing.T) {
	t.Run("postgresql", func(t *testing.T) {
		db := newDB(t, "postgresql")
		admin := db.sql(t)
		u, _ := url.Parse(db.url())
		dbName := strings.TrimPrefix(u.Path, "/")
		role := "kombu_go_nocreate_" + randomHex(4)
		// A schema of the test's own, where the role may look but not
		// create, first in its search_path: the same on every version
		// (PostgreSQL 14 and older let everyone create in public).
		for _, q := range []string{"CREATE ROLE " + role + " LOGIN", "GRANT CONNECT ON DATABASE " + dbName + " TO " + role,
			"CREATE SCHEMA " + role, "GRANT USAGE ON SCHEMA " + role + " TO " + role,
			"ALTER ROLE " + role + " SET search_path = " + role} {
			if _, err := admin.ExecContext(ctx(t), q); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			for _, q := range []string{"DROP SCHEMA " + role + " CASCADE", "REVOKE ALL ON DATABASE " + dbName + " FROM " + role, "DROP ROLE " + role} {
				if _, err := admin.ExecContext(context.Background(), q); err != nil {
					t.Logf("%s: %v", q, err)
				}
			}
		})
		u.User = url.User(role)
		wantPrivilegeError(t, u.String(), db.prefix+"kombu_queue")
	})
	t.Run("mysql", func(t *testing.T) {
		db := newDB(t, "mysql")
		admin := db.sql(t)
		user := "kombu_go_nc_" + randomHex(4)
		u, _ := url.Parse(db.url())
		dbName := strings.TrimPrefix(u.Path, "/")
		for _, q := range []string{"CREATE USER '" + user + "'@'%'", "GRANT SELECT, INSERT, UPDATE, DELETE ON " + dbName + ".* TO '" + user + "'@'%'"} {
			if _, err := admin.ExecContext(ctx(t), q); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP USER '"+user+"'@'%'"); err != nil {
				t.Logf("drop user: %v", err)
			}
		})
		u.User = url.User(user)
		wantPrivilegeError(t, u.String(), db.prefix+"kombu_queue")
	})
}

func wantPrivilegeError(t *testing.T, rawURL, table string) {
	t.Helper()
	_, err := dial(rawURL)
	if err == nil {
		t.Fatal("connected and made the tables without the privilege")
	}
	if !errors.Is(err, transport.ErrAccessRefused) || !strings.Contains(err.Error(), "table "+table) || !strings.Contains(err.Error(), "CREATE privilege") {
		t.Fatalf("error %q: want ErrAccessRefused naming table %s and the CREATE privilege", err, table)
	}
	t.Log(err)
}
