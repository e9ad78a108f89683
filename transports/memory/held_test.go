package memory_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	"github.com/kombu-go/kombu/transports/memory"
)

func dialLogged(t *testing.T, log *brokertest.LogBuffer) transport.Conn {
	t.Helper()
	u, err := transport.Parse("memory://" + brokerPath(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := memory.Driver{}.Open(context.Background(), u, transport.Config{Logger: log.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The in-process broker dies with the process: the last connection to
// close with messages still queued says so, counting the unsettled ones
// it put back, rather than letting a stopping program lose them silently.
func TestLastCloseWarnsOfMessagesLostWithTheProcess(t *testing.T) {
	var logA, logB brokertest.LogBuffer
	a := dialLogged(t, &logA)
	b := dialLogged(t, &logB)
	transporttest.DeclareQueue(t, a, transport.Queue{Name: "billing"})
	send(t, a, "billing", "one", "two")
	s := consume(t, b, transport.ConsumeSpec{Queues: []string{"billing"}, Prefetch: 1})
	recv(t, s) // unsettled when b closes

	a.Close()
	if out := logA.String(); out != "" {
		t.Fatalf("closing a connection while another is open logged: %s", out)
	}
	b.Close()
	out := logB.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "lost when this process exits") ||
		!strings.Contains(out, "messages=2") || !strings.Contains(out, "billing") {
		t.Fatalf("the last close logged %q, want a warning counting the 2 messages left in billing", out)
	}
}

func TestLastCloseOfAnEmptyBrokerIsQuiet(t *testing.T) {
	var log brokertest.LogBuffer
	c := dialLogged(t, &log)
	transporttest.DeclareQueue(t, c, transport.Queue{Name: "billing"})
	send(t, c, "billing", "one")
	get(t, c, "billing", true)
	c.Close()
	if out := log.String(); out != "" {
		t.Fatalf("closing an empty broker logged: %s", out)
	}
}
