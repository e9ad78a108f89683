package interop_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/celery"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/redis"
)

// celeryEnv is one broker and result backend both sides use, with a queue
// of the test's own.
type celeryEnv struct {
	broker, backend string // URLs as Python Celery takes them
	queue           string
}

func requireCelery(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import celery").CombinedOutput(); err != nil {
		brokertest.Unavailable(t, "Python Celery not available ("+python+" -c 'import celery': "+string(bytes.TrimSpace(out))+"); apt-get install python3-celery")
	}
}

func celeryScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "celery_peer.py")
}

func uniqueQueue(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// celeryEnvs are the broker/backend pairs the interop tests run on.
func celeryEnvs(t *testing.T) map[string]func(t *testing.T) celeryEnv {
	return map[string]func(t *testing.T) celeryEnv{
		"redis": func(t *testing.T) celeryEnv {
			u := brokertest.RedisURL(t)
			return celeryEnv{broker: u, backend: u}
		},
		"amqp-redis": func(t *testing.T) celeryEnv {
			return celeryEnv{broker: brokertest.AMQPURL(t), backend: brokertest.RedisURL(t)}
		},
		"amqp-rpc": func(t *testing.T) celeryEnv {
			return celeryEnv{broker: brokertest.AMQPURL(t), backend: "rpc://"}
		},
		"redis-rpc": func(t *testing.T) celeryEnv {
			return celeryEnv{broker: brokertest.RedisURL(t), backend: "rpc://"}
		},
	}
}

func (e celeryEnv) environ() []string {
	return append(os.Environ(), "CELERY_BROKER="+e.broker, "CELERY_BACKEND="+e.backend, "CELERY_QUEUE="+e.queue)
}

// startPyWorker runs a Python Celery worker on the env's queue until the
// test ends.
func startPyWorker(t *testing.T, e celeryEnv) {
	t.Helper()
	cmd := exec.Command(python, celeryScript(), "worker")
	cmd.Env = e.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("python worker output:\n%s", out.String())
		}
	})
}

type pyResult struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	Result     json.RawMessage `json:"result"`
	ExcType    string          `json:"exc_type"`
	ExcMessage string          `json:"exc_message"`
}

// pyCall has Python Celery send the calls and wait for their results.
func pyCall(t *testing.T, e celeryEnv, calls []map[string]any) []pyResult {
	t.Helper()
	in, _ := json.Marshal(calls)
	cmd := exec.Command(python, celeryScript(), "call")
	cmd.Env = e.environ()
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python call: %v\n%s", err, stderr.String())
	}
	var res []pyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python call output %q: %v\n%s", out, err, stderr.String())
	}
	return res
}

func dialCelery(t *testing.T, e celeryEnv) (*kombu.Connection, celery.Backend) {
	t.Helper()
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, e.broker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kombu.Queue{Name: e.queue}.Delete(ctx, conn)
		conn.Close()
	})
	var b celery.Backend
	if e.backend == "rpc://" {
		b = celery.NewRPCBackend(conn, nil)
	} else {
		rb, err := celery.NewRedisBackend(e.backend)
		if err != nil {
			t.Fatal(err)
		}
		b = rb
	}
	t.Cleanup(func() { b.Close() })
	return conn, b
}

