package brokertest

import (
	"testing"
	"time"
)

// The private servers start, answer, restart and stop.
func TestPrivatePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	start := time.Now()
	p := StartPostgres(t)
	t.Logf("initdb + start %v", time.Since(start))
	if out, err := p.Psql("SELECT 1"); err != nil || out != "1" {
		t.Fatalf("psql: %q %v", out, err)
	}
	start = time.Now()
	p.Restart()
	t.Logf("restart %v", time.Since(start))
	if out, err := p.Psql("SELECT 2"); err != nil || out != "2" {
		t.Fatalf("psql after restart: %q %v", out, err)
	}
}

func TestPrivateMariaDB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MariaDB server")
	}
	start := time.Now()
	m := StartMariaDB(t)
	t.Logf("install + start %v", time.Since(start))
	m.Stop()
	start = time.Now()
	m.Start()
	t.Logf("start %v", time.Since(start))
	if out, err := m.Client("SELECT 3"); err != nil || out != "3" {
		t.Fatalf("client: %q %v", out, err)
	}
}
