package mongodb_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

const python = "/usr/bin/python3"

func uniq(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// requireKombuMongo skips (or, under KOMBU_REQUIRE_BROKERS=1 as CI sets it,
// fails) unless Python Kombu's MongoDB transport imports.
func requireKombuMongo(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import kombu.transport.mongodb, pymongo").CombinedOutput()
	if err != nil {
		reason := "Python Kombu's MongoDB transport is not available (" + string(bytes.TrimSpace(out)) + "); apt-get install python3-kombu python3-pymongo"
		if os.Getenv("KOMBU_REQUIRE_BROKERS") == "1" {
			t.Fatal(reason)
		}
		t.Skip(reason)
	}
}

func peer(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	script, _ := filepath.Abs("testdata/kombu_mongo_peer.py")
	cmd := exec.Command(python, append([]string{script}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

func getWithin(t *testing.T, c transport.Conn, queue string, d time.Duration) *transport.Delivery {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.Get(context.Background(), queue, false)
		if err == nil {
			return m
		}
		if !errors.Is(err, transport.ErrEmpty) {
			t.Fatalf("get %q: %v", queue, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %q within %v", queue, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestInteropPythonToGo(t *testing.T) {
	requireKombuMongo(t)
	s := ferret(t)
	q := uniq("interop.q-")
	msgs, _ := json.Marshal([]map[string]any{
		{"body": map[string]any{"n": 1, "text": "héllo"}, "headers": map[string]any{"k": "v"}},
		{"body": map[string]any{"n": 2}},
	})
	peer(t, msgs, "publish", "mongodb://"+s.addr+"/interop", q)
	c := s.open(t, "interop", "")
	defer c.Close()
	for i, want := range []string{`{"n": 1, "text": "h\u00e9llo"}`, `{"n": 2}`} {
		d := getWithin(t, c, q, 10*time.Second)
		if string(d.Body) != want || d.Properties.ContentType != "application/json" {
			t.Errorf("message %d: %s (%s), want %s", i, d.Body, d.Properties.ContentType, want)
		}
		if i == 0 && d.Headers["k"] != "v" {
			t.Errorf("message %d: headers %v", i, d.Headers)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInteropGoToPython(t *testing.T) {
	requireKombuMongo(t)
	s := ferret(t)
	q := uniq("interop.q-")
	c := s.open(t, "interop", "")
	defer c.Close()
	for i := range 2 {
		body, _ := json.Marshal(map[string]any{"n": i, "text": "héllo"})
		p := &transport.Publishing{RoutingKey: q, Confirm: true, Body: body, Headers: map[string]any{"from": "go"}}
		p.ContentType, p.ContentEncoding = "application/json", "utf-8"
		if err := c.Publish(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	var got []struct {
		Payload     map[string]any `json:"payload"`
		ContentType string         `json:"content_type"`
		Headers     map[string]any `json:"headers"`
	}
	if err := json.Unmarshal(peer(t, nil, "consume", "mongodb://"+s.addr+"/interop", q, "2"), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("python got %d messages", len(got))
	}
	for i, m := range got {
		if m.Payload["n"] != float64(i) || m.Payload["text"] != "héllo" || m.Headers["from"] != "go" {
			t.Errorf("python got message %d as %+v", i, m)
		}
	}
}
