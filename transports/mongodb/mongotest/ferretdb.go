// Package mongotest runs FerretDB v1.24 (a MongoDB wire-protocol server in
// Go, on SQLite in a temporary folder) as a child process: for the tests
// of transports/mongodb and for make bench, which start it the same way.
// It builds the command in ./ferretdb (FerretDB embedded) without the race
// detector, which slows a server in the test process tenfold under go
// test -race. The transport does not import it.
package mongotest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// Server is a running FerretDB.
type Server struct {
	Addr string // host:port
	cmd  *exec.Cmd
	dir  string
	bin  string
}

// Start builds and starts FerretDB on a free port, its output going to
// stderr, and returns once it listens. Stop ends it and removes its data.
func Start(ctx context.Context) (*Server, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return nil, fmt.Errorf("mongotest: cannot find its source folder")
	}
	dir, err := os.MkdirTemp("", "kombu-ferretdb-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	bin := filepath.Join(dir, "ferretdb")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(filepath.Dir(file), "ferretdb")
	if out, err := build.CombinedOutput(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("build FerretDB: %v\n%s", err, out)
	}
	if s.Addr, err = freeAddr(); err != nil {
		s.Stop()
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		s.Stop()
		return nil, err
	}
	s.bin = bin
	if err := s.run(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// run starts the built FerretDB on s.Addr and its data folder, and
// returns once it listens.
func (s *Server) run() error {
	s.cmd = exec.Command(s.bin, s.Addr, filepath.Join(s.dir, "data"))
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return err
	}
	for range 200 {
		if c, err := net.Dial("tcp", s.Addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("FerretDB did not listen on %s", s.Addr)
}

// Signal ends FerretDB with sig (syscall.SIGTERM: it shuts down as a
// server does, its open connections served until they close or its grace
// period ends, about 3 s, then its SQLite databases closed;
// syscall.SIGKILL: it dies at once) and waits for it to exit, keeping its data and its address for Restart:
// a server crash or restart for fault tests.
func (s *Server) Signal(sig os.Signal) error {
	if s.cmd == nil {
		return fmt.Errorf("mongotest: FerretDB is not running")
	}
	err := s.cmd.Process.Signal(sig)
	_ = s.cmd.Wait() // exits with the signal's status: not an error here
	s.cmd = nil
	return err
}

// Restart starts FerretDB again, on the address and data of the one
// Signal ended, and returns once it listens.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return fmt.Errorf("mongotest: FerretDB is running")
	}
	return s.run()
}

// Stop kills FerretDB and removes its folder.
func (s *Server) Stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
	_ = os.RemoveAll(s.dir)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
