// Package sqstest runs goaws (github.com/Admiral-Piett/goaws), the SQS
// emulator this module's tests use, inside the calling process on a port
// of its own: for the tests of transports/sqs and for make bench, which
// start it the same way. It is not imported by the transport, so a
// program that imports transports/sqs does not build goaws.
package sqstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/sirupsen/logrus"
)

// Goaws is the process's emulator. goaws keeps its queues in package
// state, so there is one per process, shared by every caller (each uses
// queues of its own names). Stop and Restart close and reopen its listener
// on the same address, keeping its queues, as a restarted server would.
type Goaws struct {
	mu   sync.Mutex
	addr string
	srv  *http.Server
}

var (
	once     sync.Once
	emulator *Goaws
	startErr error
)

// Start starts the process's emulator the first time it is called, with
// queues whose visibility timeout is visibility seconds by default and
// whose largest message is maxSize bytes, and returns it; later calls
// return the same emulator, whatever their arguments.
func Start(visibility, maxSize int) (*Goaws, error) {
	once.Do(func() {
		logrus.SetOutput(io.Discard)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			startErr = fmt.Errorf("goaws: %w", err)
			return
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		app.CurrentEnvironment = app.Environment{
			Host: "127.0.0.1", Port: port, AccountID: "100010001000",
			// FIFO queues drop a repeated MessageDeduplicationId, as SQS's
			// do (goaws's default is off).
			EnableDuplicates:       true,
			QueueAttributeDefaults: app.EnvQueueAttributes{VisibilityTimeout: visibility, MaximumMessageSize: maxSize},
		}
		go gosqs.PeriodicTasks(200*time.Millisecond, make(chan struct{}))
		emulator = &Goaws{addr: ln.Addr().String()}
		emulator.serve(ln)
	})
	if emulator == nil && startErr == nil {
		return nil, errors.New("goaws did not start")
	}
	return emulator, startErr
}

// Addr is the emulator's host:port.
func (g *Goaws) Addr() string { return g.addr }

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

func (g *Goaws) serve(ln net.Listener) {
	srv := &http.Server{Handler: serialized(router.New()), ReadHeaderTimeout: 10 * time.Second}
	g.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

// Stop closes the emulator's listener and its connections.
func (g *Goaws) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = g.srv.Close()
}

// Restart listens again on the same address, trying for five seconds
// while the old listener's port is released.
func (g *Goaws) Restart() error {
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
		return fmt.Errorf("goaws: listen again on %s: %w", g.addr, err)
	}
	g.serve(ln)
	return nil
}
