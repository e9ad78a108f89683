package main

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/Admiral-Piett/goaws/app"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/sirupsen/logrus"
)

// The vendors' emulators that run inside this test process, as the sqs and
// gcpubsub modules' tests start them (goaws for SQS, pstest for Pub/Sub),
// listening on ports of their own; the command's process reaches them
// over TCP like any broker.
func init() {
	targets = append(targets,
		target{name: "sqs", url: goawsURL, virtual: true, defaultExchangeOnly: true},
		target{name: "gcpubsub", url: pubsubURL, virtual: true, defaultExchangeOnly: true},
	)
}

var (
	goawsOnce sync.Once
	goawsAddr string
	// goawsMu keeps goaws's requests that add or remove queues apart from
	// the others: some of its handlers read its map of queues without its
	// lock (see transports/sqs/goaws_test.go).
	goawsMu sync.RWMutex
)

func goawsURL(t testing.TB) string {
	goawsOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("goaws: %v", err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		app.CurrentEnvironment = app.Environment{
			Host: "127.0.0.1", Port: port, AccountID: "100010001000",
			QueueAttributeDefaults: app.EnvQueueAttributes{VisibilityTimeout: 30, MaximumMessageSize: 262144},
		}
		go gosqs.PeriodicTasks(200*time.Millisecond, make(chan struct{}))
		h := router.New()
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			switch r.FormValue("Action") {
			case "CreateQueue", "DeleteQueue":
				goawsMu.Lock()
				defer goawsMu.Unlock()
			default:
				goawsMu.RLock()
				defer goawsMu.RUnlock()
			}
			h.ServeHTTP(w, r)
		})}
		go func() { _ = srv.Serve(ln) }()
		goawsAddr = ln.Addr().String()
	})
	if goawsAddr == "" {
		t.Fatal("goaws did not start")
	}
	return "sqs://AKIDTEST:s3cr3t%2Fkey@" + goawsAddr + "?region=us-east-1&emulator=goaws&polling_interval=0.05"
}

func pubsubURL(t testing.TB) string {
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	return "gcpubsub://projects/kombu-cli-test?emulator_host=" + srv.Addr + "&polling_interval=0.05"
}
