package otelkombu_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/otelkombu"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// telemetry is an interceptor whose spans and metrics stay in memory.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	ic     *otelkombu.Interceptor
}

func newTelemetry(t *testing.T, opts ...otelkombu.Option) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	ic, err := otelkombu.NewInterceptor(append([]otelkombu.Option{otelkombu.WithTracerProvider(tel.tp), otelkombu.WithMeterProvider(mp),
		otelkombu.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	tel.ic = ic
	return tel
}

// waitSpans waits until n spans have ended, and returns them.
func (tel *telemetry) waitSpans(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ended := tel.spans.Ended()
		if len(ended) >= n {
			return ended
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans ended, want %d: %v", len(ended), n, names(ended))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// find returns the only span of that name and kind.
func find(t *testing.T, spans []sdktrace.ReadOnlySpan, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name && s.SpanKind() == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %v spans named %q among %v, want 1", len(found), kind, name, names(spans))
	}
	return found[0]
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// wantAttrs checks that s has each attribute with the value given.
func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[string]any) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		val, ok := got[attribute.Key(k)]
		if !ok {
			t.Errorf("span %q has no attribute %s (has %v)", s.Name(), k, s.Attributes())
			continue
		}
		if fmt.Sprint(val.AsInterface()) != fmt.Sprint(v) {
			t.Errorf("span %q: %s = %v, want %v", s.Name(), k, val.AsInterface(), v)
		}
	}
}

// childOf checks that s is a child of parent in parent's trace.
func childOf(t *testing.T, s sdktrace.ReadOnlySpan, parent trace.SpanContext) {
	t.Helper()
	if s.SpanContext().TraceID() != parent.TraceID() {
		t.Errorf("span %q is in trace %s, want %s", s.Name(), s.SpanContext().TraceID(), parent.TraceID())
	}
	if s.Parent().SpanID() != parent.SpanID() {
		t.Errorf("span %q's parent is %s, want %s", s.Name(), s.Parent().SpanID(), parent.SpanID())
	}
}

func linkedTo(t *testing.T, s sdktrace.ReadOnlySpan, sc trace.SpanContext) {
	t.Helper()
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return
		}
	}
	t.Errorf("span %q has no link to %s/%s: %v", s.Name(), sc.TraceID(), sc.SpanID(), s.Links())
}

func unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "." + hex.EncodeToString(b[:])
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// transports are the brokers the trace tests cross.
var transports = []struct {
	name, system string
	url          func(t *testing.T) string
}{
	{"memory", "kombu_memory", func(t *testing.T) string { return "memory:///" + unique("otel") }},
	{"rabbitmq", "rabbitmq", func(t *testing.T) string { return brokertest.AMQPURL(t) }},
	{"redis", "redis", func(t *testing.T) string { return brokertest.RedisURL(t) }},
}

func dial(t *testing.T, url string, tel *telemetry) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(ctxT(t), url, kombu.WithInterceptors(tel.ic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// consume runs a consumer of q with h until the test ends, deleting q then.
func consume(t *testing.T, conn *kombu.Connection, q kombu.Queue, h kombu.Handler, opts ...kombu.ConsumerOption) {
	t.Helper()
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{Queue: q, Handler: h}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("consumer: %v", err)
		}
		_, _ = q.Delete(context.Background(), conn)
	})
}

