package sqldb

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/kombu-go/kombu/runtime/transport"
)

// dialect is the kind of database a URL names.
type dialect int

const (
	postgres dialect = iota
	mariadb          // MySQL and MariaDB
	sqlite
)

func (d dialect) String() string {
	switch d {
	case postgres:
		return "postgresql"
	case mariadb:
		return "mysql"
	}
	return "sqlite"
}

// Defaults.
const (
	defaultLeaseTimeout = 30 * time.Second
	defaultPollInterval = time.Second // Kombu's polling_interval
	defaultQueueTable   = "kombu_queue"
	defaultMessageTable = "kombu_message"
	// maxQueueName is kombu_queue.name's VARCHAR(200).
	maxQueueName = 200
	// maxName bounds exchange names and routing keys in kombu-go's tables
	// (VARCHAR(255), AMQP's limit for both).
	maxName = 255
)

// options is a parsed URL: where the database is, which tables to use, and
// how the transport behaves.
type options struct {
	dialect dialect
	display string // the URL, password masked, for errors

	pg         *pgx.ConnConfig // postgres
	my         *mysql.Config   // mariadb
	sqlitePath string          // sqlite: absolute path, or ":memory:"

	tables tables

	pollInterval time.Duration
	leaseTimeout time.Duration
	keepAcked    bool   // Kombu's way: an acked row stays, visible=false
	keepRejected bool   // a rejected row goes to the rejected table (default) rather than away
	notify       bool   // PostgreSQL: NOTIFY on publish, LISTEN in consumers
	maxConns     int    // 0: the default
	synchronous  string // SQLite's PRAGMA synchronous: NORMAL (default) or FULL
}

// optionNames are the query options the transport reads itself; the rest
// go to the database driver.
var optionNames = []string{"polling_interval", "lease_timeout", "table_name_prefix", "queue_tablename",
	"message_tablename", "keep_acked", "keep_rejected", "notify", "max_connections", "synchronous"}

