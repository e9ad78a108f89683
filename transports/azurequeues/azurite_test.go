package azurequeues_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/azurequeues"
	"github.com/kombu-go/kombu/transports/azurequeues/azuritetest"
)

// Azurite's well-known development account and key.
const (
	devAccount = azuritetest.DevAccount
	devKey     = azuritetest.DevKey
)

// azurite is a private Azurite queue service started by a test.
type azurite struct {
	addr string
	cmd  *exec.Cmd
}

func findAzurite() (string, error) { return azuritetest.Find() }

// startAzurite starts Azurite 3.35's queue service on a free port, in
// memory, as a child of the test; without it the test skips, or fails
// under KOMBU_REQUIRE_BROKERS.
func startAzurite(t testing.TB) *azurite {
	t.Helper()
	bin, err := findAzurite()
	if err != nil {
		if os.Getenv("KOMBU_REQUIRE_BROKERS") != "" {
			t.Fatalf("Azurite required: %v", err)
		}
		t.Skipf("Azurite: %v", err)
	}
	port, err := azuritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	a := &azurite{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	if a.cmd, err = azuritetest.Launch(bin, port, t.TempDir(), "--inMemoryPersistence"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	return a
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
