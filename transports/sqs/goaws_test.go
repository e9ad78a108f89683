package sqs_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/sqs"
	"github.com/kombu-go/kombu/transports/sqs/sqstest"
)

// goaws is the SQS emulator (package sqstest) running in this test
// process: one per process, shared by every test (each test uses queues of
// its own names).
type goaws struct {
	*sqstest.Goaws
	addr string
}

// testVisibility is the queues' visibility timeout in the tests: short, so
// that a message of a consumer that died comes back quickly.
const testVisibility = 3

// startGoaws starts the process's emulator once and returns it.
func startGoaws(t testing.TB) *goaws {
	t.Helper()
	g, err := sqstest.Start(testVisibility, sqs.MaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	return &goaws{Goaws: g, addr: g.Addr()}
}

// Start listens again on the same address.
func (g *goaws) Start(t testing.TB) {
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
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
