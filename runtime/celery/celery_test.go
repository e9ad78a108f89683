package celery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	celeryv1 "github.com/kombu-go/kombu/gen/examples/celery/v1"
	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/celery"
	_ "github.com/kombu-go/kombu/transports/redis"
)

func TestRequestArgs(t *testing.T) {
	req := &celeryv1.AddRequest{X: 0, Y: 40}
	_, kwargs, err := celery.RequestArgs(req, celery.Kwargs)
	if err != nil {
		t.Fatal(err)
	}
	if string(kwargs["x"]) != "0" || string(kwargs["y"]) != "40" || len(kwargs) != 2 {
		t.Fatalf("kwargs = %s; want x=0 (zero values are sent), y=40", kwargs)
	}
	args, _, err := celery.RequestArgs(req, celery.Positional)
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != 2 || string(args[0]) != "0" || string(args[1]) != "40" {
		t.Fatalf("args = %s; want [0, 40] in field-number order", args)
	}
}

func TestDecodeRequest(t *testing.T) {
	var got celeryv1.AddRequest
	r := &celery.Request{Task: "t", Args: []json.RawMessage{json.RawMessage("2")}, Kwargs: map[string]json.RawMessage{"y": json.RawMessage("40")}}
	if err := celery.DecodeRequest(r, &got); err != nil || got.X != 2 || got.Y != 40 {
		t.Fatalf("DecodeRequest = %v, %v", &got, err)
	}
	for name, r := range map[string]*celery.Request{
		"unknown kwarg": {Task: "t", Kwargs: map[string]json.RawMessage{"z": json.RawMessage("1")}},
		"too many args": {Task: "t", Args: []json.RawMessage{json.RawMessage("1"), json.RawMessage("2"), json.RawMessage("3")}},
		"wrong type":    {Task: "t", Kwargs: map[string]json.RawMessage{"x": json.RawMessage(`"two"`)}},
		"given twice":   {Task: "t", Args: []json.RawMessage{json.RawMessage("1")}, Kwargs: map[string]json.RawMessage{"x": json.RawMessage("1")}},
	} {
		var m celeryv1.AddRequest
		if err := celery.DecodeRequest(r, &m); !errors.Is(err, celery.ErrArguments) || !errors.Is(err, kombu.ErrDecode) {
			t.Errorf("%s: %v; want ErrArguments", name, err)
		}
	}
}

func TestResults(t *testing.T) {
	if got, err := celery.EncodeResult(&celeryv1.GreetReply{Greeting: "hi"}); err != nil || string(got) != `"hi"` {
		t.Errorf("a one-field reply = %s, %v; want the plain value", got, err)
	}
	if got, err := celery.EncodeResult(wrapperspb.Int64(1 << 60)); err != nil || string(got) != "1152921504606846976" {
		t.Errorf("an Int64Value = %s, %v; want a JSON number", got, err)
	}
	var sum celeryv1.AddReply
	if err := celery.DecodeResult(json.RawMessage("42"), &sum); err != nil || sum.Sum != 42 {
		t.Errorf("42 into AddReply = %v, %v", &sum, err)
	}
	if err := celery.DecodeResult(json.RawMessage(`{"sum": 7, "extra": 1}`), &sum); err != nil || sum.Sum != 7 {
		t.Errorf("an object into AddReply = %v, %v", &sum, err)
	}
	if err := celery.DecodeResult(json.RawMessage(`{"a": 1}`), wrapperspb.Int64(0)); err == nil {
		t.Error("an object into Int64Value decoded")
	}
}

