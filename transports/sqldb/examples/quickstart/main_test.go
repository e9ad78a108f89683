package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var want = []string{
	"handled order A-1001: ada ordered [tea mug] for $12.50 (routing key order.placed, application/x-protobuf)",
	"handled order A-1002: grace ordered [kettle] for $49.99 (routing key order.placed, application/x-protobuf)",
	"handled order A-1003: linus ordered [biscuits] for $3.00 (routing key order.placed, application/x-protobuf)",
	"handled parcel A-1001: dhl tracking JD0001 (routing key parcel.shipped, application/json)",
	"handled parcel A-1002: ups tracking 1Z0002 (routing key parcel.shipped, application/json)",
	"all messages handled",
}

func check(t *testing.T, url string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), url, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w+"\n") {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// The quickstart runs on a SQLite file: no server.
func TestQuickstartOnSQLite(t *testing.T) {
	check(t, "sqlite:///"+filepath.Join(t.TempDir(), "shop.db"))
}

// As a user runs it: go run with KOMBU_URL, twice on one file (the second
// run finds the tables and the queues the first made).
func TestQuickstartGoRunSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the program")
	}
	url := "sqlite:///" + filepath.Join(t.TempDir(), "shop.db")
	for range 2 {
		cmd := exec.Command("go", "run", ".")
		cmd.Env = append(os.Environ(), "KOMBU_URL="+url)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("KOMBU_URL=%s go run ./examples/quickstart: %v\n%s", url, err, out)
		}
		if !strings.Contains(string(out), "all messages handled") {
			t.Fatalf("output:\n%s", out)
		}
	}
}
