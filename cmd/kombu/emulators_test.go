package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
		target{name: "sqs", url: goawsURL, defaultExchangeOnly: true},
		target{name: "gcpubsub", url: pubsubURL, defaultExchangeOnly: true},
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

// FerretDB, the MongoDB-compatible server transports/mongodb's tests
// build from its testdata/ferretdb (over SQLite): built and started once,
// on the first test that asks, and stopped when the tests end.
func init() {
	targets = append(targets, target{name: "mongodb", url: ferretURL})
}

var (
	ferretOnce sync.Once
	ferretAddr string
	ferretErr  error
	ferretStop = func() {}
)

func ferretURL(t testing.TB) string {
	ferretOnce.Do(func() { ferretAddr, ferretStop, ferretErr = startFerretDB() })
	if ferretErr != nil {
		t.Fatalf("FerretDB: %v", ferretErr)
	}
	return "mongodb://" + ferretAddr + "/kombu_cli_test?polling_interval=0.05"
}

func startFerretDB() (string, func(), error) {
	dir, err := os.MkdirTemp("", "kombu-cli-ferretdb-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "ferretdb")
	build := exec.Command("go", "build", "-o", bin, "./testdata/ferretdb")
	build.Dir = filepath.Join("..", "..", "transports", "mongodb")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build FerretDB: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, addr, data)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("FerretDB did not listen on %s", addr)
}

// Azurite, Microsoft's Azure Storage emulator (its queue service), from
// PATH or npm's global bin as transports/azurequeues's tests find it; one
// per test, in memory, on a free port.
func init() {
	targets = append(targets, target{name: "azurequeues", url: azuriteURL, defaultExchangeOnly: true})
}

const (
	azuriteAccount = "devstoreaccount1"
	// Azurite's well-known development key (public, in Microsoft's docs).
	azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

func azuriteURL(t testing.TB) string {
	bin := os.Getenv("KOMBU_AZURITE_QUEUE")
	if bin == "" {
		bin, _ = exec.LookPath("azurite-queue")
	}
	if bin == "" {
		if os.Getenv("KOMBU_REQUIRE_BROKERS") == "1" {
			t.Fatal("azurite-queue not found (npm install -g azurite@3.35.0, or set KOMBU_AZURITE_QUEUE)")
		}
		t.Skip("azurite-queue not found (npm install -g azurite@3.35.0, or set KOMBU_AZURITE_QUEUE)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--inMemoryPersistence", "--disableTelemetry", "--silent",
		"--queueHost", "127.0.0.1", "--queuePort", fmt.Sprint(port))
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Azurite: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Azurite did not listen on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "azurestoragequeues://" + url.QueryEscape(azuriteKey) + "@http://" + addr + "/" + azuriteAccount + "?polling_interval=0.05"
}