func TestParseMessage(t *testing.T) {
	v2 := &kombu.Message{
		Body:       []byte(`[[1, 2], {"z": 3}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		Headers:    map[string]any{"task": "proj.add", "id": "abc", "retries": int64(2), "eta": "2030-01-02T03:04:05.000001+00:00", "timelimit": []any{10.0, 5.0}},
		Properties: kombu.Properties{ContentType: "application/json", ReplyTo: "q1", CorrelationID: "abc"},
	}
	r, err := celery.ParseMessage(v2)
	if err != nil || r.Task != "proj.add" || r.ID != "abc" || len(r.Args) != 2 || string(r.Kwargs["z"]) != "3" ||
		r.Retries != 2 || r.ETA.Year() != 2030 || r.TimeLimit != 10*time.Second || r.SoftTimeLimit != 5*time.Second || r.ReplyTo != "q1" {
		t.Fatalf("v2: %+v, %v", r, err)
	}
	v1 := &kombu.Message{Body: []byte(`{"task": "proj.add", "id": "def", "args": [1], "kwargs": {}, "retries": 0, "eta": null}`),
		Properties: kombu.Properties{ContentType: "application/json"}}
	if r, err := celery.ParseMessage(v1); err != nil || r.Task != "proj.add" || r.ID != "def" || len(r.Args) != 1 {
		t.Fatalf("v1: %+v, %v", r, err)
	}
	for name, m := range map[string]*kombu.Message{
		"body not a list": {Body: []byte(`{"a": 1}`), Headers: map[string]any{"task": "t", "id": "1"}},
		"two elements":    {Body: []byte(`[[], {}]`), Headers: map[string]any{"task": "t", "id": "1"}},
		"args not a list": {Body: []byte(`[1, {}, {}]`), Headers: map[string]any{"task": "t", "id": "1"}},
		"no id":           {Body: []byte(`[[], {}, {}]`), Headers: map[string]any{"task": "t"}},
		"bad eta":         {Body: []byte(`[[], {}, {}]`), Headers: map[string]any{"task": "t", "id": "1", "eta": "tomorrow"}},
		"v1 without task": {Body: []byte(`{"id": "1"}`)},
		"not JSON":        {Body: []byte(`\x80\x81`), Properties: kombu.Properties{ContentType: "application/x-python-serialize"}},
	} {
		if _, err := celery.ParseMessage(m); !errors.Is(err, celery.ErrMalformed) || !errors.Is(err, kombu.ErrDecode) {
			t.Errorf("%s: %v; want ErrMalformed", name, err)
		}
	}
}

func TestMetaErr(t *testing.T) {
	tb := "Traceback ...\nValueError: boom"
	m := &celery.Meta{TaskID: "1", Status: celery.StateFailure, Traceback: &tb,
		Result: json.RawMessage(`{"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}`)}
	var te *celery.TaskError
	if err := m.Err("t"); !errors.As(err, &te) || te.Type != "ValueError" || te.Module != "builtins" || te.Message != "boom" || te.Traceback != tb {
		t.Fatalf("Err = %v (%+v)", err, te)
	}
	if (&celery.Meta{Status: celery.StateSuccess}).Err("t") != nil {
		t.Fatal("SUCCESS is an error")
	}
}

// An unreachable result backend fails within the caller's context.
func TestUnreachableBackend(t *testing.T) {
	b, err := celery.NewRedisBackend("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ar := celery.NewAsyncResult(celery.NewID(), "t", b)
	if _, err := ar.Wait(ctx); err == nil || !strings.Contains(err.Error(), ar.ID) {
		t.Fatalf("Wait on an unreachable backend: %v", err)
	}
	if _, err := ar.Status(ctx); err == nil {
		t.Fatal("Status on an unreachable backend succeeded")
	}
	if _, err := celery.NewRedisBackend("redis://user:secret@[::1"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad URL: %v (must fail without the password)", err)
	}
}

// logBuffer collects a worker's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type adder struct{}

func (adder) Add(ctx context.Context, r *celeryv1.AddRequest) (*celeryv1.AddReply, error) {
	if r.X < 0 {
		<-ctx.Done() // runs past its time limit
		time.Sleep(time.Second)
	}
	return &celeryv1.AddReply{Sum: r.X + r.Y}, nil
}

// A Go worker given bad input logs and rejects what is not a task, fails
// what does not fit, and goes on with the next task.
func TestWorkerBadInput(t *testing.T) {
	url := brokertest.RedisURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.NewRedisBackend(url)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	queue := "kgi-celery-bad-" + celery.NewID()
	defer kombu.Queue{Name: queue}.Delete(context.Background(), conn)
	var logs logBuffer
	w := celery.NewWorker(conn, backend, celery.WithQueue(queue),
		celery.WithWorkerLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	celery.RegisterProto(w, "t.add", adder{}.Add)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()

	client := celery.NewClient(conn, celery.WithBackend(backend))
	spec := celery.TaskSpec{Name: "t.add", Queue: queue}
	p := kombu.NewProducer(conn, kombu.WithExchange(kombu.Exchange{Name: queue, Type: kombu.ExchangeDirect}),
		kombu.WithDeclare(kombu.Queue{Name: queue, Bindings: []kombu.Binding{{Exchange: queue, RoutingKey: queue}}}))
	malformedID := celery.NewID()
	if err := p.Publish(ctx, []byte(`{"not": "a task"`), kombu.WithRoutingKey(queue), kombu.WithContentType("application/json", "utf-8"),
		kombu.WithHeaders(map[string]any{"task": "t.add", "id": malformedID})); err != nil {
		t.Fatal(err)
	}
	unknown, err := client.Send(ctx, celery.TaskSpec{Name: "t.nope", Queue: queue}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	misfit, err := client.Send(ctx, spec, nil, map[string]json.RawMessage{"z": json.RawMessage("1")})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := celery.Call[*celeryv1.AddReply](ctx, client, spec, &celeryv1.AddRequest{X: -1}, celery.TimeLimit(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	good, err := celery.Call[*celeryv1.AddReply](ctx, client, spec, &celeryv1.AddRequest{X: 2, Y: 3})
	if err != nil {
		t.Fatal(err)
	}

	if got, err := good.Get(ctx); err != nil || got.Sum != 5 {
		t.Fatalf("the good task after the bad ones: %v, %v", got, err)
	}
	var te *celery.TaskError
	if _, err := unknown.Wait(ctx); !errors.As(err, &te) || te.Type != "NotRegistered" {
		t.Errorf("unknown task: %v; want FAILURE NotRegistered", err)
	}
	if _, err := misfit.Wait(ctx); !errors.As(err, &te) || te.Type != "TypeError" || !strings.Contains(te.Message, `unexpected keyword argument "z"`) {
		t.Errorf("kwargs that do not fit: %v; want FAILURE TypeError naming z", err)
	}
	if _, err := slow.Get(ctx); !errors.As(err, &te) || te.Type != "TimeLimitExceeded" {
		t.Errorf("task past its hard time limit: %v; want TimeLimitExceeded", err)
	}
	if st, _ := celery.NewAsyncResult(malformedID, "t.add", backend).Status(ctx); st != celery.StatePending {
		t.Errorf("malformed message: state %s; want none written", st)
	}
	for _, want := range []string{"invalid task message; rejected", malformedID, "unregistered task; rejected", unknown.ID} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if n, err := (kombu.Queue{Name: queue}).Declare(ctx, conn); err == nil && n.Messages != 0 {
		t.Errorf("%d messages left in the queue", n.Messages)
	}
}

// A task waiting for its ETA does not keep a due task waiting, even at a
// concurrency of one; a retried task comes back with retries incremented.
func TestWorkerETAAndRetry(t *testing.T) {
	url := brokertest.RedisURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	backend, err := celery.NewRedisBackend(url)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	queue := "kgi-celery-eta-" + celery.NewID()
	defer kombu.Queue{Name: queue}.Delete(context.Background(), conn)
	w := celery.NewWorker(conn, backend, celery.WithQueue(queue), celery.WithWorkerConcurrency(1), celery.WithAcksLate(true))
	var mu sync.Mutex
	var retries []int
	celery.RegisterProto(w, "t.add", func(ctx context.Context, r *celeryv1.AddRequest) (*celeryv1.AddReply, error) {
		return &celeryv1.AddReply{Sum: r.X + r.Y}, nil
	})
	w.Register("t.flaky", func(ctx context.Context, task *celery.Task) (json.RawMessage, error) {
		mu.Lock()
		retries = append(retries, task.Retries)
		mu.Unlock()
		if task.Retries < 2 {
			return nil, celery.Retry(errors.New("not yet"), 10*time.Millisecond)
		}
		return json.RawMessage(`"done"`), nil
	})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()

	client := celery.NewClient(conn, celery.WithBackend(backend))
	spec := celery.TaskSpec{Name: "t.add", Queue: queue}
	later, err := celery.Call[*celeryv1.AddReply](ctx, client, spec, &celeryv1.AddRequest{X: 1, Y: 1}, celery.Countdown(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	now, err := celery.Call[*celeryv1.AddReply](ctx, client, spec, &celeryv1.AddRequest{X: 2, Y: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := now.Get(ctx); err != nil || got.Sum != 4 {
		t.Fatalf("the due task: %v, %v", got, err)
	}
	if ready, err := later.Ready(ctx); err != nil || ready {
		t.Fatalf("the task due in 5s is ready (%v, %v) when the one sent after it finished", ready, err)
	}
	flaky, err := client.Send(ctx, celery.TaskSpec{Name: "t.flaky", Queue: queue}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := flaky.Wait(ctx); err != nil || string(got) != `"done"` {
		t.Fatalf("flaky: %s, %v", got, err)
	}
	mu.Lock()
	if len(retries) != 3 || retries[0] != 0 || retries[1] != 1 || retries[2] != 2 {
		t.Errorf("flaky ran with retries %v; want [0 1 2]", retries)
	}
	mu.Unlock()
	if got, err := later.Get(ctx); err != nil || got.Sum != 2 {
		t.Fatalf("the countdown task: %v, %v", got, err)
	}
	if err := later.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := later.Status(ctx); st != celery.StatePending {
		t.Errorf("after Forget: %s; want PENDING", st)
	}
}