func TestTraceFromPublisherToHandler(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			tel := newTelemetry(t)
			conn := dial(t, tr.url(t), tel)
			ex := kombu.Exchange{Name: unique("otelkombu.x"), Type: kombu.ExchangeDirect, AutoDelete: true}
			q := kombu.Queue{Name: unique("otelkombu.q"), AutoDelete: true}
			q.Bindings = []kombu.Binding{{Exchange: ex.Name, RoutingKey: q.Name}}
			handled := make(chan trace.SpanContext, 1)
			headers := make(chan map[string]any, 1)
			consume(t, conn, q, kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
				headers <- msg.Headers
				handled <- trace.SpanContextFromContext(ctx)
				return nil
			}), kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{ex}}))
			t.Cleanup(func() { _ = ex.Delete(context.Background(), conn) })

			ctx, caller := tel.tp.Tracer("test").Start(ctxT(t), "caller")
			p := kombu.NewProducer(conn, kombu.WithExchange(ex), kombu.WithRoutingKey(q.Name))
			if err := p.Publish(ctx, map[string]string{"hello": "world"}, kombu.WithMessageID("m-1"), kombu.WithCorrelationID("conv-1")); err != nil {
				t.Fatal(err)
			}
			caller.End()
			var inHandler trace.SpanContext
			select {
			case inHandler = <-handled:
			case <-time.After(20 * time.Second):
				t.Fatal("message not handled")
			}
			spans := tel.waitSpans(t, 3)
			pub := find(t, spans, "publish "+ex.Name+":"+q.Name, trace.SpanKindProducer)
			proc := find(t, spans, "process "+q.Name, trace.SpanKindConsumer)
			childOf(t, pub, caller.SpanContext())
			childOf(t, proc, pub.SpanContext())
			linkedTo(t, proc, pub.SpanContext())
			if inHandler.SpanID() != proc.SpanContext().SpanID() {
				t.Errorf("the handler's context holds span %s, want the process span %s", inHandler.SpanID(), proc.SpanContext().SpanID())
			}
			h := <-headers
			wantTP := fmt.Sprintf("00-%s-%s-01", pub.SpanContext().TraceID(), pub.SpanContext().SpanID())
			if h["traceparent"] != wantTP {
				t.Errorf("message header traceparent = %v, want %s", h["traceparent"], wantTP)
			}
			wantAttrs(t, pub, map[string]any{
				"messaging.system":                           tr.system,
				"messaging.operation.name":                   "publish",
				"messaging.operation.type":                   "send",
				"messaging.destination.name":                 ex.Name + ":" + q.Name,
				"messaging.rabbitmq.destination.routing_key": q.Name,
				"messaging.message.id":                       "m-1",
				"messaging.message.conversation_id":          "conv-1",
			})
			wantAttrs(t, proc, map[string]any{
				"messaging.system":                           tr.system,
				"messaging.operation.name":                   "process",
				"messaging.operation.type":                   "process",
				"messaging.destination.name":                 q.Name,
				"messaging.rabbitmq.destination.routing_key": q.Name,
				"messaging.message.id":                       "m-1",
				"messaging.message.conversation_id":          "conv-1",
			})
			if _, ok := attrs(proc)["messaging.rabbitmq.message.delivery_tag"]; !ok {
				t.Errorf("process span has no delivery tag")
			}
			for _, s := range []sdktrace.ReadOnlySpan{pub, proc} {
				if s.Status().Code == codes.Error {
					t.Errorf("span %q failed: %v", s.Name(), s.Status())
				}
			}

			m := collect(t, tel)
			base := map[string]string{"messaging.system": tr.system, "kombu.exchange": ex.Name}
			wantCount(t, m, "messaging.client.sent.messages", with(base, "messaging.destination.name", ex.Name, "messaging.operation.name", "publish"), 1)
			wantCount(t, m, "messaging.client.consumed.messages", with(base, "messaging.destination.name", q.Name, "messaging.operation.name", "process"), 1)
			wantCount(t, m, "messaging.client.operation.duration", with(base, "messaging.destination.name", ex.Name, "messaging.operation.name", "publish"), 1)
			wantCount(t, m, "messaging.process.duration", with(base, "messaging.destination.name", q.Name, "messaging.operation.name", "process"), 1)
		})
	}
}

type square struct{ N int }

func TestRequestReplyIsOneTrace(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			tel := newTelemetry(t)
			conn := dial(t, tr.url(t), tel)
			q := kombu.Queue{Name: unique("otelkombu.rpc"), AutoDelete: true}
			consume(t, conn, q, kombu.Replying(func(ctx context.Context, in *square, _ *kombu.Message) (square, error) {
				return square{in.N * in.N}, nil
			}))
			ctx, caller := tel.tp.Tracer("test").Start(ctxT(t), "caller")
			var out square
			if err := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name)).Call(ctx, square{7}, &out); err != nil {
				t.Fatal(err)
			}
			caller.End()
			if out.N != 49 {
				t.Fatalf("7² = %d", out.N)
			}
			spans := tel.waitSpans(t, 4)
			req := find(t, spans, "publish "+q.Name, trace.SpanKindProducer)
			proc := find(t, spans, "process "+q.Name, trace.SpanKindConsumer)
			var reply sdktrace.ReadOnlySpan
			for _, s := range spans {
				if s.SpanKind() == trace.SpanKindProducer && s != req {
					reply = s
				}
			}
			if reply == nil {
				t.Fatalf("no reply publish span among %v", names(spans))
			}
			childOf(t, req, caller.SpanContext())
			childOf(t, proc, req.SpanContext())
			childOf(t, reply, proc.SpanContext())
			conv := attrs(req)["messaging.message.conversation_id"].AsString()
			if conv == "" || attrs(reply)["messaging.message.conversation_id"].AsString() != conv {
				t.Errorf("request and reply conversation ids: %v, %v", attrs(req), attrs(reply))
			}
		})
	}
}

