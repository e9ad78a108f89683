package sqldb_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/sqldb"
)

// database is one of the three databases, with tables of the test's own
// (a random table_name_prefix, dropped when the test ends; SQLite: a file
// in the test's temporary folder).
type database struct {
	name   string // postgresql, mysql, sqlite
	base   string // the URL without kombu-go's options
	prefix string
	file   string // sqlite
}

// databases returns the three databases, skipping (or failing, with
// KOMBU_REQUIRE_BROKERS=1) those not reachable.
func forEachDB(t *testing.T, fn func(t *testing.T, db *database)) {
	for _, name := range []string{"postgresql", "mysql", "sqlite"} {
		t.Run(name, func(t *testing.T) { fn(t, newDB(t, name)) })
	}
}

func newDB(t *testing.T, name string) *database {
	t.Helper()
	db := &database{name: name, prefix: "t" + randomHex(5) + "_"}
	switch name {
	case "postgresql":
		db.base = brokertest.PostgresURL(t)
	case "mysql":
		db.base = brokertest.MySQLURL(t)
	case "sqlite":
		db.file = filepath.Join(t.TempDir(), "kombu.db")
		db.base = "sqlite:///" + db.file // four slashes: absolute
	}
	t.Cleanup(func() { db.drop(t) })
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// url is the database's URL with the test's tables and options.
func (db *database) url(options ...string) string {
	u := db.base
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + strings.Join(append([]string{"table_name_prefix=" + db.prefix, "polling_interval=0.05"}, options...), "&")
}

// tables are the test's tables, Kombu's first.
func (db *database) tables() (queue, message string, goTables []string) {
	queue, message = db.prefix+"kombu_queue", db.prefix+"kombu_message"
	for _, s := range []string{"exchange", "binding", "owner", "lease", "rejected", "delayed"} {
		goTables = append(goTables, db.prefix+"kombu_go_"+s)
	}
	return
}

// sql opens the database with database/sql, for looking at the tables.
func (db *database) sql(t testing.TB) *sql.DB {
	t.Helper()
	var d *sql.DB
	var err error
	switch db.name {
	case "postgresql":
		d, err = sql.Open("pgx", db.base)
	case "mysql":
		u, _ := url.Parse(db.base)
		c := mysql.NewConfig()
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
		c.Net, c.Addr, c.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
		d, err = sql.Open("mysql", c.FormatDSN())
	case "sqlite":
		d, err = sql.Open("sqlite", db.file+"?_busy_timeout=10000&_txlock=immediate")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// drop drops the test's tables.
func (db *database) drop(t *testing.T) {
	if db.name == "sqlite" || db.base == "" {
		return
	}
	d := db.sql(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	queue, message, goTables := db.tables()
	for _, table := range append(append(goTables, message), queue) {
		q := "DROP TABLE IF EXISTS " + table
		if db.name == "postgresql" {
			q += " CASCADE"
		}
		if _, err := d.ExecContext(ctx, q); err != nil {
			t.Logf("drop %s: %v", table, err)
		}
	}
}

// open opens a connection through the driver, closed when the test ends.
func open(t testing.TB, rawURL string) transport.Conn {
	t.Helper()
	c, err := dial(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(rawURL string) (transport.Conn, error) {
	u, err := transport.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sqldb.Driver{}.Open(ctx, u, transport.Config{})
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), transporttest.DefaultTimeout)
	t.Cleanup(cancel)
	return c
}

func get(t testing.TB, c transport.Conn, queue string) *transport.Delivery {
	t.Helper()
	var d *transport.Delivery
	transporttest.Eventually(t, "a message in "+queue, func() bool {
		var err error
		d, err = c.Get(ctx(t), queue, false)
		if err != nil && !errors.Is(err, transport.ErrEmpty) {
			t.Fatalf("get from %q: %v", queue, err)
		}
		return err == nil
	})
	return d
}

func wantEmpty(t testing.TB, c transport.Conn, queue string) {
	t.Helper()
	if d, err := c.Get(ctx(t), queue, true); !errors.Is(err, transport.ErrEmpty) {
		t.Fatalf("get from %q: %v, %v; want it empty", queue, d, err)
	}
}

// count runs a count(*) query on the database.
func count(t testing.TB, d *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(ctx(t), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
