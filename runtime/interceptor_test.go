package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
	"github.com/kombu-go/kombu/internal/payload"
	kombu "github.com/kombu-go/kombu/runtime"
)

// recorder is an interceptor that writes down what it sees, under a name.
type recorder struct {
	name string
	mu   *sync.Mutex
	log  *[]string
}

func (r recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, r.name+" "+s)
}

func (r recorder) WrapPublish(next kombu.PublishFunc) kombu.PublishFunc {
	return func(ctx context.Context, pub *kombu.Publishing) error {
		r.add("publish " + pub.RoutingKey())
		pub.SetHeader("x-seen-by-"+r.name, true)
		err := next(ctx, pub)
		r.add(fmt.Sprintf("published %v", err))
		return err
	}
}

func (r recorder) WrapHandle(next kombu.HandlerFunc) kombu.HandlerFunc {
	return func(ctx context.Context, msg *kombu.Message) error {
		r.add("handle " + msg.DeliveryInfo.Queue)
		err := next(ctx, msg)
		r.add(fmt.Sprintf("handled %v", err))
		return err
	}
}

func dialWith(t *testing.T, opts ...kombu.DialOption) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(context.Background(), brokerURL(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestInterceptorsOrderAndHeaders(t *testing.T) {
	var mu sync.Mutex
	var log []string
	conn := dialWith(t, kombu.WithInterceptors(recorder{"outer", &mu, &log}), kombu.WithInterceptors(recorder{"inner", &mu, &log}))
	done := make(chan *kombu.Message, 1)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "q"},
		Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
			mu.Lock()
			log = append(log, "handler")
			mu.Unlock()
			done <- m
			return nil
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	defaults := map[string]any{"app": "x"}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("q"), kombu.WithHeaders(defaults))
	mustPublish(t, p.Publish(ctxT(t), []byte("hi")))
	var m *kombu.Message
	select {
	case m = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m.Headers["x-seen-by-outer"] != true || m.Headers["x-seen-by-inner"] != true || m.Headers["app"] != "x" {
		t.Errorf("headers the interceptors set did not travel: %v", m.Headers)
	}
	if len(defaults) != 1 {
		t.Errorf("the caller's header map was written to: %v", defaults)
	}
	if got := m.Transport(); got != "memory" {
		t.Errorf("Message.Transport() = %q, want memory", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"outer publish q", "inner publish q", "inner published <nil>", "outer published <nil>",
		"outer handle q", "inner handle q", "handler", "inner handled <nil>", "outer handled <nil>",
	}
	if fmt.Sprint(log) != fmt.Sprint(want) {
		t.Errorf("order:\n got %q\nwant %q", log, want)
	}
}

func TestPublishInterceptorErrorSendsNothing(t *testing.T) {
	refused := errors.New("policy says no")
	conn := dialWith(t, kombu.WithInterceptors(kombu.PublishInterceptorFunc(func(next kombu.PublishFunc) kombu.PublishFunc {
		return func(ctx context.Context, pub *kombu.Publishing) error {
			if string(pub.Body()) == "bad" {
				return refused
			}
			if string(pub.Body()) == "panic" {
				panic("interceptor bug")
			}
			return next(ctx, pub)
		}
	})))
	if _, err := (kombu.Queue{Name: "q"}).Declare(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("q"))
	err := p.Publish(ctxT(t), []byte("bad"))
	if !errors.Is(err, kombu.ErrInterceptor) || !errors.Is(err, refused) {
		t.Fatalf("Publish = %v, want ErrInterceptor wrapping the interceptor's error", err)
	}
	err = p.Publish(ctxT(t), []byte("panic"))
	if !errors.Is(err, kombu.ErrInterceptor) {
		t.Fatalf("Publish with a panicking interceptor = %v, want ErrInterceptor", err)
	}
	// The batch path goes through the interceptors too.
	var b kombu.Batch
	if err := p.Publish(ctxT(t), []byte("bad"), kombu.InBatch(&b)); !errors.Is(err, refused) || b.Len() != 0 {
		t.Fatalf("batched Publish = %v with %d queued, want the refusal and none", err, b.Len())
	}
	mustPublish(t, p.Publish(ctxT(t), []byte("good")))
	if body, _ := getBody(t, conn, "q"); body != "good" {
		t.Fatalf("first message in the queue is %q, want good: a refused one was sent", body)
	}
	if _, err := (kombu.Queue{Name: "q"}).Get(ctxT(t), conn); !errors.Is(err, kombu.ErrEmpty) {
		t.Fatalf("queue holds more than the one message let through: %v", err)
	}
}

func TestHandleInterceptorErrorIsTheHandlersAndRetriesAreIntercepted(t *testing.T) {
	var mu sync.Mutex
	var retries []int
	var handled int
	conn := dialWith(t, kombu.WithInterceptors(
		kombu.PublishInterceptorFunc(func(next kombu.PublishFunc) kombu.PublishFunc {
			return func(ctx context.Context, pub *kombu.Publishing) error {
				if pub.Retry() {
					n, _ := pub.Header(kombu.RetriesHeader)
					mu.Lock()
					retries = append(retries, int(n.(int64)))
					mu.Unlock()
				}
				return next(ctx, pub)
			}
		}),
		kombu.HandleInterceptorFunc(func(next kombu.HandlerFunc) kombu.HandlerFunc {
			return func(ctx context.Context, msg *kombu.Message) error {
				err := next(ctx, msg)
				if err != nil {
					t.Errorf("handler result %v, want nil", err)
				}
				switch string(msg.Body) {
				case "panic":
					panic("interceptor bug")
				case "fail":
					return errors.New("interceptor vetoes")
				}
				return err
			}
		}),
	))
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "work", DeadLetterExchange: "dlx"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			mu.Lock()
			handled++
			mu.Unlock()
			return nil
		}),
	}}, kombu.WithTopology(workAndDeadLetter),
		kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 2, IntervalStart: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("work"))
	mustPublish(t, p.Publish(ctxT(t), []byte("fail")))
	if body, dead := getBody(t, conn, "dead"); body != "fail" || dead.Retries() != 2 {
		t.Fatalf("dead-lettered %q after %d retries, want fail after 2", body, dead.Retries())
	}
	mustPublish(t, p.Publish(ctxT(t), []byte("panic")))
	if body, _ := getBody(t, conn, "dead"); body != "panic" {
		t.Fatalf("dead-lettered %q, want panic", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled != 6 {
		t.Errorf("handler ran %d times, want 3 per message", handled)
	}
	if fmt.Sprint(retries) != "[1 2 1 2]" {
		t.Errorf("retry publishes seen by the interceptor: %v, want [1 2 1 2]", retries)
	}
}

func TestInterceptorsSeeRequestAndReply(t *testing.T) {
	var mu sync.Mutex
	var log []string
	conn := dialWith(t, kombu.WithInterceptors(recorder{"r", &mu, &log}))
	serveSquares(t, conn, nil)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("squares"))
	var out wrapperspb.Int64Value
	if err := p.Call(ctxT(t), wrapperspb.Int64(3), &out); err != nil || out.Value != 9 {
		t.Fatalf("Call = %v, %v", out.Value, err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The request's publish, its handling, and the reply's publish inside it.
	var publishes, handles int
	for _, l := range log {
		switch {
		case len(l) > 10 && l[:10] == "r publish ":
			publishes++
		case len(l) > 9 && l[:9] == "r handle ":
			handles++
		}
	}
	if publishes != 2 || handles != 1 {
		t.Errorf("saw %d publishes and %d handler calls, want 2 and 1: %q", publishes, handles, log)
	}
}

// Generated producers and consumers go through the connection's
// interceptors with no change to the generated code.
func TestGeneratedCodeIsIntercepted(t *testing.T) {
	var mu sync.Mutex
	var log []string
	conn := dialWith(t, kombu.WithInterceptors(recorder{"r", &mu, &log}))
	handled := make(chan struct{}, 1)
	c, err := quickstartv1.NewShopConsumer(conn, shopFunc(func() { handled <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	if err := quickstartv1.NewShopProducer(conn).PlaceOrder(ctxT(t), payload.Order()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("not handled")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "[r publish order.placed r published <nil> r handle quickstart.orders r handled <nil>]"
	if fmt.Sprint(log) != want {
		t.Errorf("interceptor saw %q, want %s", log, want)
	}
}
