package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Task is one task a TaskFunc runs: the parsed request and the message it
// came in.
type Task struct {
	*Request
	Message *kombu.Message
}

// TaskFunc runs a task and returns its JSON result (nil for None). An
// error fails the task (see TaskError to choose the Python exception), and
// Retry(...) asks for it to be retried.
type TaskFunc func(ctx context.Context, t *Task) (json.RawMessage, error)

// RetryError asks the worker to retry the task: it is sent again, as
// Celery's Task.retry does, with the same id, retries incremented and an
// ETA Countdown from now, and its state becomes RETRY. Past MaxRetries the
// task fails with MaxRetriesExceededError instead.
type RetryError struct {
	Err        error
	Countdown  time.Duration
	MaxRetries int // 0: Celery's default, 3; negative: no limit
}

func (e *RetryError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("celery: retry in %v", e.Countdown)
	}
	return fmt.Sprintf("celery: retry in %v: %v", e.Countdown, e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }

// Retry asks for the task to be retried after countdown (see RetryError).
func Retry(err error, countdown time.Duration) error {
	return &RetryError{Err: err, Countdown: countdown}
}

type taskEntry struct {
	fn       TaskFunc
	acksLate *bool
}

// Worker consumes Celery task messages from a queue and runs the tasks
// registered with it. Register every task before Run.
type Worker struct {
	conn        *kombu.Connection
	backend     Backend
	logger      *slog.Logger
	queue       string
	exchange    string
	routingKey  string
	concurrency int
	maxHeld     int
	acksLate    bool
	hard, soft  time.Duration

	tasks    map[string]taskEntry
	running  chan struct{}
	producer *kombu.Producer
	mu       sync.Mutex
	consumer *kombu.Consumer
}

// WorkerOption configures a Worker.
type WorkerOption func(*Worker)

// WithQueue sets the queue the worker consumes (and the direct exchange and
// routing key it is bound with, named after it, as Celery's -Q does).
// Default "celery".
func WithQueue(name string) WorkerOption {
	return func(w *Worker) { w.queue, w.exchange, w.routingKey = name, name, name }
}

// WithRoute sets the queue the worker consumes and the direct exchange and
// routing key it is bound with, for tasks sent with an exchange or routing
// key other than the queue's name (celery_task's exchange and routing_key).
func WithRoute(queue, exchange, routingKey string) WorkerOption {
	return func(w *Worker) {
		w.queue, w.exchange, w.routingKey = queue, exchange, routingKey
		if w.exchange == "" {
			w.exchange = queue
		}
		if w.routingKey == "" {
			w.routingKey = queue
		}
	}
}

// WithWorkerConcurrency sets how many tasks run at once (default the
// number of CPUs, as Celery's -c).
func WithWorkerConcurrency(n int) WorkerOption { return func(w *Worker) { w.concurrency = n } }

// WithMaxHeld sets how many messages the worker holds at once, running or
// waiting for their ETA (default 256). Tasks waiting for their ETA do not
// count against the concurrency, so they never keep due tasks waiting.
func WithMaxHeld(n int) WorkerOption { return func(w *Worker) { w.maxHeld = n } }

// WithAcksLate acknowledges a message after its task ran rather than
// before (Celery's task_acks_late): a worker that dies mid-task leaves the
// message to be delivered again.
func WithAcksLate(on bool) WorkerOption { return func(w *Worker) { w.acksLate = on } }

// WithTimeLimits sets the default hard and soft time limits of tasks whose
// messages set none (Celery's task_time_limit, task_soft_time_limit).
func WithTimeLimits(hard, soft time.Duration) WorkerOption {
	return func(w *Worker) { w.hard, w.soft = hard, soft }
}

// WithWorkerLogger sets the worker's logger.
func WithWorkerLogger(l *slog.Logger) WorkerOption { return func(w *Worker) { w.logger = l } }

// NewWorker makes a worker that reads tasks on conn and writes their
// results to backend (nil: results are not stored).
func NewWorker(conn *kombu.Connection, backend Backend, opts ...WorkerOption) *Worker {
	w := &Worker{
		conn: conn, backend: backend, logger: slog.Default(),
		queue: DefaultQueue, exchange: DefaultExchange, routingKey: DefaultRoutingKey,
		concurrency: runtime.NumCPU(), maxHeld: 256,
		tasks: map[string]taskEntry{}, producer: kombu.NewProducer(conn),
	}
	for _, o := range opts {
		o(w)
	}
	w.concurrency = max(w.concurrency, 1)
	w.maxHeld = max(w.maxHeld, w.concurrency)
	w.running = make(chan struct{}, w.concurrency)
	return w
}

// TaskOption configures one registered task.
type TaskOption func(*taskEntry)

// TaskAcksLate overrides the worker's WithAcksLate for one task (Celery's
// Task.acks_late).
func TaskAcksLate(on bool) TaskOption { return func(e *taskEntry) { e.acksLate = &on } }

// Register adds a task by name.
func (w *Worker) Register(name string, fn TaskFunc, opts ...TaskOption) {
	e := taskEntry{fn: fn}
	for _, o := range opts {
		o(&e)
	}
	w.tasks[name] = e
}

