package otelkombu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// python is the interpreter with Debian's python3-kombu (5.2), as in
// interop/. No OpenTelemetry package exists for it here: the peer,
// testdata/trace_peer.py, writes and reads the traceparent header itself.
const python = "/usr/bin/python3"

func requirePython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import kombu").CombinedOutput(); err != nil {
		brokertest.Unavailable(t, "Python Kombu not available ("+python+" -c 'import kombu': "+string(bytes.TrimSpace(out))+"); apt-get install python3-kombu")
	}
}

func tracePeer(t *testing.T, args ...string) map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command(python, append([]string{filepath.Join(filepath.Dir(file), "testdata", "trace_peer.py")}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("trace_peer.py %v: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("trace_peer.py output %q: %v", stdout.String(), err)
	}
	return out
}

// pythonTransports are the brokers both Kombus share.
var pythonTransports = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"rabbitmq", func(t *testing.T) string { return brokertest.AMQPURL(t) }},
	{"redis", func(t *testing.T) string { return brokertest.RedisURL(t) }},
}

// A Python Kombu publisher's trace is joined by the Go consumer's span.
func TestPythonPublisherTraceJoinedByGoConsumer(t *testing.T) {
	requirePython(t)
	for _, tr := range pythonTransports {
		t.Run(tr.name, func(t *testing.T) {
			url := tr.url(t)
			tel := newTelemetry(t)
			conn := dial(t, url, tel)
			q := kombu.Queue{Name: unique("otelkombu.frompy")}
			handled := make(chan trace.SpanContext, 1)
			consume(t, conn, q, kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
				handled <- trace.SpanContextFromContext(ctx)
				return nil
			}))
			py := tracePeer(t, "publish", url, q.Name)
			var inHandler trace.SpanContext
			select {
			case inHandler = <-handled:
			case <-time.After(20 * time.Second):
				t.Fatal("Python's message not handled")
			}
			spans := tel.waitSpans(t, 1)
			proc := find(t, spans, "process "+q.Name, trace.SpanKindConsumer)
			if got := proc.SpanContext().TraceID().String(); got != py["trace_id"] {
				t.Errorf("Go's process span is in trace %s, want Python's %v", got, py["trace_id"])
			}
			if got := proc.Parent().SpanID().String(); got != py["span_id"] {
				t.Errorf("Go's process span's parent is %s, want Python's span %v", got, py["span_id"])
			}
			if !proc.Parent().IsRemote() {
				t.Errorf("the parent should be remote (from the message's headers)")
			}
			if got := proc.Parent().TraceState().String(); got != "py=kombu" {
				t.Errorf("tracestate %q, want Python's py=kombu", got)
			}
			if len(proc.Links()) != 1 || proc.Links()[0].SpanContext.SpanID().String() != py["span_id"] {
				t.Errorf("process span links %v, want one to Python's span", proc.Links())
			}
			if inHandler.TraceID() != proc.SpanContext().TraceID() {
				t.Errorf("the handler's context is not in the process span's trace")
			}
		})
	}
}

// Python Kombu reads the traceparent Go's publish span wrote.
func TestGoPublisherTraceReadByPython(t *testing.T) {
	requirePython(t)
	for _, tr := range pythonTransports {
		t.Run(tr.name, func(t *testing.T) {
			url := tr.url(t)
			tel := newTelemetry(t)
			conn := dial(t, url, tel)
			q := kombu.Queue{Name: unique("otelkombu.topy")}
			if _, err := q.Declare(ctxT(t), conn); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = q.Delete(context.Background(), conn) })
			ctx, caller := tel.tp.Tracer("test").Start(ctxT(t), "caller")
			if err := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name)).Publish(ctx, map[string]string{"from": "go"}); err != nil {
				t.Fatal(err)
			}
			caller.End()
			py := tracePeer(t, "consume", url, q.Name)
			pub := find(t, tel.waitSpans(t, 2), "publish "+q.Name, trace.SpanKindProducer)
			if py["trace_id"] != pub.SpanContext().TraceID().String() || py["parent_id"] != pub.SpanContext().SpanID().String() {
				t.Errorf("Python read trace %v parent %v, want Go's publish span %s/%s",
					py["trace_id"], py["parent_id"], pub.SpanContext().TraceID(), pub.SpanContext().SpanID())
			}
			if py["sampled"] != true {
				t.Errorf("Python read sampled=%v, want true", py["sampled"])
			}
			if pub.SpanContext().TraceID() != caller.SpanContext().TraceID() {
				t.Errorf("publish span not in the caller's trace")
			}
		})
	}
}