// pythonDrivers are the SQLAlchemy drivers Kombu users name after the
// dialect ("postgresql+psycopg2"): kombu-go reaches each database with its
// own client, so the name only has to be one SQLAlchemy knows.
var pythonDrivers = map[dialect][]string{
	postgres: {"psycopg2", "psycopg", "psycopg2cffi", "pg8000", "asyncpg", "pygresql", "pypostgresql"},
	mariadb:  {"pymysql", "mysqldb", "mysqlconnector", "mariadbconnector", "aiomysql", "asyncmy", "cymysql", "oursql", "pyodbc"},
	sqlite:   {"pysqlite", "aiosqlite", "pysqlcipher"},
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseURL reads any of the URL forms the package registers (see the
// package documentation).
func parseURL(u *transport.URL, cfg transport.Config) (*options, error) {
	display := u.String()
	bad := func(format string, args ...any) error {
		return &transport.URLError{URL: display, Reason: fmt.Sprintf(format, args...)}
	}
	// sqla+<SQLAlchemy URL> and sqlalchemy+<...>: the rest is the database URL.
	db := u
	if u.Scheme == "sqla" || u.Scheme == "sqlalchemy" {
		if u.SubURL == "" {
			return nil, bad("%s needs a database URL after a '+': %s+postgresql://..., %s+mysql://... or %s+sqlite:///path", u.Scheme, u.Scheme, u.Scheme, u.Scheme)
		}
		inner, err := transport.Parse(u.SubURL)
		if err != nil {
			return nil, bad("the database URL after %q: %v", u.Scheme+"+", err)
		}
		db = inner
	}
	o := &options{display: display, pollInterval: defaultPollInterval, leaseTimeout: defaultLeaseTimeout, keepRejected: true, notify: true, synchronous: "NORMAL"}
	switch strings.ToLower(db.Scheme) {
	case "postgres", "postgresql", "psql", "pgsql":
		o.dialect = postgres
	case "mysql", "mariadb":
		o.dialect = mariadb
	case "sqlite", "sqlite3":
		o.dialect = sqlite
	default:
		return nil, bad("unknown database %q: the SQL transport takes postgresql, mysql (MariaDB too) and sqlite", db.Scheme)
	}
	if db.SubURL != "" {
		// postgresql+psycopg2://...: Python's driver, which kombu-go replaces.
		driver, rest, _ := strings.Cut(db.SubURL, "://")
		if !slices.Contains(pythonDrivers[o.dialect], strings.ToLower(driver)) {
			return nil, bad("unknown %s driver %q (SQLAlchemy's are %s; kombu-go uses its own client whichever is named)",
				o.dialect, driver, strings.Join(pythonDrivers[o.dialect], ", "))
		}
		inner, err := transport.Parse(db.Scheme + "://" + rest)
		if err != nil {
			return nil, bad("%v", err)
		}
		db = inner
	}

	// The transport's own options; the rest are the driver's. An sqla+
	// URL has them in its database URL, the rest of it after the '+'.
	query := url.Values{}
	for _, q := range []url.Values{u.Query, db.Query} {
		for key, vals := range q {
			query[key] = vals
		}
	}
	driverQuery := url.Values{}
	var prefix string
	for _, key := range slices.Sorted(maps.Keys(query)) {
		val := query.Get(key)
		switch key {
		case "polling_interval", "lease_timeout":
			secs, err := strconv.ParseFloat(val, 64)
			if err != nil || secs <= 0 || secs > 86400 {
				return nil, bad("%s=%q: want seconds, more than 0", key, val)
			}
			d := time.Duration(secs * float64(time.Second))
			if key == "polling_interval" {
				o.pollInterval = d
			} else {
				o.leaseTimeout = d
			}
		case "table_name_prefix":
			prefix = val
		case "queue_tablename":
			o.tables.queue = val
		case "message_tablename":
			o.tables.message = val
		case "keep_acked", "keep_rejected", "notify":
			b, err := parseBool(val)
			if err != nil {
				return nil, bad("%s=%q: not a boolean", key, val)
			}
			switch key {
			case "keep_acked":
				o.keepAcked = b
			case "keep_rejected":
				o.keepRejected = b
			default:
				o.notify = b
			}
		case "max_connections":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return nil, bad("max_connections=%q: want a positive number", val)
			}
			o.maxConns = n
		case "synchronous":
			switch v := strings.ToUpper(val); v {
			case "NORMAL", "FULL", "EXTRA":
				o.synchronous = v
			default:
				return nil, bad("synchronous=%q: NORMAL or FULL (SQLite only)", val)
			}
		case "failover_strategy":
			// Read by the runtime for ";"-separated lists.
		default:
			driverQuery[key] = query[key]
		}
	}
	var err error
	if o.tables, err = newTables(prefix, o.tables.queue, o.tables.message); err != nil {
		return nil, bad("%v", err)
	}
	switch o.dialect {
	case postgres:
		err = o.postgresConfig(db, driverQuery, cfg)
	case mariadb:
		err = o.mysqlConfig(db, driverQuery, cfg)
	case sqlite:
		err = o.sqliteConfig(db, driverQuery)
	}
	if err != nil {
		return nil, bad("%v", err)
	}
	return o, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on", "y":
		return true, nil
	case "0", "false", "no", "off", "n":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// postgresConfig makes pgx's configuration. Query options pgx knows
// (sslmode, connect_timeout, application_name, ...) are its; others are
// sent to the server as run-time parameters, as libpq's options do.
func (o *options) postgresConfig(db *transport.URL, q url.Values, cfg transport.Config) error {
	pu := url.URL{Scheme: "postgres", Host: db.Host, RawQuery: q.Encode()}
	if db.Port != 0 || strings.Contains(db.Host, ":") {
		pu.Host = net.JoinHostPort(db.Host, strconv.Itoa(cmpOr(db.Port, 5432)))
	}
	if db.User != "" || db.Password != "" {
		pu.User = url.UserPassword(db.User, db.Password)
		if db.Password == "" {
			pu.User = url.User(db.User)
		}
	}
	if db.HasPath {
		pu.Path = "/" + db.Path
	}
	c, err := pgx.ParseConfig(pu.String())
	if err != nil {
		return fmt.Errorf("postgresql: %s", maskedError(err, db.Password))
	}
	if cfg.ConnectTimeout > 0 && q.Get("connect_timeout") == "" {
		c.ConnectTimeout = cfg.ConnectTimeout
	}
	if cfg.ConnectionName != "" && q.Get("application_name") == "" {
		c.RuntimeParams["application_name"] = cfg.ConnectionName
	}
	if cfg.TLS != nil {
		c.TLSConfig = cfg.TLS
	}
	o.pg = c
	return nil
}

// mysqlConfig makes go-sql-driver/mysql's configuration. unix_socket (as
// PyMySQL and mysqlclient take it) connects through a socket; other query
// options are the driver's DSN parameters (charset, tls, timeout, ...) or,
// as it treats unknown ones, session variables.
func (o *options) mysqlConfig(db *transport.URL, q url.Values, cfg transport.Config) error {
	c := mysql.NewConfig()
	c.User, c.Passwd = db.User, db.Password
	if c.User == "" {
		c.User = "root"
	}
	c.Net, c.Addr = "tcp", net.JoinHostPort(cmpOr(db.Host, "127.0.0.1"), strconv.Itoa(cmpOr(db.Port, 3306)))
	if db.Host == "localhost" {
		c.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cmpOr(db.Port, 3306)))
	}
	if sock := q.Get("unix_socket"); sock != "" {
		c.Net, c.Addr = "unix", sock
		q.Del("unix_socket")
	}
	c.DBName = strings.TrimPrefix(db.Path, "/")
	if c.DBName == "" {
		return fmt.Errorf("mysql: the URL names no database: write mysql://user@host/database")
	}
	if cfg.ConnectTimeout > 0 {
		c.Timeout = cfg.ConnectTimeout
	}
	if cfg.TLS != nil {
		c.TLS = cfg.TLS
	}
	// charset: PyMySQL's and SQLAlchemy's name for it is go's too. The rest
	// through the driver's own DSN parser, which knows its parameters.
	if len(q) > 0 {
		parsed, err := mysql.ParseDSN("u@tcp(h)/d?" + q.Encode())
		if err != nil {
			return fmt.Errorf("mysql: query options: %v", err)
		}
		parsed.User, parsed.Passwd, parsed.Net, parsed.Addr, parsed.DBName = c.User, c.Passwd, c.Net, c.Addr, c.DBName
		if c.Timeout > 0 && parsed.Timeout == 0 {
			parsed.Timeout = c.Timeout
		}
		if c.TLS != nil && parsed.TLS == nil {
			parsed.TLS = c.TLS
		}
		c = parsed
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if q.Get("interpolateParams") == "" {
		// One round trip for a statement that is not prepared (the
		// driver's own, with the connection's character set), rather than
		// prepare, execute and close.
		c.InterpolateParams = true
	}
	o.my = c
	return nil
}

// sqliteConfig reads the file name as SQLAlchemy does: sqlite:///app.db is
// app.db in the working directory, sqlite:////var/lib/app.db is absolute,
// sqlite:// and sqlite:///:memory: a database in memory.
func (o *options) sqliteConfig(db *transport.URL, q url.Values) error {
	if db.Host != "" || db.Port != 0 || db.User != "" || db.Password != "" {
		return fmt.Errorf("sqlite: a SQLite URL names no host: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
	}
	if len(q) > 0 {
		return fmt.Errorf("sqlite: unknown options %v (the SQL transport takes %s)", slices.Sorted(maps.Keys(q)), strings.Join(optionNames, ", "))
	}
	switch db.Path {
	case "", ":memory:":
		o.sqlitePath = ":memory:"
		return nil
	}
	p := db.Path
	if !filepath.IsAbs(p) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("sqlite: %s: %v", p, err)
		}
		if _, err := os.Stat(filepath.Dir(abs)); err != nil {
			hint := ""
			if _, aerr := os.Stat(filepath.Dir("/" + p)); aerr == nil {
				hint = fmt.Sprintf("; sqlite:///%s names %s relative to the working directory, as in SQLAlchemy: for /%s write sqlite:////%s", p, p, p, p)
			}
			return fmt.Errorf("sqlite: the folder of %s does not exist%s", abs, hint)
		}
		p = abs
	}
	o.sqlitePath = p
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// tables are the names of Kombu's two tables and kombu-go's own, and of
// their indexes and constraints.
type tables struct {
	queue, message string // Kombu's
	// kombu-go's, named after the message table: kombu_message gives
	// kombu_go_exchange, ...; t1_kombu_message gives t1_kombu_go_exchange;
	// a message table "jobs" gives jobs_go_exchange.
	exchange, binding, owner, lease, rejected string
	delayed                                   string // delayed delivery (delay.go)
	// Index and constraint names: Kombu's for its default table names.
	ixVisible, ixTimestamp, ixTimestampID, fkQueue, ixTake, ixLeaseOwner string
	ixDelayedDue                                                         string
	channel                                                              string // PostgreSQL NOTIFY channel
}

// newTables names the tables. The prefix goes in front of every table;
// queue and message, if set, replace Kombu's names (Kombu's
// queue_tablename and message_tablename).
func newTables(prefix, queue, message string) (tables, error) {
	if prefix != "" && !identifier.MatchString(prefix) {
		return tables{}, fmt.Errorf("table_name_prefix=%q: letters, digits and '_' only", prefix)
	}
	for _, n := range []struct{ opt, v string }{{"queue_tablename", queue}, {"message_tablename", message}} {
		if n.v != "" && !identifier.MatchString(n.v) {
			return tables{}, fmt.Errorf("%s=%q: letters, digits and '_' only", n.opt, n.v)
		}
	}
	t := tables{queue: prefix + cmpOr(queue, defaultQueueTable), message: prefix + cmpOr(message, defaultMessageTable)}
	base := strings.TrimSuffix(t.message, "_message")
	t.exchange, t.binding, t.owner, t.lease, t.rejected = base+"_go_exchange", base+"_go_binding", base+"_go_owner", base+"_go_lease", base+"_go_rejected"
	t.ixVisible, t.ixTimestamp = "ix_"+t.message+"_visible", "ix_"+t.message+"_timestamp"
	t.ixTimestampID, t.fkQueue = "ix_"+t.message+"_timestamp_id", "FK_"+t.message+"_queue"
	t.ixTake, t.ixLeaseOwner = "ix_"+t.message+"_kombu_go_take", "ix_"+t.lease+"_owner"
	t.delayed = base + "_go_delayed"
	t.ixDelayedDue = "ix_" + t.delayed + "_due"
	t.channel = base + "_go"
	for _, n := range []string{t.queue, t.message, t.exchange, t.binding, t.owner, t.lease, t.rejected, t.ixVisible,
		t.ixTimestamp, t.ixTimestampID, t.fkQueue, t.ixTake, t.ixLeaseOwner, t.delayed, t.ixDelayedDue} {
		if len(n) > 63 {
			return tables{}, fmt.Errorf("the name %s is longer than PostgreSQL's 63 bytes: shorten table_name_prefix or the table names", n)
		}
	}
	return t, nil
}
