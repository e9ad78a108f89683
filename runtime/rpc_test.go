package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// serveSquares runs a consumer on queue "squares" that answers an int64 with
// its square, fails for negative numbers, and, given a release channel,
// waits for it before answering 13.
func serveSquares(t *testing.T, conn *kombu.Connection, release <-chan struct{}) {
	t.Helper()
	h := kombu.Replying(func(ctx context.Context, n *wrapperspb.Int64Value, _ *kombu.Message) (*wrapperspb.Int64Value, error) {
		if n.Value < 0 {
			return nil, fmt.Errorf("negative input %d", n.Value)
		}
		if n.Value == 13 && release != nil {
			<-release
		}
		return wrapperspb.Int64(n.Value * n.Value), nil
	})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "squares"}, Handler: h}},
		kombu.WithConcurrency(8))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
}

func TestCallRoundTrip(t *testing.T) {
	conn := dial(t)
	serveSquares(t, conn, nil)
	for _, serializer := range []string{"protobuf", "json"} {
		p := kombu.NewProducer(conn, kombu.WithRoutingKey("squares"), kombu.WithSerializer(serializer))
		var out wrapperspb.Int64Value
		if err := p.Call(ctxT(t), wrapperspb.Int64(7), &out); err != nil {
			t.Fatalf("%s: %v", serializer, err)
		}
		if out.Value != 49 {
			t.Fatalf("%s: 7² = %d", serializer, out.Value)
		}
	}
}

func TestManyCallsInFlightEachGetTheirReply(t *testing.T) {
	conn := dial(t)
	serveSquares(t, conn, nil)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("squares"), kombu.WithSerializer("protobuf"))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out wrapperspb.Int64Value
			if err := p.Call(ctxT(t), wrapperspb.Int64(int64(i)), &out); err != nil {
				errs <- err
			} else if out.Value != int64(i*i) {
				errs <- fmt.Errorf("call %d got %d", i, out.Value)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCallReturnsRemoteError(t *testing.T) {
	conn := dial(t)
	serveSquares(t, conn, nil)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("squares"), kombu.WithSerializer("protobuf"))
	var out wrapperspb.Int64Value
	err := p.Call(ctxT(t), wrapperspb.Int64(-2), &out)
	var remote *kombu.RemoteError
	if !errors.As(err, &remote) || !strings.Contains(remote.Message, "negative input -2") {
		t.Fatalf("got %v, want a *RemoteError carrying the handler's message", err)
	}
}

// A caller that gives up without a deadline (cancelled) cannot tell the
// handler, which answers a caller that is gone: the late reply is dropped
// and counted. (With a deadline, the handler sends no reply past it: see
// TestNoReplyPastTheCallersDeadline.)
func TestCallCancelledAndLateReply(t *testing.T) {
	conn := dial(t)
	release := make(chan struct{})
	serveSquares(t, conn, release)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("squares"), kombu.WithSerializer("protobuf"))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	var out wrapperspb.Int64Value
	if err := p.Call(ctx, wrapperspb.Int64(13), &out); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want Canceled", err)
	}
	close(release) // the handler now answers a caller that is gone
	waitFor(t, func() bool { return conn.LateReplies() == 1 })
	// The next call is not confused by the late reply.
	if err := p.Call(ctxT(t), wrapperspb.Int64(3), &out); err != nil || out.Value != 9 {
		t.Fatalf("call after a late reply: %d, %v", out.Value, err)
	}
}

func TestReplyNeedsARequest(t *testing.T) {
	conn := dial(t)
	mustPublish(t, kombu.NewProducer(conn, kombu.WithRoutingKey("plain")).Publish(ctxT(t), "x"))
	_, err := (kombu.Queue{Name: "plain"}).Declare(ctxT(t), conn)
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, kombu.NewProducer(conn, kombu.WithRoutingKey("plain")).Publish(ctxT(t), "x"))
	_, msg := getBody(t, conn, "plain")
	if err := msg.Reply(ctxT(t), "y"); err == nil || !strings.Contains(err.Error(), "reply_to") {
		t.Fatalf("Reply to a message without reply_to: %v", err)
	}
}