// RegisterProto adds a task whose arguments decode into a Req and whose
// result is a Resp, as the generated code does. Arguments that do not fit
// Req fail the task with Python's TypeError, saying why.
func RegisterProto[Req, Resp proto.Message](w *Worker, name string, fn func(ctx context.Context, req Req) (Resp, error), opts ...TaskOption) {
	w.Register(name, func(ctx context.Context, t *Task) (json.RawMessage, error) {
		var zero Req
		req := zero.ProtoReflect().New().Interface().(Req)
		if err := DecodeRequest(t.Request, req); err != nil {
			return nil, &TaskError{Type: "TypeError", Module: "builtins", Message: err.Error()}
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, err
		}
		if any(resp) == nil || !resp.ProtoReflect().IsValid() {
			return json.RawMessage("null"), nil
		}
		return EncodeResult(resp)
	}, opts...)
}

// Run consumes the worker's queue until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	ex := kombu.Exchange{Name: w.exchange, Type: kombu.ExchangeDirect}
	q := kombu.Queue{Name: w.queue, Bindings: []kombu.Binding{{Exchange: w.exchange, RoutingKey: w.routingKey}}}
	c, err := kombu.NewConsumer(w.conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(w.handle)}},
		kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{ex}}),
		kombu.WithConcurrency(w.maxHeld),
		// A task whose expires passed before it arrived is recorded as
		// revoked, as Celery's worker does, not dropped unseen: a client
		// waiting for its result learns at once.
		kombu.WithPastDeadlineHandler(kombu.HandlerFunc(w.handle)))
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.consumer = c
	w.mu.Unlock()
	return c.Run(ctx)
}

// handle runs one message; it settles the message itself, and returns an
// error only when the worker is stopping (the message is requeued).
func (w *Worker) handle(ctx context.Context, msg *kombu.Message) error {
	r, err := ParseMessage(msg)
	if err != nil {
		// Celery's on_invalid_task: logged and rejected, never acked.
		w.logger.Error("celery: received invalid task message; rejected", "queue", msg.DeliveryInfo.Queue,
			"task", r.Task, "id", r.ID, "error", err)
		w.settle(msg, msg.Reject(false))
		return nil
	}
	entry, ok := w.tasks[r.Task]
	if !ok {
		// Celery's on_unknown_task: logged, rejected, and FAILURE NotRegistered.
		w.logger.Error("celery: received unregistered task; rejected", "task", r.Task, "id", r.ID,
			"queue", msg.DeliveryInfo.Queue)
		w.settle(msg, msg.Reject(false))
		w.store(ctx, r, newMeta(r.ID, StateFailure,
			(&TaskError{Type: "NotRegistered", Module: "celery.exceptions", Message: pyQuote(r.Task)}).excResult(), ""))
		return nil
	}
	if !r.ETA.IsZero() {
		if wait := time.Until(r.ETA); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				if w.expired(r) {
					break
				}
				return ctx.Err() // the worker is stopping: the message goes back to its queue
			}
		}
	}
	if w.expired(r) {
		w.logger.Info("celery: task expired; revoked", "task", r.Task, "id", r.ID, "expires", r.Expires)
		w.store(ctx, r, newMeta(r.ID, StateRevoked,
			(&TaskError{Type: "TaskRevokedError", Module: "celery.exceptions", Message: "expired"}).excResult(), ""))
		w.settle(msg, msg.Ack())
		return nil
	}
	select {
	case w.running <- struct{}{}:
	case <-ctx.Done():
		if w.expired(r) {
			return w.handle(ctx, msg)
		}
		return ctx.Err()
	}
	defer func() { <-w.running }()
	late := w.acksLate
	if entry.acksLate != nil {
		late = *entry.acksLate
	}
	if !late {
		w.settle(msg, msg.Ack())
	}
	w.run(context.WithoutCancel(ctx), r, msg, entry)
	if msg.State() == kombu.StateUnsettled {
		w.settle(msg, msg.Ack())
	}
	return nil
}

func (w *Worker) expired(r *Request) bool {
	return !r.Expires.IsZero() && !time.Now().Before(r.Expires)
}

func (w *Worker) settle(msg *kombu.Message, err error) {
	if err != nil {
		w.logger.Error("celery: settle message", "queue", msg.DeliveryInfo.Queue, "error", err)
	}
}

func (w *Worker) store(ctx context.Context, r *Request, m *Meta) {
	if w.backend == nil || r.IgnoreResult {
		return
	}
	if err := w.backend.Store(context.WithoutCancel(ctx), r, m); err != nil {
		w.logger.Error("celery: store task state", "task", r.Task, "id", r.ID, "status", m.Status, "error", err)
	}
}

type outcome struct {
	result json.RawMessage
	err    error
	stack  string
}