func TestErrorsAreRecorded(t *testing.T) {
	tel := newTelemetry(t)
	conn := dial(t, "memory:///"+unique("otel"), tel)
	q := kombu.Queue{Name: unique("otelkombu.fail")}
	consume(t, conn, q, kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
		return errors.New("handler failed")
	}))
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name))
	if err := p.Publish(ctxT(t), []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A mandatory publish that no queue takes fails with ErrUnroutable.
	err := p.Publish(ctxT(t), []byte("y"), kombu.WithRoutingKey("nowhere"), kombu.WithMandatory())
	if !errors.Is(err, kombu.ErrUnroutable) {
		t.Fatalf("mandatory publish to nowhere: %v", err)
	}
	spans := tel.waitSpans(t, 3)
	proc := find(t, spans, "process "+q.Name, trace.SpanKindConsumer)
	if proc.Status().Code != codes.Error || proc.Status().Description != "handler failed" {
		t.Errorf("process span status %v", proc.Status())
	}
	wantAttrs(t, proc, map[string]any{"error.type": "_OTHER"})
	if len(proc.Events()) == 0 || proc.Events()[0].Name != "exception" {
		t.Errorf("process span events %v, want the error recorded", proc.Events())
	}
	pub := find(t, spans, "publish nowhere", trace.SpanKindProducer)
	if pub.Status().Code != codes.Error {
		t.Errorf("publish span status %v", pub.Status())
	}
	wantAttrs(t, pub, map[string]any{"error.type": "unroutable"})
	m := collect(t, tel)
	wantCount(t, m, "messaging.client.consumed.messages", map[string]string{"messaging.destination.name": q.Name, "error.type": "_OTHER"}, 1)
	wantCount(t, m, "messaging.client.sent.messages", map[string]string{"messaging.destination.name": "nowhere", "error.type": "unroutable"}, 1)
}

func TestRetryContinuesTheTrace(t *testing.T) {
	tel := newTelemetry(t)
	conn := dial(t, "memory:///"+unique("otel"), tel)
	q := kombu.Queue{Name: unique("otelkombu.retry")}
	var mu sync.Mutex
	attempts := 0
	done := make(chan struct{})
	consume(t, conn, q, kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			return errors.New("first attempt fails")
		}
		close(done)
		return nil
	}), kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 1, IntervalStart: time.Millisecond}))
	ctx, caller := tel.tp.Tracer("test").Start(ctxT(t), "caller")
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name)).Publish(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	caller.End()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("retry not handled")
	}
	// caller, publish, process (failed), retry publish, process.
	spans := tel.waitSpans(t, 5)
	for _, s := range spans {
		if s.SpanContext().TraceID() != caller.SpanContext().TraceID() {
			t.Errorf("span %q left the trace: %s, want %s", s.Name(), s.SpanContext().TraceID(), caller.SpanContext().TraceID())
		}
	}
}

// collect reads the metrics recorded so far.
func collect(t *testing.T, tel *telemetry) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// wantCount checks that the metric has a data point with (at least) the
// attributes given whose count (a sum's value, a histogram's count) is n.
func wantCount(t *testing.T, rm metricdata.ResourceMetrics, name string, want map[string]string, n uint64) {
	t.Helper()
	matches := func(set attribute.Set) bool {
		for k, v := range want {
			got, ok := set.Value(attribute.Key(k))
			if !ok || got.String() != v {
				return false
			}
		}
		return true
	}
	var seen []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					seen = append(seen, fmt.Sprint(dp.Attributes.ToSlice(), dp.Value))
					if matches(dp.Attributes) && uint64(dp.Value) == n {
						return
					}
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					seen = append(seen, fmt.Sprint(dp.Attributes.ToSlice(), dp.Count))
					if matches(dp.Attributes) && dp.Count == n {
						return
					}
				}
			}
		}
	}
	t.Errorf("metric %s: no data point %v with count %d; saw %v", name, want, n, seen)
}

func TestLinkedProcessSpansStartTheirOwnTrace(t *testing.T) {
	tel := newTelemetry(t, otelkombu.WithLinkedProcessSpans())
	conn := dial(t, "memory:///"+unique("otel"), tel)
	q := kombu.Queue{Name: unique("otelkombu.linked")}
	handled := make(chan struct{}, 1)
	consume(t, conn, q, kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
		handled <- struct{}{}
		return nil
	}))
	ctx, caller := tel.tp.Tracer("test").Start(ctxT(t), "caller")
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name)).Publish(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	caller.End()
	<-handled
	spans := tel.waitSpans(t, 3)
	pub := find(t, spans, "publish "+q.Name, trace.SpanKindProducer)
	proc := find(t, spans, "process "+q.Name, trace.SpanKindConsumer)
	if proc.SpanContext().TraceID() == pub.SpanContext().TraceID() || proc.Parent().IsValid() {
		t.Errorf("process span in trace %s with parent %v, want a new root apart from the publish's trace %s",
			proc.SpanContext().TraceID(), proc.Parent().SpanID(), pub.SpanContext().TraceID())
	}
	linkedTo(t, proc, pub.SpanContext())
}
