package sqs_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Admiral-Piett/goaws/app"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/sqs"
	"github.com/sirupsen/logrus"
)

// goaws is the SQS emulator (github.com/Admiral-Piett/goaws) running in
// this test process on a port of its own: its queues are package state of
// goaws, so there is one per process, shared by every test (each test uses
// queues of its own names). Stop and Start close and reopen its listener on
// the same address, keeping its queues, as a restarted server would.
type goaws struct {
	mu   sync.Mutex
	addr string
	srv  *http.Server
}

var (
	emulatorOnce sync.Once
	emulator     *goaws
)

// testVisibility is the queues' visibility timeout in the tests: short, so
// that a message of a consumer that died comes back quickly.
const testVisibility = 3

// startGoaws starts the process's emulator once and returns it.
func startGoaws(t testing.TB) *goaws {
	t.Helper()
	emulatorOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("goaws: %v", err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		app.CurrentEnvironment = app.Environment{
			Host: "127.0.0.1", Port: port, AccountID: "100010001000",
			QueueAttributeDefaults: app.EnvQueueAttributes{VisibilityTimeout: testVisibility, MaximumMessageSize: sqs.MaxMessageSize},
		}
		go gosqs.PeriodicTasks(200*time.Millisecond, make(chan struct{}))
		emulator = &goaws{addr: ln.Addr().String()}
		emulator.serve(ln)
	})
	if emulator == nil {
		t.Fatal("goaws did not start")
	}
	return emulator
}

// queuesMu keeps goaws's requests that add or remove queues apart from
// the others: goaws reads its map of queues without its lock in some
// handlers (ReceiveMessage, CreateQueue), which a concurrent CreateQueue
// or DeleteQueue turns into Go's fatal "concurrent map read and map
// write".
var queuesMu sync.RWMutex

func serialized(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		switch r.FormValue("Action") {
		case "CreateQueue", "DeleteQueue":
			queuesMu.Lock()
			defer queuesMu.Unlock()
		default:
			queuesMu.RLock()
			defer queuesMu.RUnlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (g *goaws) serve(ln net.Listener) {
	srv := &http.Server{Handler: serialized(router.New()), ReadHeaderTimeout: 10 * time.Second}
	g.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

// Stop closes the emulator's listener and its connections.
func (g *goaws) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = g.srv.Close()
}

// Start listens again on the same address.
func (g *goaws) Start(t testing.TB) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", g.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("goaws: listen again on %s: %v", g.addr, err)
	}
	g.serve(ln)
}

// URL is an sqs:// URL for the emulator, with the options given.
func (g *goaws) URL(options string) string {
	u := "sqs://AKIDTEST:s3cr3t%2Fkey@" + g.addr + "?region=us-east-1&emulator=goaws&polling_interval=0.05&visibility_timeout=" + strconv.Itoa(testVisibility)
	if options != "" {
		u += "&" + options
	}
	return u
}

// open opens a connection to the emulator.
func (g *goaws) open(t testing.TB, options string) transport.Conn {
	t.Helper()
	u, err := transport.Parse(g.URL(options))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sqs.Driver{}.Open(context.Background(), u, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
