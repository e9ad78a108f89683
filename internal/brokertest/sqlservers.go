package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The private database servers below let a test restart or kill the
// database (an outage) without disturbing the shared server every other
// test uses, and without root's service control (pg_ctlcluster,
// systemctl): each is started from the distribution's binaries, on a free
// port, with its data in a temporary directory removed when the test ends.

// postgresBinDir is where PostgreSQL's server binaries are: the newest
// version's in Debian's layout (/usr/lib/postgresql/<version>/bin), or
// KOMBU_TEST_PG_BINDIR.
func postgresBinDir() string {
	if d := os.Getenv("KOMBU_TEST_PG_BINDIR"); d != "" {
		return d
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestV := "/usr/lib/postgresql/15/bin", -1
	for _, f := range found {
		dir := filepath.Dir(f)
		if v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir))); err == nil && v > bestV {
			best, bestV = dir, v
		}
	}
	return best
}

// PostgresServer is a PostgreSQL cluster of one test's own.
type PostgresServer struct {
	t    testing.TB
	bin  string
	dir  string // owned by the cluster's user; the socket is here
	port int
	cred *syscall.Credential // run as this user (root may not run PostgreSQL)
}

// StartPostgres initializes and starts a private PostgreSQL cluster (trust
// authentication, user postgres), stopped and removed when the test ends.
// Run as root, the cluster runs as the postgres user, as PostgreSQL
// refuses root. Missing binaries skip the test (fail it with
// KOMBU_REQUIRE_BROKERS=1).
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	bin := postgresBinDir()
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		Unavailable(t, "PostgreSQL server binaries not found in "+bin+" (KOMBU_TEST_PG_BINDIR)")
	}
	dir, err := os.MkdirTemp("", "kombu-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &PostgresServer{t: t, bin: bin, dir: dir, port: freePort(t)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Unavailable(t, "running as root and no postgres user to run a PostgreSQL cluster as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := p.run("initdb", "-D", p.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Start()
	t.Cleanup(func() {
		_, _ = p.run("pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop")
	})
	return p
}

func (p *PostgresServer) data() string { return filepath.Join(p.dir, "data") }

func (p *PostgresServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// run runs a PostgreSQL program and returns its output. The output goes
// through a file, not a pipe: the server pg_ctl starts inherits its
// descriptors, and a pipe would stay open, and Wait block, until the
// server exits.
func (p *PostgresServer) run(name string, args ...string) ([]byte, error) {
	f, err := os.CreateTemp(p.dir, "out-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd := p.command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return out, err
}

// Addr is the server's host:port.
func (p *PostgresServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// URL is a postgresql:// URL of the cluster's postgres database.
func (p *PostgresServer) URL() string {
	return fmt.Sprintf("postgresql://postgres@%s/postgres", p.Addr())
}

// Start starts the cluster (again, after Stop) and returns once it accepts
// connections.
func (p *PostgresServer) Start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.port, p.dir)
	if out, err := p.run("pg_ctl", "-D", p.data(), "-l", filepath.Join(p.dir, "server.log"), "-o", opts, "-w", "-t", "30", "start"); err != nil {
		p.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, p.Log())
	}
}

// Stop shuts the cluster down as pg_ctlcluster stop does (fast: open
// transactions are rolled back, sessions terminated, committed work
// checkpointed) and returns once it has.
func (p *PostgresServer) Stop() {
	p.t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.data(), "-m", "fast", "-w", "stop"); err != nil {
		p.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Restart is pg_ctl restart (fast), as pg_ctlcluster restart does.
func (p *PostgresServer) Restart() {
	p.t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.data(), "-m", "fast", "-w", "-t", "30", "restart"); err != nil {
		p.t.Fatalf("pg_ctl restart: %v\n%s\n%s", err, out, p.Log())
	}
}

// Psql runs one SQL statement through psql on the server's socket and
// returns its unaligned, tuples-only output.
func (p *PostgresServer) Psql(sql string) (string, error) {
	cmd := exec.Command("psql", "-h", p.dir, "-p", strconv.Itoa(p.port), "-U", "postgres", "-d", "postgres", "-XAtqc", sql)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Log returns the end of the server's log, for a failing test's output.
func (p *PostgresServer) Log() string { return tail(filepath.Join(p.dir, "server.log")) }

// MariaDBServer is a MariaDB (or MySQL) server of one test's own.
type MariaDBServer struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

// StartMariaDB initializes and starts a private MariaDB server (root
// without a password, a database named test), stopped and removed when the
// test ends. Missing binaries skip the test (fail it with
// KOMBU_REQUIRE_BROKERS=1).
func StartMariaDB(t testing.TB) *MariaDBServer {
	t.Helper()
	for _, b := range []string{"mariadb-install-db", "mariadbd", "mariadb"} {
		if _, err := exec.LookPath(b); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", b)); err != nil {
				Unavailable(t, b+" not on PATH")
			}
		}
	}
	dir, err := os.MkdirTemp("", "kombu-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	m := &MariaDBServer{t: t, dir: dir, port: freePort(t)}
	args := []string{"--no-defaults", "--datadir=" + m.data(), "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command("mariadb-install-db", args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	m.Start()
	t.Cleanup(m.Kill)
	if out, err := m.Client("CREATE DATABASE IF NOT EXISTS test"); err != nil {
		t.Fatalf("create database test: %v\n%s", err, out)
	}
	return m
}

func (m *MariaDBServer) data() string   { return filepath.Join(m.dir, "data") }
func (m *MariaDBServer) socket() string { return filepath.Join(m.dir, "mariadb.sock") }

// Addr is the server's host:port.
func (m *MariaDBServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// URL is a mysql:// URL of the server's database test.
func (m *MariaDBServer) URL() string { return fmt.Sprintf("mysql://root@%s/test", m.Addr()) }

// Start starts the server (again, after Stop, with the data it had) and
// returns once it accepts connections.
func (m *MariaDBServer) Start() {
	m.t.Helper()
	mariadbd := "mariadbd"
	if _, err := exec.LookPath(mariadbd); err != nil {
		mariadbd = "/usr/sbin/mariadbd"
	}
	args := []string{"--no-defaults", "--datadir=" + m.data(), "--socket=" + m.socket(),
		"--port=" + strconv.Itoa(m.port), "--bind-address=127.0.0.1", "--skip-name-resolve",
		"--pid-file=" + filepath.Join(m.dir, "mariadb.pid"), "--log-error=" + filepath.Join(m.dir, "error.log"),
		"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--max-connections=200"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	m.cmd = exec.Command(mariadbd, args...)
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mariadbd: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := m.Client("SELECT 1"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mariadbd on %s did not accept connections within 30 s\n%s", m.Addr(), m.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down as a service manager does (SIGTERM) and
// returns once it has exited. Stopping a stopped server does nothing.
func (m *MariaDBServer) Stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	kill := time.AfterFunc(30*time.Second, func() { _ = m.cmd.Process.Kill() })
	_ = m.cmd.Wait()
	kill.Stop()
	m.cmd = nil
}

// Kill kills the server (SIGKILL) and returns once it has exited.
func (m *MariaDBServer) Kill() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.cmd = nil
}

// Client runs one SQL statement through the mariadb client on the
// server's socket.
func (m *MariaDBServer) Client(sql string) (string, error) {
	out, err := exec.Command("mariadb", "--no-defaults", "-S", m.socket(), "-u", "root", "-N", "-B", "-e", sql).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Log returns the end of the server's error log.
func (m *MariaDBServer) Log() string { return tail(filepath.Join(m.dir, "error.log")) }

// freePort returns a TCP port nobody listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail returns the last 4000 bytes of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
