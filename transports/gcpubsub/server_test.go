package gcpubsub_test

import (
	"net"
	"sync"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc"
)

// front serves a pstest server's state (its GServer) on an address of its
// own, through a gRPC server the test makes: so that a test can see the
// requests (an interceptor) and stop and start the listener while the
// topics, subscriptions and messages stay, as a real service's do across
// an outage. pstest's own listener, on another port, goes unused.
type front struct {
	t    testing.TB
	srv  *pstest.Server
	opts []grpc.ServerOption
	Addr string

	mu   sync.Mutex
	gsrv *grpc.Server
	done chan struct{}
}

func startFront(t testing.TB, opts ...grpc.ServerOption) *front {
	t.Helper()
	srv, _ := startServer(t)
	f := &front{t: t, srv: srv, opts: opts, Addr: "127.0.0.1:0"}
	f.start()
	t.Cleanup(f.stop)
	return f
}

// start listens on the front's address (the one it had before, after a
// stop) and serves the pstest state there.
func (f *front) start() {
	f.t.Helper()
	l, err := net.Listen("tcp", f.Addr)
	if err != nil {
		f.t.Fatalf("listen on %s again: %v", f.Addr, err)
	}
	f.Addr = l.Addr().String()
	gsrv := grpc.NewServer(f.opts...)
	pubsubpb.RegisterPublisherServer(gsrv, &f.srv.GServer)
	pubsubpb.RegisterSubscriberServer(gsrv, &f.srv.GServer)
	done := make(chan struct{})
	go func() { defer close(done); _ = gsrv.Serve(l) }()
	f.mu.Lock()
	f.gsrv, f.done = gsrv, done
	f.mu.Unlock()
}

// stop closes the listener and every connection at once (a crash, as
// far as the clients can tell); the state stays.
func (f *front) stop() {
	f.mu.Lock()
	gsrv, done := f.gsrv, f.done
	f.gsrv = nil
	f.mu.Unlock()
	if gsrv != nil {
		gsrv.Stop()
		<-done
	}
}
