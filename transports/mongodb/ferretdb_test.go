package mongodb_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	// FerretDB's module, required by this module for its tests: TestMain
	// builds testdata/ferretdb with it and runs it.
	_ "github.com/FerretDB/FerretDB/ferretdb"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/mongodb"
)

// server is FerretDB v1.24 (a MongoDB wire-protocol server in Go) embedded
// in testdata/ferretdb, on SQLite in a temporary folder, which TestMain
// builds and runs as a child process: built without the race detector,
// which slows a server in the test process tenfold under go test -race.
type server struct {
	addr string
}

var (
	srv       *server
	serverErr error
)

func TestMain(m *testing.M) {
	var cleanup func()
	srv, cleanup, serverErr = startFerretDB()
	code := m.Run()
	if cleanup != nil {
		cleanup()
	}
	os.Exit(code)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startFerretDB() (*server, func(), error) {
	dir, err := os.MkdirTemp("", "kombu-ferretdb-")
	if err != nil {
		return nil, nil, err
	}
	bin := filepath.Join(dir, "ferretdb")
	build := exec.Command("go", "build", "-o", bin, "./testdata/ferretdb")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("build FerretDB: %v\n%s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, addr, data)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return &server{addr: addr}, cleanup, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cleanup()
	return nil, nil, fmt.Errorf("FerretDB did not listen on %s", addr)
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
