package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a redis-server of one test's own, on a free port, with
// its data in a temporary directory: the test may stop and start it (a
// Redis outage) without disturbing anyone else's Redis. It keeps every
// write on disk (AOF, fsync always), so that a restart loses nothing it
// acknowledged.
type RedisServer struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server, stopped when the test ends. A
// missing redis-server binary skips the test (fails it with
// KOMBU_REQUIRE_BROKERS=1).
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "redis-server not on PATH")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &RedisServer{t: t, dir: t.TempDir(), port: port}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Addr is the server's host:port.
func (r *RedisServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// URL is a redis:// URL of the server's database db.
func (r *RedisServer) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr(), db) }

// Start starts the server (again, after Stop, with the data it had) and
// returns once it accepts connections.
func (r *RedisServer) Start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"),
		"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	waitAccepting(r.t, r.Addr(), r.Log)
}

// waitAccepting returns once addr accepts connections, or fails the test
// after 10 s with the server's log.
func waitAccepting(t testing.TB, addr string, log func() string) {
	t.Helper()
	if err := accepting(addr); err != nil {
		t.Fatalf("%v\n%s", err, log())
	}
}

// accepting returns once addr accepts connections, or an error after 10 s.
func accepting(addr string) error {
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not accept connections within 10 s: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop shuts the server down as a service manager does (SIGTERM) and
// returns once it has exited. Stopping a stopped server does nothing.
func (r *RedisServer) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	kill := time.AfterFunc(10*time.Second, func() { _ = r.cmd.Process.Kill() })
	_ = r.cmd.Wait()
	kill.Stop()
	r.cmd = nil
}

// Kill kills the server (SIGKILL), as a crash or the OOM killer would, and
// returns once it has exited: what it acknowledged is on disk (AOF, fsync
// always), nothing else. Start starts it again.
func (r *RedisServer) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Log returns the end of the server's log, for a failing test's output.
func (r *RedisServer) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