// run runs the task within its time limits and writes its outcome.
func (w *Worker) run(ctx context.Context, r *Request, msg *kombu.Message, e taskEntry) {
	hard, soft := r.TimeLimit, r.SoftTimeLimit
	if hard <= 0 {
		hard = w.hard
	}
	if soft <= 0 {
		soft = w.soft
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if limit := firstPositive(soft, hard); limit > 0 {
		runCtx, cancel = context.WithTimeout(ctx, limit)
	}
	defer cancel()
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if p := recover(); p != nil {
				o = outcome{err: fmt.Errorf("panic: %v", p), stack: string(debug.Stack())}
			}
			done <- o
		}()
		o.result, o.err = e.fn(runCtx, &Task{Request: r, Message: msg})
	}()
	var o outcome
	if hard > 0 {
		t := time.NewTimer(hard)
		select {
		case o = <-done:
			t.Stop()
		case <-t.C:
			// The goroutine cannot be killed; its result, when it comes, is dropped.
			w.logger.Error("celery: hard time limit exceeded", "task", r.Task, "id", r.ID, "limit", hard)
			o = outcome{err: &TaskError{Type: "TimeLimitExceeded", Module: "celery.exceptions", Message: secondsText(hard)}}
		}
	} else {
		o = <-done
	}
	w.finish(ctx, r, msg, o)
}

func firstPositive(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}

func secondsText(d time.Duration) string {
	return fmt.Sprintf("%g", d.Seconds())
}

func (w *Worker) finish(ctx context.Context, r *Request, msg *kombu.Message, o outcome) {
	if o.err == nil {
		res := o.result
		if len(res) == 0 {
			res = json.RawMessage("null")
		}
		w.store(ctx, r, newMeta(r.ID, StateSuccess, res, ""))
		return
	}
	var retry *RetryError
	if errors.As(o.err, &retry) {
		maxRetries := retry.MaxRetries
		if maxRetries == 0 {
			maxRetries = 3
		}
		if maxRetries < 0 || r.Retries < maxRetries {
			if err := w.resend(ctx, r, msg, retry.Countdown); err == nil {
				exc := &TaskError{Type: "Retry", Module: "celery.exceptions", Message: retry.Error()}
				w.store(ctx, r, newMeta(r.ID, StateRetry, exc.excResult(), traceback(r, exc, "")))
				w.logger.Info("celery: task retried", "task", r.Task, "id", r.ID, "retries", r.Retries+1, "countdown", retry.Countdown)
				return
			} else {
				o.err = fmt.Errorf("retry failed: %w (task error: %v)", err, retry.Err)
			}
		} else {
			msgText := fmt.Sprintf("Can't retry %s[%s] args:%s kwargs:%s", r.Task, r.ID, repr(r.Args), repr(r.Kwargs))
			if retry.Err != nil {
				msgText = retry.Err.Error()
			}
			o.err = &TaskError{Type: "MaxRetriesExceededError", Module: "celery.exceptions", Message: msgText}
		}
	}
	var te *TaskError
	exc := &TaskError{Type: "Exception", Module: "builtins", Message: o.err.Error()}
	if errors.As(o.err, &te) && te.Type != "" {
		exc = te
	}
	w.logger.Error("celery: task failed", "task", r.Task, "id", r.ID, "error", o.err)
	w.store(ctx, r, newMeta(r.ID, StateFailure, exc.excResult(), traceback(r, exc, o.stack)))
}

// traceback is the text stored in the traceback field: Go has no Python
// traceback, so it names the task and the Go error (and a panic's stack).
func traceback(r *Request, exc *TaskError, stack string) string {
	s := fmt.Sprintf("Traceback (most recent call last):\n  Go task %s[%s]\n", r.Task, r.ID)
	if stack != "" {
		s += stack
	}
	if exc.Module != "" && exc.Module != "builtins" {
		return s + exc.Module + "." + exc.Type + ": " + exc.Message + "\n"
	}
	return s + exc.Type + ": " + exc.Message + "\n"
}

// resend sends the task again as Celery's retry does: same id and
// arguments, retries + 1, an ETA countdown from now, to the exchange and
// routing key it came with.
func (w *Worker) resend(ctx context.Context, r *Request, msg *kombu.Message, countdown time.Duration) error {
	n := *r
	n.Retries++
	n.ETA = time.Time{}
	if countdown > 0 {
		n.ETA = time.Now().Add(countdown)
	}
	n.ArgsRepr, n.KwargsRepr = "", ""
	headers, body, err := n.encode()
	if err != nil {
		return err
	}
	exchange, key := msg.DeliveryInfo.Exchange, msg.DeliveryInfo.RoutingKey
	if exchange == "" && key == "" {
		exchange, key = w.exchange, w.routingKey
	}
	opts := []kombu.PublishOption{
		kombu.WithRoutingKey(key), kombu.WithContentType("application/json", "utf-8"),
		kombu.WithHeaders(headers), kombu.WithCorrelationID(n.ID),
	}
	if exchange != "" {
		opts = append(opts, kombu.WithExchange(kombu.Exchange{Name: exchange, Type: kombu.ExchangeDirect}))
	}
	if n.ReplyTo != "" {
		opts = append(opts, kombu.WithReplyTo(n.ReplyTo))
	}
	if n.Priority > 0 {
		opts = append(opts, kombu.WithPriority(n.Priority))
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	return w.producer.Publish(sctx, body, opts...)
}
