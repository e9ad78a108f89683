// Package interop_test proves that kombu-go and Python Kombu understand each
// other on real brokers: Python publishes and Go consumes, and the other way
// round. The Python side is kombu_peer.py, run with Debian's python3-kombu.
package interop_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kombu-go/kombu/internal/brokertest"
)

// python is the interpreter with Debian's python3-kombu.
const python = "/usr/bin/python3"

// pyMessage is one message as kombu_peer.py consume prints it.
type pyMessage struct {
	Body            json.RawMessage `json:"body"`
	Raw             []byte          `json:"raw"`
	ContentType     string          `json:"content_type"`
	ContentEncoding string          `json:"content_encoding"`
	Headers         map[string]any  `json:"headers"`
	Properties      map[string]any  `json:"properties"`
	DeliveryInfo    map[string]any  `json:"delivery_info"`
}

// requirePython skips (or, under KOMBU_REQUIRE_BROKERS=1, fails) when
// Python Kombu is not installed.
func requirePython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import kombu").CombinedOutput(); err != nil {
		brokertest.Unavailable(t, "Python Kombu not available ("+python+" -c 'import kombu': "+string(bytes.TrimSpace(out))+"); apt-get install python3-kombu")
	}
}

func peerScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "kombu_peer.py")
}

// pyPublish has Python Kombu publish msgs (see kombu_peer.py for the keys).
func pyPublish(t *testing.T, url string, msgs []map[string]any) {
	t.Helper()
	in, err := json.Marshal(msgs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, peerScript(), "publish", url)
	cmd.Stdin = bytes.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python publish: %v\n%s", err, out)
	}
}

// pyConsume has Python Kombu take count messages from queue.
func pyConsume(t *testing.T, url, queue string, count int, extra ...string) []pyMessage {
	t.Helper()
	args := append([]string{peerScript(), "consume", url, queue, itoa(count)}, extra...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(python, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python consume: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var msgs []pyMessage
	if err := json.Unmarshal(stdout.Bytes(), &msgs); err != nil {
		t.Fatalf("python consume output %q: %v", stdout.String(), err)
	}
	return msgs
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
