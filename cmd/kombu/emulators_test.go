package main

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/transports/azurequeues/azuritetest"
	"github.com/kombu-go/kombu/transports/mongodb/mongotest"
	"github.com/kombu-go/kombu/transports/sqs/sqstest"
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

// goaws keeps its queues in package state: one emulator per process
// (sqstest), each test with queues of its own names.
func goawsURL(t testing.TB) string {
	g, err := sqstest.Start(30, 262144)
	if err != nil {
		t.Fatal(err)
	}
	return "sqs://AKIDTEST:s3cr3t%2Fkey@" + g.Addr() + "?region=us-east-1&emulator=goaws&polling_interval=0.05"
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
	ferret     *mongotest.Server
	ferretErr  error
)

// ferretURL is FerretDB as mongotest builds and starts it: once, on the
// first test that asks, stopped by TestMain.
func ferretURL(t testing.TB) string {
	ferretOnce.Do(func() { ferret, ferretErr = mongotest.Start(context.Background()) })
	if ferretErr != nil {
		t.Fatalf("FerretDB: %v", ferretErr)
	}
	return "mongodb://" + ferret.Addr + "/kombu_cli_test?polling_interval=0.05"
}

// Azurite, Microsoft's Azure Storage emulator (its queue service), from
// PATH or npm's global bin as transports/azurequeues's tests find it; one
// per test, in memory, on a free port.
func init() {
	targets = append(targets, target{name: "azurequeues", url: azuriteURL, defaultExchangeOnly: true})
}

// azuriteURL is an Azurite of the test's own, in memory, on a free port.
func azuriteURL(t testing.TB) string {
	bin, err := azuritetest.Find()
	if err != nil {
		brokertest.Unavailable(t, err.Error())
		return ""
	}
	port, err := azuritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := azuritetest.Launch(bin, port, t.TempDir(), "--inMemoryPersistence")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("azurestoragequeues://%s@http://127.0.0.1:%d/%s?polling_interval=0.05",
		url.QueryEscape(azuritetest.DevKey), port, azuritetest.DevAccount)
}
