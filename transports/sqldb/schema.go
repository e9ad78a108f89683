package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/kombu-go/kombu/runtime/transport"
)

// ensureSchema makes the tables, sequences and indexes that are missing,
// under a lock so that processes starting together do not race. It looks
// before it makes anything, so that a user without the CREATE privilege
// can use tables made beforehand. An index kombu-go adds that it may not
// make is left out with a warning; a missing table it may not make is an
// error naming the table and the privilege.
func (s *store) ensureSchema(ctx context.Context) error {
	var missing []ddl
	for _, d := range s.st.schema {
		ok, err := s.exists(ctx, d)
		if err != nil {
			return s.opError("look for table "+d.object, err)
		}
		if !ok {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.opError("create the tables", err)
	}
	defer conn.Close()
	unlock, err := s.schemaLock(ctx, conn)
	if err != nil {
		return s.opError("lock the schema to create the tables", err)
	}
	defer unlock()
	for _, d := range missing {
		if ok, err := s.existsOn(ctx, conn, d); err == nil && ok {
			continue // made by another process meanwhile
		}
		if _, err := conn.ExecContext(ctx, d.sql); err != nil {
			if noPrivilege(err) && d.object == s.o.tables.ixTake {
				s.log.Warn("sqldb: no privilege to add kombu-go's index to the message table; consumers of long queues are slower",
					"index", d.object, "table", s.o.tables.message, "error", err)
				continue
			}
			return s.schemaError(d, err, missing)
		}
	}
	return nil
}

// schemaError says which table could not be made and, when the database
// refused for want of a privilege, which one.
func (s *store) schemaError(d ddl, err error, missing []ddl) error {
	if noPrivilege(err) {
		// Name the first missing table, rather than a sequence or an
		// index a user would not know to look for.
		for _, m := range missing {
			if m.table == "" && !strings.HasSuffix(m.object, "_sequence") {
				d = m
				break
			}
		}
	}
	what := "table"
	switch {
	case d.table != "":
		what = "index"
	case strings.HasSuffix(d.object, "_sequence"):
		what = "sequence"
	}
	where := ""
	switch s.d {
	case postgres:
		where = fmt.Sprintf(" in database %s (schema of the search_path)", s.o.pg.Database)
	case mariadb:
		where = " in database " + s.o.my.DBName
	case sqlite:
		where = " in " + s.o.sqlitePath
	}
	if noPrivilege(err) {
		priv := "CREATE"
		switch s.d {
		case postgres:
			priv = "CREATE privilege on the schema"
		case mariadb:
			priv = "CREATE privilege (and INDEX, REFERENCES) on the database"
		case sqlite:
			priv = "permission to write the database file"
		}
		return fmt.Errorf("sqldb: %s: cannot create %s %s%s: the user lacks the %s; grant it, or create the tables beforehand (see the package documentation for their DDL): %w: %w",
			s.o.display, what, d.object, where, priv, transport.ErrAccessRefused, &maskErr{err, s.password()})
	}
	return s.opError(fmt.Sprintf("create %s %s%s", what, d.object, where), err)
}

// exists reports whether the table, sequence or index is there.
func (s *store) exists(ctx context.Context, d ddl) (bool, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	return s.existsOn(ctx, conn, d)
}

func (s *store) existsOn(ctx context.Context, conn *sql.Conn, d ddl) (bool, error) {
	var n int
	var err error
	switch {
	case s.d == postgres:
		err = conn.QueryRowContext(ctx, "SELECT count(*) FROM pg_class WHERE oid = to_regclass($1)", d.object).Scan(&n)
	case s.d == mariadb && d.table != "":
		err = conn.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.statistics
WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?`, d.table, d.object).Scan(&n)
	case s.d == mariadb:
		err = conn.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
WHERE table_schema = DATABASE() AND table_name = ?`, d.object).Scan(&n)
	default:
		err = conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = ?", d.object).Scan(&n)
	}
	return n > 0, err
}

// schemaLock takes a lock every kombu-go process takes before it creates
// tables: an advisory lock on PostgreSQL, a named lock on MySQL, the
// write lock on SQLite.
func (s *store) schemaLock(ctx context.Context, conn *sql.Conn) (func(), error) {
	h := fnv.New64a()
	h.Write([]byte("kombu-go schema " + s.o.tables.message))
	key := int64(h.Sum64())
	switch s.d {
	case postgres:
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return nil, err
		}
		return func() { conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", key) }, nil
	case mariadb:
		name := fmt.Sprintf("kombu-go-schema-%x", uint64(key))
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 30)", name).Scan(&got); err != nil {
			return nil, err
		}
		if got.Int64 != 1 {
			return nil, fmt.Errorf("another process held the schema lock %s for 30 s", name)
		}
		return func() { conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", name) }, nil
	}
	return func() {}, nil // SQLite: every DDL statement takes the write lock
}
