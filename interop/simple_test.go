package interop_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Python's conn.SimpleQueue(name) and Go's NewSimpleQueue on the same name
// share one queue, both ways, on RabbitMQ and Redis; and the same for
// SimpleBuffer. The side that comes second declares the exchange and
// queue again: RabbitMQ refuses a declaration whose durability or
// auto-delete differs (PRECONDITION_FAILED), so each direction also checks
// that both declare the same. The value is a proto message on the Go side,
// a dict on the Python side.

// simpleBroker is where a simple-queue interop test runs: the URL Go dials
// and the peer's arguments to reach the same broker and keys.
type simpleBroker struct {
	goURL, pyURL string
	pyArgs       []string
}

func simpleBrokers(t *testing.T) map[string]func(t *testing.T) simpleBroker {
	return map[string]func(t *testing.T) simpleBroker{
		"amqp": func(t *testing.T) simpleBroker {
			url := brokertest.AMQPURL(t)
			requirePython(t)
			return simpleBroker{goURL: url, pyURL: url}
		},
		"redis": func(t *testing.T) simpleBroker {
			e := newRedisEnv(t)
			return simpleBroker{goURL: e.goURL(), pyURL: e.base, pyArgs: []string{"--transport-options", e.pyOptions()}}
		},
	}
}

var simpleOrders = []*quickstartv1.OrderPlaced{
	{OrderId: "A-1", Customer: "ada", AmountCents: 1250, Items: []string{"tea", "mug"}},
	{OrderId: "A-2", Customer: "grace", AmountCents: 4999, Items: []string{"kettle"}},
}

// orderDict is an order as Python sees it: proto field names, 64-bit
// integers as JSON numbers.
func orderDict(o *quickstartv1.OrderPlaced) map[string]any {
	items := make([]any, len(o.Items))
	for i, s := range o.Items {
		items[i] = s
	}
	return map[string]any{"order_id": o.OrderId, "customer": o.Customer, "amount_cents": float64(o.AmountCents), "items": items}
}

func TestSimpleQueueInterop(t *testing.T) {
	for broker, setUp := range simpleBrokers(t) {
		for _, buffer := range []bool{false, true} {
			kind := "SimpleQueue"
			if buffer {
				kind = "SimpleBuffer"
			}
			t.Run(broker+"/"+kind+"/Python puts, Go gets", func(t *testing.T) {
				b := setUp(t)
				name := simpleName(t)
				conn := dialGo(t, b.goURL)
				cleanUpSimple(t, conn, name)
				bodies := make([]map[string]any, len(simpleOrders))
				for i, o := range simpleOrders {
					bodies[i] = orderDict(o)
				}
				pySimple(t, b, "simple-put", name, buffer, bodies)

				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				q, err := newSimple(ctx, conn, name, buffer)
				if err != nil {
					t.Fatal(err) // a declaration that differs from Kombu's fails here
				}
				defer q.Close()
				for _, want := range simpleOrders {
					got, msg, err := q.Get(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if !proto.Equal(got, want) {
						t.Errorf("Go got %v, want %v", got, want)
					}
					if msg.DeliveryInfo.Exchange != name || msg.DeliveryInfo.RoutingKey != name || msg.Properties.ContentType != "application/json" {
						t.Errorf("exchange %q, routing key %q, content type %q; want the queue's name twice, and JSON",
							msg.DeliveryInfo.Exchange, msg.DeliveryInfo.RoutingKey, msg.Properties.ContentType)
					}
					if err := msg.Ack(); err != nil {
						t.Fatal(err)
					}
				}
			})
			t.Run(broker+"/"+kind+"/Go puts, Python gets", func(t *testing.T) {
				b := setUp(t)
				name := simpleName(t)
				conn := dialGo(t, b.goURL)
				cleanUpSimple(t, conn, name)
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				q, err := newSimple(ctx, conn, name, buffer)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range simpleOrders {
					if err := q.Put(ctx, o); err != nil {
						t.Fatal(err)
					}
				}
				q.Close()

				var got []pyMessage
				if err := json.Unmarshal(pySimple(t, b, "simple-get", name, buffer, nil, fmt.Sprint(len(simpleOrders))), &got); err != nil {
					t.Fatal(err)
				}
				if len(got) != len(simpleOrders) {
					t.Fatalf("Python got %d messages, want %d", len(got), len(simpleOrders))
				}
				for i, m := range got {
					var body map[string]any
					if err := json.Unmarshal(m.Body, &body); err != nil {
						t.Fatal(err)
					}
					if want := orderDict(simpleOrders[i]); fmt.Sprint(body) != fmt.Sprint(want) {
						t.Errorf("Python got %v, want %v", body, want)
					}
					if m.DeliveryInfo["exchange"] != name || m.DeliveryInfo["routing_key"] != name || m.ContentType != "application/json" {
						t.Errorf("Python saw delivery info %v and content type %q; want the queue's name and JSON", m.DeliveryInfo, m.ContentType)
					}
					mode, want := m.Properties["delivery_mode"], float64(kombu.Persistent)
					if buffer {
						want = float64(kombu.Transient)
					}
					if mode != want {
						t.Errorf("delivery mode %v, want %v", mode, want)
					}
				}
			})
		}
	}
}

// simpleQueue is what SimpleQueue and SimpleBuffer both are, for one test
// of both.
type simpleQueue interface {
	Put(ctx context.Context, v *quickstartv1.OrderPlaced, opts ...kombu.PublishOption) error
	Get(ctx context.Context) (*quickstartv1.OrderPlaced, *kombu.Message, error)
	Close() error
}

func newSimple(ctx context.Context, conn *kombu.Connection, name string, buffer bool) (simpleQueue, error) {
	if buffer {
		return kombu.NewSimpleBuffer[*quickstartv1.OrderPlaced](ctx, conn, name)
	}
	return kombu.NewSimpleQueue[*quickstartv1.OrderPlaced](ctx, conn, name)
}

func simpleName(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "kombu-go-interop.simple." + hex.EncodeToString(b)
}

func dialGo(t *testing.T, url string) *kombu.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// cleanUpSimple deletes the queue and exchange when the test ends (on
// Redis the test's key prefix goes too).
func cleanUpSimple(t *testing.T, conn *kombu.Connection, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = kombu.Queue{Name: name}.Delete(ctx, conn)
		_ = kombu.Exchange{Name: name}.Delete(ctx, conn)
	})
}

// pySimple runs kombu_peer.py simple-put or simple-get.
func pySimple(t *testing.T, b simpleBroker, cmd, name string, buffer bool, in any, extra ...string) []byte {
	t.Helper()
	args := append([]string{name}, extra...)
	if buffer {
		args = append(args, "--buffer")
	}
	return runPeer(t, cmd, b.pyURL, in, append(args, b.pyArgs...)...)
}

// runPeer runs kombu_peer.py cmd url args... with the JSON of in on stdin,
// and returns its stdout.
func runPeer(t *testing.T, cmd, url string, in any, args ...string) []byte {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(python, append([]string{peerScript(), cmd, url}, args...)...)
	c.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("python %s %v: %v\nstdout: %s\nstderr: %s", cmd, args, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}
