package mongodb_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/mongodb"
	"github.com/kombu-go/kombu/transports/mongodb/mongotest"
)

// server is FerretDB (package mongotest), started by TestMain for every
// test of the package.
type server struct {
	addr string
}

var (
	srv       *server
	serverErr error
)

func TestMain(m *testing.M) {
	if os.Getenv("MONGO_KILL_CHILD") != "" {
		// The child TestKilledConsumer kills talks to the parent's
		// FerretDB: one of its own would outlive it, orphaned.
		os.Exit(m.Run())
	}
	f, err := mongotest.Start(context.Background())
	if err == nil {
		srv = &server{addr: f.Addr}
	}
	serverErr = err
	code := m.Run()
	if f != nil {
		f.Stop()
	}
	os.Exit(code)
}

func ferret(t testing.TB) *server {
	t.Helper()
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
