// Package azuritetest finds and starts Azurite's queue service (npm's
// azurite, 3.35), the emulator of this module's tests, as a child
// process: for the tests of transports/azurequeues and for make bench,
// which start it the same way. The transport does not import it.
package azuritetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Azurite's well-known development account and key.
const (
	DevAccount = "devstoreaccount1"
	DevKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Find looks for azurite-queue in KOMBU_AZURITE_QUEUE, on PATH, then in
// npm's global bin.
func Find() (string, error) {
	if p := os.Getenv("KOMBU_AZURITE_QUEUE"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("azurite-queue"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("npm", "prefix", "-g").Output(); err == nil {
		p := filepath.Join(strings.TrimRight(string(out), "\r\n"), "bin", "azurite-queue")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("azurite-queue not found (npm install -g azurite@3.35.0, or set KOMBU_AZURITE_QUEUE)")
}

// FreePort returns a port nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Launch starts bin (azurite-queue) on 127.0.0.1:port without telemetry,
// in the folder dir, with args added (--inMemoryPersistence, or
// --location dir), and returns once it listens (within 30 s); the caller
// kills the process.
func Launch(bin string, port int, dir string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, append([]string{"--disableTelemetry", "--silent",
		"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(port)}, args...)...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start Azurite: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return cmd, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("azurite-queue did not listen on %s within 30s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
