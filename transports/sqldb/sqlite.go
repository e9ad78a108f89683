package sqldb

import (
	"database/sql"
	"net/url"
	"strconv"
	"sync"
)

// SQLite lets one writer at a time into a file, and makes the others wait
// (busy_timeout) or fail. kombu-go's connections to one file in one
// process share one pool of one connection, in which they take turns
// without waiting on each other's locks; other processes (Python's
// included) wait up to busy_timeout. The file is put in WAL mode, in which
// readers do not wait for the writer, and foreign keys are enforced on
// kombu-go's connections as PostgreSQL and MySQL enforce them.

var (
	sqliteMu    sync.Mutex
	sqlitePools = map[string]*sharedDB{}
)

// sharedDB is a pool shared by the stores of one file.
type sharedDB struct {
	path string
	db   *sql.DB
	refs int
}

// busyTimeoutMillis is how long a statement waits for another process's
// write lock.
const busyTimeoutMillis = 10000

// acquireSQLite returns the process's pool for the file (":memory:": one
// database in memory shared by the process's connections).
func acquireSQLite(path string, maxConns int, synchronous string) (*sharedDB, error) {
	sqliteMu.Lock()
	defer sqliteMu.Unlock()
	if sh := sqlitePools[path]; sh != nil {
		sh.refs++
		return sh, nil
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.Itoa(busyTimeoutMillis))
	q.Set("_txlock", "immediate") // Kombu's BEGIN IMMEDIATE: take the write lock first
	q.Set("_foreign_keys", "1")
	if path != ":memory:" {
		q.Set("_journal_mode", "WAL")
	}
	// NORMAL: in WAL mode a commit survives the process (killed or not)
	// without waiting for fsync; a power cut may lose the last ones.
	// synchronous=FULL fsyncs every commit.
	q.Set("_synchronous", synchronous)
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One connection: ":memory:" lives as long as it does, and a file's
	// writers in this process take turns here rather than in SQLite's
	// busy loop.
	db.SetMaxOpenConns(cmpOr(maxConns, 1))
	if path == ":memory:" {
		db.SetMaxOpenConns(1)
	}
	db.SetMaxIdleConns(1)
	sh := &sharedDB{path: path, db: db, refs: 1}
	sqlitePools[path] = sh
	return sh, nil
}

// release gives a store's reference back; the last closes the pool.
func (sh *sharedDB) release() {
	sqliteMu.Lock()
	defer sqliteMu.Unlock()
	sh.refs--
	if sh.refs == 0 {
		delete(sqlitePools, sh.path)
		sh.db.Close()
	}
}
