package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	_ "github.com/kombu-go/kombu/transports/amqp"
)

// wait bounds every blocking step of a test.
const wait = 10 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// open connects to the test broker, or to raw when given (a URL whose
// host the test broker answers on).
func open(t *testing.T, raw ...string) transport.Conn {
	t.Helper()
	c, err := tryOpen(t, transport.Config{}, raw...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tryOpen(t *testing.T, cfg transport.Config, raw ...string) (transport.Conn, error) {
	t.Helper()
	s := brokertest.AMQPURL(t)
	if len(raw) > 0 {
		s = raw[0]
	}
	u, err := transport.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	d, ok := transport.Lookup(u.Scheme)
	if !ok {
		t.Fatalf("no driver for %q", u.Scheme)
	}
	return d.Open(ctxT(t), u, cfg)
}

// name returns an entity name unique to this test run.
func name(t *testing.T, kind string) string {
	var b [4]byte
	rand.Read(b[:])
	n := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	return fmt.Sprintf("kombu-go-test.%s.%s.%s", n, kind, hex.EncodeToString(b[:]))
}

// queue declares a plain non-durable queue with a unique name, deleted when
// the test ends.
func queue(t *testing.T, c transport.Conn, kind string, args map[string]any) string {
	t.Helper()
	return deleteQueueLater(t, transporttest.DeclareQueue(t, c, transport.Queue{Name: name(t, kind), Arguments: args}).Name)
}

// exchange declares an exchange of the given kind with a unique name,
// deleted when the test ends.
func exchange(t *testing.T, c transport.Conn, kind string) string {
	t.Helper()
	n := name(t, kind)
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: n, Type: kind})
	return deleteExchangeLater(t, n)
}

// deleteQueueLater deletes the queue when the test ends, and returns its name.
func deleteQueueLater(t *testing.T, q string) string {
	t.Cleanup(func() {
		cleanup(t, func(c transport.Conn) error {
			_, err := c.DeleteQueue(context.Background(), q, false, false)
			return err
		})
	})
	return q
}

// deleteExchangeLater deletes the exchange when the test ends, and returns
// its name.
func deleteExchangeLater(t *testing.T, ex string) string {
	t.Cleanup(func() {
		cleanup(t, func(c transport.Conn) error { return c.DeleteExchange(context.Background(), ex, false) })
	})
	return ex
}

// cleanup runs fn on a fresh connection, since the test's own may be closed.
func cleanup(t *testing.T, fn func(transport.Conn) error) {
	c, err := tryOpen(t, transport.Config{})
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// toQueue publishes body to a queue through the default exchange, confirmed.
func toQueue(t *testing.T, c transport.Conn, q, body string) {
	t.Helper()
	transporttest.Publish(t, c, &transport.Publishing{RoutingKey: q, Confirm: true, Body: []byte(body)})
}

// get fetches one message, acking it, and fails the test if there is none.
func get(t *testing.T, c transport.Conn, q string) *transport.Delivery {
	t.Helper()
	d, err := c.Get(ctxT(t), q, true)
	if err != nil {
		t.Fatalf("get from %q: %v", q, err)
	}
	return d
}

// bodies drains q with Get and returns the bodies in order.
func bodies(t *testing.T, c transport.Conn, q string) []string {
	t.Helper()
	var out []string
	for {
		d, err := c.Get(ctxT(t), q, true)
		if errors.Is(err, transport.ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatalf("get from %q: %v", q, err)
		}
		out = append(out, string(d.Body))
	}
}

// ready returns the number of ready messages in q.
func ready(t *testing.T, c transport.Conn, q string) int {
	t.Helper()
	info, err := c.DeclareQueue(ctxT(t), transport.Queue{Name: q, Passive: true})
	if err != nil {
		t.Fatalf("passive declare %q: %v", q, err)
	}
	return info.Messages
}

// next reads one delivery, failing the test after wait.
func next(t *testing.T, sub transport.Subscription) *transport.Delivery {
	t.Helper()
	select {
	case d, ok := <-sub.Deliveries():
		if !ok {
			t.Fatalf("deliveries closed: %v", sub.Err())
		}
		return d
	case <-time.After(wait):
		t.Fatal("no delivery")
	}
	return nil
}

// quiet checks that nothing arrives on sub for d.
func quiet(t *testing.T, sub transport.Subscription, d time.Duration) {
	t.Helper()
	select {
	case m, ok := <-sub.Deliveries():
		if ok {
			t.Fatalf("unexpected delivery %q from %s", m.Body, m.Queue)
		}
		t.Fatalf("deliveries closed: %v", sub.Err())
	case <-time.After(d):
	}
}

// closed waits for sub's deliveries to close and returns what was still
// delivered before that.
func drainSub(t *testing.T, sub transport.Subscription) []*transport.Delivery {
	t.Helper()
	var out []*transport.Delivery
	timeout := time.After(wait)
	for {
		select {
		case d, ok := <-sub.Deliveries():
			if !ok {
				return out
			}
			out = append(out, d)
		case <-timeout:
			t.Fatal("deliveries not closed")
		}
	}
}

// rabbitmqctl runs rabbitmqctl, or skips the test when it is not usable.
func rabbitmqctl(t *testing.T, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		brokertest.Unavailable(t, "rabbitmqctl not on PATH")
	}
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// connectionPID returns the Erlang pid of the connection whose
// connection_name client property is connName, waiting for it to be listed.
func connectionPID(t *testing.T, connName string) string {
	t.Helper()
	var pid string
	transporttest.Eventually(t, "connection "+connName+" in rabbitmqctl list_connections", func() bool {
		out := rabbitmqctl(t, "list_connections", "pid", "client_properties", "-q")
		want := `{"connection_name","` + connName + `"}`
		for _, line := range strings.Split(string(out), "\n") {
			if p, props, ok := strings.Cut(line, "\t"); ok && strings.Contains(props, want) {
				pid = p
				return true
			}
		}
		return false
	})
	return pid
}
