package sqs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

const python = "/usr/bin/python3"

// unavailable skips the test with reason, or fails it when
// KOMBU_REQUIRE_BROKERS=1 (as CI sets it): nothing is skipped silently.
func unavailable(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("KOMBU_REQUIRE_BROKERS") == "1" {
		t.Fatalf("%s (KOMBU_REQUIRE_BROKERS=1)", reason)
	}
	t.Skip(reason)
}

// requireKombuSQS skips (or fails) unless Python Kombu's SQS transport can
// be imported (python3-kombu, python3-boto3, python3-pycurl).
func requireKombuSQS(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import kombu.transport.SQS, boto3, pycurl").CombinedOutput()
	if err != nil {
		unavailable(t, "Python Kombu's SQS transport is not available ("+string(bytes.TrimSpace(out))+"); apt-get install python3-kombu python3-boto3 python3-pycurl")
	}
}

// peer runs testdata/kombu_sqs_peer.py against the emulator.
func peer(t *testing.T, g *goaws, stdin []byte, args ...string) []byte {
	t.Helper()
	script, _ := filepath.Abs("testdata/kombu_sqs_peer.py")
	cmd := exec.Command(python, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), `KOMBU_SQS_OPTIONS={"region": "us-east-1", "wait_time_seconds": 1, "polling_interval": 0.1, "visibility_timeout": 3}`)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// pyURL is the emulator's URL as Python Kombu takes it.
func (g *goaws) pyURL() string { return "sqs://AKIDTEST:s3cr3t%2Fkey@" + g.addr }

func uniq(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// getWithin takes one message, waiting up to d for it.
func getWithin(t *testing.T, c transport.Conn, queue string, d time.Duration) *transport.Delivery {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.Get(ctx(t), queue, false)
		if err == nil {
			return m
		}
		if !errorsIsEmpty(err) {
			t.Fatalf("get %q: %v", queue, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %q within %v", queue, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
