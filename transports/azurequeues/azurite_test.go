package azurequeues_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/azurequeues"
)

// Azurite's well-known development account and key.
const (
	devAccount = "devstoreaccount1"
	devKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// azurite is a private Azurite queue service started by a test.
type azurite struct {
	addr string
	cmd  *exec.Cmd
}

// findAzurite looks for azurite-queue on PATH, then in npm's global bin.
func findAzurite() (string, error) {
	if p := os.Getenv("KOMBU_AZURITE_QUEUE"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("azurite-queue"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("npm", "prefix", "-g").Output(); err == nil {
		p := filepath.Join(string(trimNL(out)), "bin", "azurite-queue")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("azurite-queue not found (npm install -g azurite@3.35.0, or set KOMBU_AZURITE_QUEUE)")
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// startAzurite starts Azurite 3.35's queue service on a free port, in
// memory, without telemetry, as a child of the test; without it the test
// skips, or fails under KOMBU_REQUIRE_BROKERS.
func startAzurite(t testing.TB) *azurite {
	t.Helper()
	bin, err := findAzurite()
	if err != nil {
		if os.Getenv("KOMBU_REQUIRE_BROKERS") != "" {
			t.Fatalf("Azurite required: %v", err)
		}
		t.Skipf("Azurite: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	a := &azurite{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	a.start(t, bin, port)
	return a
}

func (a *azurite) start(t testing.TB, bin string, port int) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--inMemoryPersistence", "--disableTelemetry", "--silent",
		"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(port))
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Azurite: %v", err)
	}
	a.cmd = cmd
	t.Cleanup(a.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", a.addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Azurite did not listen on %s within 30s", a.addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *azurite) stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
		a.cmd = nil
	}
}

// url is Kombu's form of the account's URL.
func (a *azurite) url(query string) string {
	return "azurestoragequeues://" + url.QueryEscape(devKey) + "@http://" + a.addr + "/" + devAccount + query
}

func open(t testing.TB, raw string) transport.Conn {
	t.Helper()
	u, err := transport.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := azurequeues.Driver{}.Open(ctx, u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
