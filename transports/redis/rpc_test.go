package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// dialRuntime connects the runtime to the test Redis, under a key prefix of
// the test's own, for the length of the test.
func dialRuntime(t *testing.T) (*env, context.Context, *kombu.Connection) {
	t.Helper()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	conn, err := kombu.Dial(ctx, e.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return e, ctx, conn
}

// Redis has no TTL, so a request whose caller timed out stays in its queue:
// Call sends no expiration (which Redis would not honour), only the
// caller's deadline in the "expires" header. A consumer started later
// takes the request and drops it unhandled, rejected (here into the
// queue's dead-letter exchange), and handles the fresh request that
// follows. It used to handle the stale one for nobody.
func TestStaleRequestDroppedOnRedis(t *testing.T) {
	e, ctx, conn := dialRuntime(t)
	quotes := kombu.Queue{Name: "quotes", DeadLetterExchange: "dlx"}
	topo := kombu.Topology{
		Exchanges: []kombu.Exchange{{Name: "dlx", Type: kombu.ExchangeFanout}},
		Queues:    []kombu.Queue{{Name: "dead", Bindings: []kombu.Binding{{Exchange: "dlx"}}}, quotes},
	}
	if err := topo.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("quotes"), kombu.WithSerializer("protobuf"))
	callCtx, callCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer callCancel()
	want, _ := callCtx.Deadline()
	var out wrapperspb.Int64Value
	if err := p.Call(callCtx, wrapperspb.Int64(1), &out); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with nobody consuming: %v, want DeadlineExceeded", err)
	}

	waiting := e.list("quotes")
	if len(waiting) != 1 {
		t.Fatalf("%d requests in the queue, want the stale one", len(waiting))
	}
	var env struct {
		Headers    map[string]any `json:"headers"`
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal([]byte(waiting[0]), &env); err != nil {
		t.Fatal(err)
	}
	expires, _ := env.Headers[kombu.ExpiresHeader].(float64)
	if _, has := env.Properties["expiration"]; has || time.Unix(0, int64(expires*1e9)).Sub(want).Abs() > time.Microsecond {
		t.Fatalf("the stored request has expiration %v and expires %v: want none, and the caller's deadline %v",
			env.Properties["expiration"], env.Headers[kombu.ExpiresHeader], want)
	}

	var mu sync.Mutex
	var asked []int64
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: quotes, Handler: kombu.Replying(
		func(_ context.Context, n *wrapperspb.Int64Value, _ *kombu.Message) (*wrapperspb.Int64Value, error) {
			mu.Lock()
			asked = append(asked, n.Value)
			mu.Unlock()
			return n, nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, ctx, c)
	if err := p.Call(ctx, wrapperspb.Int64(2), &out); err != nil || out.Value != 2 {
		t.Fatalf("fresh call: %d, %v", out.Value, err)
	}
	d := waitDead(t, e, "dead")
	if x := death(t, d); x[0]["reason"] != "rejected" || x[0]["queue"] != "quotes" {
		t.Errorf("the stale request's x-death %v, want rejected from quotes", x)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked, []int64{2}) {
		t.Fatalf("the handler was asked %v, want only the fresh request [2]", asked)
	}
	if n := len(e.list("quotes")); n != 0 {
		t.Errorf("%d left in quotes", n)
	}
}

// On Redis too the handler's context ends at the caller's deadline.
func TestHandlerDeadlineOnRedis(t *testing.T) {
	_, ctx, conn := dialRuntime(t)
	got := make(chan time.Time, 1)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: kombu.Queue{Name: "echo"}, Handler: kombu.Replying(
		func(ctx context.Context, n *wrapperspb.Int64Value, _ *kombu.Message) (*wrapperspb.Int64Value, error) {
			d, _ := ctx.Deadline()
			got <- d
			return n, nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, ctx, c)
	callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
	defer callCancel()
	want, _ := callCtx.Deadline()
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey("echo")).Call(callCtx, wrapperspb.Int64(1), new(wrapperspb.Int64Value)); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d.Sub(want).Abs() > time.Microsecond {
		t.Fatalf("the handler's deadline is %v, want the caller's %v", d, want)
	}
}
