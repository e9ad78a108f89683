package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// prefixedSQL gives each test tables of its own in the shared database
// (Kombu's table_name_prefix), dropped after it: Kombu's SQLAlchemy models
// name kombu_message's index the same whatever the prefix, so tables left
// in the shared database would break Python Kombu's create_all for other
// tests (transports/sqldb's interop tests) on PostgreSQL.
func prefixedSQL(base func(testing.TB) string) func(testing.TB) string {
	return func(t testing.TB) string {
		raw := base(t)
		var b [4]byte
		_, _ = rand.Read(b[:])
		prefix := "kcli" + hex.EncodeToString(b[:]) + "_"
		t.Cleanup(func() { dropPrefixed(t, raw, prefix) })
		sep := "?"
		if strings.Contains(raw, "?") {
			sep = "&"
		}
		return raw + sep + "table_name_prefix=" + prefix
	}
}

// dropPrefixed drops every table whose name starts with prefix.
func dropPrefixed(t testing.TB, raw, prefix string) {
	u, err := url.Parse(raw)
	if err != nil {
		t.Logf("drop %s*: %v", prefix, err)
		return
	}
	var db *sql.DB
	postgres := strings.HasPrefix(u.Scheme, "postgres")
	if postgres {
		db, err = sql.Open("pgx", raw)
	} else {
		c := mysql.NewConfig()
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
		c.Net, c.Addr, c.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
		db, err = sql.Open("mysql", c.FormatDSN())
	}
	if err != nil {
		t.Logf("drop %s*: %v", prefix, err)
		return
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = "+
		map[bool]string{true: "current_schema()", false: "database()"}[postgres]+" AND table_name LIKE '"+prefix+"%'")
	if err != nil {
		t.Logf("drop %s*: %v", prefix, err)
		return
	}
	var tables []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil {
			tables = append(tables, name)
		}
	}
	rows.Close()
	if len(tables) == 0 {
		return
	}
	// One connection: MySQL's foreign key checks are off for its session
	// only, so the tables drop in any order.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Logf("drop %s*: %v", prefix, err)
		return
	}
	defer conn.Close()
	q := "DROP TABLE IF EXISTS " + strings.Join(tables, ", ")
	if postgres {
		q += " CASCADE"
	} else if _, err := conn.ExecContext(ctx, "SET FOREIGN_KEY_CHECKS = 0"); err != nil {
		t.Logf("drop %s*: %v", prefix, err)
	}
	if _, err := conn.ExecContext(ctx, q); err != nil {
		t.Logf("drop %s*: %v", prefix, err)
	}
}
