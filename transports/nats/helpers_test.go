package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	knats "github.com/kombu-go/kombu/transports/nats"
)

// defaultServer is the machine's nats-server with JetStream, shared by
// every test run: tests name their streams with a prefix of their own and
// delete them.
const defaultServer = "127.0.0.1:4222"

// server returns the host:port of the NATS server tests use
// (KOMBU_TEST_NATS_ADDR, else the local one), skipping the test when it is
// not reachable (failing it under KOMBU_REQUIRE_BROKERS=1).
func server(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("KOMBU_TEST_NATS_ADDR")
	if addr == "" {
		addr = defaultServer
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		brokertest.Unavailable(t, "NATS not reachable at "+addr+": "+err.Error())
		return ""
	}
	c.Close()
	return addr
}

// uniquePrefix is a stream prefix of this test's own.
func uniquePrefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "KT" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// cleanup deletes every stream whose name starts with prefix (queues, the
// dead-letter stream and the binding bucket's KV_ stream).
func cleanup(t testing.TB, addr, prefix string) {
	t.Helper()
	t.Cleanup(func() {
		nc, err := nats.Connect("nats://" + addr)
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		var doomed []string
		for n := range names.Name() {
			if strings.HasPrefix(n, prefix+"_") || n == "KV_"+prefix+"_bindings" {
				doomed = append(doomed, n)
			}
		}
		for _, n := range doomed {
			if err := js.DeleteStream(ctx, n); err != nil {
				t.Logf("cleanup: delete stream %s: %v", n, err)
			}
		}
	})
}

// env is one test's namespace on a server.
type env struct {
	addr   string
	prefix string
}

func newEnv(t testing.TB) env {
	addr := server(t)
	p := uniquePrefix(t)
	cleanup(t, addr, p)
	return env{addr: addr, prefix: p}
}

func (e env) url(query string) string {
	return "nats://" + e.addr + "?stream_prefix=" + e.prefix + "&subject_prefix=" + strings.ToLower(e.prefix) + query
}

func (e env) open(t testing.TB, query string) transport.Conn {
	t.Helper()
	c, err := openURL(e.url(query))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openURL(raw string) (transport.Conn, error) {
	u, err := transport.Parse(raw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return knats.Driver{}.Open(ctx, u, transport.Config{})
}

func openWith(ctx context.Context, u *transport.URL) (transport.Conn, error) {
	return knats.Driver{}.Open(ctx, u, transport.Config{})
}
