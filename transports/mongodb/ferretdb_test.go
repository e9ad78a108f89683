package mongodb_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/mongodb"
)

// server is FerretDB, a MongoDB wire-protocol server, embedded in this
// test process on SQLite in a temporary folder, once per process.
type server struct {
	addr string
}

var (
	serverOnce sync.Once
	srv        *server
	serverErr  error
)

func startFerretDB(t testing.TB) *server {
	t.Helper()
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kombu-ferretdb-")
		if err != nil {
			serverErr = err
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			serverErr = err
			return
		}
		addr := ln.Addr().String()
		ln.Close()
		cfg := &ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: addr},
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Handler:   "sqlite",
			SQLiteURL: "file:" + dir + "/",
		}
		if pg := os.Getenv("KOMBU_TEST_FERRETDB_PG"); pg != "" {
			cfg.Handler, cfg.PostgreSQLURL = "postgresql", pg
		}
		f, err := ferretdb.New(cfg)
		if err != nil {
			serverErr = err
			return
		}
		go func() { _ = f.Run(context.Background()) }()
		for range 100 {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		srv = &server{addr: addr}
	})
	if serverErr != nil {
		t.Fatalf("FerretDB: %v", serverErr)
	}
	return srv
}

func (s *server) URL(db, options string) string {
	u := "mongodb://" + s.addr + "/" + db + "?polling_interval=0.05&visibility_timeout=3"
	if options != "" {
		u += "&" + options
	}
	return u
}

func (s *server) open(t testing.TB, db, options string) transport.Conn {
	t.Helper()
	u, err := transport.Parse(s.URL(db, options))
	if err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := mongodb.Driver{}.Open(cx, u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
