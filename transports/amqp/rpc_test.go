package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// dialRuntime connects the runtime to the test broker, for the length of
// the test (20 seconds at most).
func dialRuntime(t *testing.T) (context.Context, *kombu.Connection) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	conn, err := kombu.Dial(ctx, brokertest.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ctx, conn
}

// Request/reply through the runtime uses RabbitMQ's direct reply-to: no
// reply queue is declared, and the broker rewrites reply_to into the
// requesting channel's private address.
func TestCallUsesDirectReplyTo(t *testing.T) {
	ctx, conn := dialRuntime(t)
	queue := kombu.Queue{Name: "kombu-go-test.rpc." + strings.ReplaceAll(t.Name(), "/", "_"), AutoDelete: true}
	seenReplyTo := make(chan string, 1)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: queue, Handler: kombu.Replying(
		func(_ context.Context, n *wrapperspb.Int64Value, msg *kombu.Message) (*wrapperspb.Int64Value, error) {
			select {
			case seenReplyTo <- msg.Properties.ReplyTo:
			default:
			}
			return wrapperspb.Int64(n.Value + 1), nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	defer c.Close()

	p := kombu.NewProducer(conn, kombu.WithRoutingKey(queue.Name), kombu.WithSerializer("protobuf"))
	for i := range 20 {
		var out wrapperspb.Int64Value
		if err := p.Call(ctx, wrapperspb.Int64(int64(i)), &out); err != nil || out.Value != int64(i+1) {
			t.Fatalf("call %d: %d, %v", i, out.Value, err)
		}
	}
	if rt := <-seenReplyTo; !strings.HasPrefix(rt, kombu.DirectReplyTo+".") {
		t.Fatalf("the request's reply_to is %q, want RabbitMQ's rewritten %s.<id>", rt, kombu.DirectReplyTo)
	}
}

// A request whose caller timed out before any consumer ran is not handled
// when one starts: Call sent the caller's deadline as the request's
// expiration, and RabbitMQ dead-lettered it at the deadline (reason
// "expired", original-expiration at most the caller's timeout). It used to
// go out with no expiration and be handled for nobody.
func TestStaleRequestExpiresOnRabbitMQ(t *testing.T) {
	ctx, conn := dialRuntime(t)
	work, dlx, dead := name(t, "quotes"), name(t, "dlx"), name(t, "dead")
	t.Cleanup(func() {
		for _, q := range []string{work, dead} {
			_, _ = kombu.Queue{Name: q}.Delete(context.Background(), conn)
		}
	})
	quotes := kombu.Queue{Name: work, DeadLetterExchange: dlx, Expires: time.Minute}
	topo := kombu.Topology{
		Exchanges: []kombu.Exchange{{Name: dlx, Type: kombu.ExchangeFanout, AutoDelete: true}},
		Queues:    []kombu.Queue{{Name: dead, Expires: time.Minute, Bindings: []kombu.Binding{{Exchange: dlx}}}, quotes},
	}
	if err := topo.Declare(ctx, conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(work), kombu.WithSerializer("protobuf"))
	callCtx, callCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer callCancel()
	var out wrapperspb.Int64Value
	if err := p.Call(callCtx, wrapperspb.Int64(1), &out); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call with nobody consuming: %v, want DeadlineExceeded", err)
	}
	var msg *kombu.Message
	for msg == nil {
		var err error
		if msg, err = (kombu.Queue{Name: dead}).Get(ctx, conn, kombu.WithAutoAck()); err != nil && !errors.Is(err, kombu.ErrEmpty) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	deaths, _ := msg.Headers["x-death"].([]any)
	death, _ := deaths[0].(map[string]any)
	ms, err := strconv.Atoi(fmt.Sprint(death["original-expiration"]))
	if death["reason"] != "expired" || err != nil || ms < 1 || ms > 301 {
		t.Fatalf("dead letter's x-death %v: want reason expired and original-expiration 1 to 301 ms", death)
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
	go c.Run(ctx)
	defer c.Close()
	if err := p.Call(ctx, wrapperspb.Int64(2), &out); err != nil || out.Value != 2 {
		t.Fatalf("fresh call: %d, %v", out.Value, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked, []int64{2}) {
		t.Fatalf("the handler was asked %v, want only the fresh request [2]", asked)
	}
}

// On RabbitMQ the "expires" header travels as an AMQP double, and the
// handler's context ends at the caller's deadline.
func TestHandlerDeadlineOnRabbitMQ(t *testing.T) {
	ctx, conn := dialRuntime(t)
	queue := kombu.Queue{Name: name(t, "echo"), AutoDelete: true}
	got := make(chan time.Time, 1)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: queue, Handler: kombu.Replying(
		func(ctx context.Context, n *wrapperspb.Int64Value, _ *kombu.Message) (*wrapperspb.Int64Value, error) {
			d, _ := ctx.Deadline()
			got <- d
			return n, nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	defer c.Close()
	callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
	defer callCancel()
	want, _ := callCtx.Deadline()
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey(queue.Name)).Call(callCtx, wrapperspb.Int64(1), new(wrapperspb.Int64Value)); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d.Sub(want).Abs() > time.Microsecond {
		t.Fatalf("the handler's deadline is %v, want the caller's %v", d, want)
	}
}