func raw(t *testing.T, v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCeleryGoClientPythonWorker: a Python Celery worker runs tasks the Go
// client sends, and the Go client reads their results and failures.
func TestCeleryGoClientPythonWorker(t *testing.T) {
	requireCelery(t)
	for name, mk := range celeryEnvs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := mk(t)
			e.queue = uniqueQueue("kgi-celery-py")
			conn, backend := dialCelery(t, e)
			client := celery.NewClient(conn, celery.WithBackend(backend))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			spec := func(task string) celery.TaskSpec { return celery.TaskSpec{Name: task, Queue: e.queue} }

			add, err := client.Send(ctx, spec("interop.add"), nil, map[string]json.RawMessage{"x": raw(t, 2), "y": raw(t, 40)})
			if err != nil {
				t.Fatal(err)
			}
			addPos, err := client.Send(ctx, spec("interop.add"), []json.RawMessage{raw(t, 1), raw(t, 2)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			fail, err := client.Send(ctx, spec("interop.fail"), []json.RawMessage{raw(t, "boom")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			flaky, err := client.Send(ctx, spec("interop.flaky"), []json.RawMessage{raw(t, 2)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			later, err := client.Send(ctx, spec("interop.add"), []json.RawMessage{raw(t, 5), raw(t, 5)}, nil, celery.Countdown(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			expired, err := client.Send(ctx, spec("interop.add"), []json.RawMessage{raw(t, 1), raw(t, 1)}, nil,
				celery.Countdown(3*time.Second), celery.Expires(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			echo, err := client.Send(ctx, spec("interop.echo"), nil, map[string]json.RawMessage{"a": raw(t, 1)})
			if err != nil {
				t.Fatal(err)
			}
			startPyWorker(t, e)

			got, err := celery.Result[*wrapperspb.Int64Value]{AsyncResult: add}.Get(ctx)
			if err != nil || got.GetValue() != 42 {
				t.Fatalf("add(x=2, y=40) = %v, %v; want 42", got, err)
			}
			if got, err := (celery.Result[*wrapperspb.Int64Value]{AsyncResult: addPos}).Get(ctx); err != nil || got.GetValue() != 3 {
				t.Fatalf("add(1, 2) = %v, %v; want 3", got, err)
			}
			_, err = fail.Wait(ctx)
			var te *celery.TaskError
			if !errors.As(err, &te) || !errors.Is(err, celery.ErrTaskFailed) || te.Type != "ValueError" || te.Message != "boom" ||
				!strings.Contains(te.Traceback, "ValueError") || te.TaskID != fail.ID {
				t.Fatalf("fail('boom') = %v (%+v); want a TaskError ValueError boom with a traceback", err, te)
			}
			if got, err := (celery.Result[*wrapperspb.Int64Value]{AsyncResult: flaky}).Get(ctx); err != nil || got.GetValue() != 2 {
				t.Fatalf("flaky(2) = %v, %v; want 2 (retried twice)", got, err)
			}
			if got, err := (celery.Result[*wrapperspb.Int64Value]{AsyncResult: later}).Get(ctx); err != nil || got.GetValue() != 10 {
				t.Fatalf("add(5, 5) countdown 2s = %v, %v; want 10", got, err)
			}
			if el := time.Since(sent); el < 2*time.Second {
				t.Fatalf("task with a 2s countdown done after %v", el)
			}
			_, err = expired.Wait(ctx)
			if !errors.As(err, &te) || te.Status != celery.StateRevoked {
				t.Fatalf("expired task = %v; want REVOKED", err)
			}
			if r, err := echo.Wait(ctx); err != nil || string(r) != `{"a": 1}` && string(r) != `{"a":1}` {
				t.Fatalf("echo(a=1) = %s, %v", r, err)
			}
			if st, err := echo.Status(ctx); err != nil || st != celery.StateSuccess {
				t.Fatalf("status = %q, %v", st, err)
			}
			// A result that does not fit the reply type: a typed error naming the task and id.
			_, err = celery.Result[*wrapperspb.Int64Value]{AsyncResult: echo}.Get(ctx)
			if !errors.Is(err, celery.ErrResultDecode) || !errors.Is(err, kombu.ErrDecode) || !strings.Contains(err.Error(), echo.ID) {
				t.Fatalf("echo's dict into Int64Value: %v; want ErrResultDecode naming %s", err, echo.ID)
			}
		})
	}
}

// TestCeleryPythonClientGoWorker: a Go worker runs tasks Python's send_task
// and delay send, and Python's AsyncResult.get() reads what it wrote.
func TestCeleryPythonClientGoWorker(t *testing.T) {
	requireCelery(t)
	for name, mk := range celeryEnvs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := mk(t)
			e.queue = uniqueQueue("kgi-celery-go")
			conn, backend := dialCelery(t, e)
			w := celery.NewWorker(conn, backend, celery.WithQueue(e.queue), celery.WithWorkerConcurrency(2))
			var mu sync.Mutex
			flakyRuns := 0
			w.Register("interop.add", func(ctx context.Context, task *celery.Task) (json.RawMessage, error) {
				var x, y int64
				if len(task.Args) == 2 {
					json.Unmarshal(task.Args[0], &x)
					json.Unmarshal(task.Args[1], &y)
				} else {
					if json.Unmarshal(task.Kwargs["x"], &x) != nil || json.Unmarshal(task.Kwargs["y"], &y) != nil {
						return nil, &celery.TaskError{Type: "TypeError", Module: "builtins", Message: "add takes x and y"}
					}
				}
				return json.Marshal(x + y)
			})
			w.Register("interop.fail", func(ctx context.Context, task *celery.Task) (json.RawMessage, error) {
				var m string
				json.Unmarshal(task.Args[0], &m)
				return nil, &celery.TaskError{Type: "ValueError", Module: "builtins", Message: m}
			})
			w.Register("interop.goerror", func(ctx context.Context, task *celery.Task) (json.RawMessage, error) {
				return nil, errors.New("plain go error")
			})
			w.Register("interop.flaky", func(ctx context.Context, task *celery.Task) (json.RawMessage, error) {
				mu.Lock()
				flakyRuns++
				mu.Unlock()
				if task.Retries < 2 {
					return nil, celery.Retry(fmt.Errorf("not yet (%d)", task.Retries), 500*time.Millisecond)
				}
				return json.Marshal(task.Retries)
			})
			w.Register("interop.echo", func(ctx context.Context, task *celery.Task) (json.RawMessage, error) {
				return json.Marshal(task.Kwargs)
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("worker: %v", err)
				}
			}()

			start := time.Now()
			res := pyCall(t, e, []map[string]any{
				{"task": "interop.add", "args": []any{2, 40}},
				{"task": "interop.add", "kwargs": map[string]any{"x": 1, "y": 2}, "delay": true},
				{"task": "interop.fail", "args": []any{"boom"}},
				{"task": "interop.goerror"},
				{"task": "interop.flaky"},
				{"task": "interop.add", "args": []any{5, 5}, "countdown": 2},
				{"task": "interop.add", "args": []any{1, 1}, "countdown": 3, "expires": 1},
				{"task": "interop.add", "args": []any{1, 1}, "expires": -5}, // expired before it was sent
				{"task": "interop.echo", "kwargs": map[string]any{"s": "x"}},
				{"task": "interop.add", "kwargs": map[string]any{"z": 1}},
			})
			want := []struct{ status, result, excType string }{
				{"SUCCESS", "42", ""},
				{"SUCCESS", "3", ""},
				{"FAILURE", "", "ValueError"},
				{"FAILURE", "", "Exception"},
				{"SUCCESS", "2", ""},
				{"SUCCESS", "10", ""},
				{"REVOKED", "", "TaskRevokedError"},
				{"REVOKED", "", "TaskRevokedError"},
				{"SUCCESS", `{"s": "x"}`, ""},
				{"FAILURE", "", "TypeError"},
			}
			for i, w := range want {
				r := res[i]
				if r.Status != w.status || w.result != "" && string(r.Result) != w.result || r.ExcType != w.excType {
					t.Errorf("call %d: got %+v (result %s); want %+v", i, r, r.Result, w)
				}
			}
			if res[2].ExcMessage != "boom" || res[3].ExcMessage != "plain go error" {
				t.Errorf("failure messages: %q, %q", res[2].ExcMessage, res[3].ExcMessage)
			}
			if time.Since(start) < 2*time.Second {
				t.Errorf("the countdown task finished before its countdown")
			}
			mu.Lock()
			if flakyRuns != 3 {
				t.Errorf("flaky ran %d times; want 3 (two retries)", flakyRuns)
			}
			mu.Unlock()
		})
	}
}
