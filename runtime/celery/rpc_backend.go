package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	kombu "github.com/kombu-go/kombu/runtime"
)

// RPCBackend is Celery's rpc:// result backend. A worker sends each state
// of a task as a message to the caller's reply queue (the task's
// reply_to), through the default exchange, with correlation_id = the task
// id, transient, as JSON {"task_id", "status", "result", "traceback",
// "children"}. A client has one reply queue (non-durable, auto-delete, a
// UUID name, as Celery's app.thread_oid), declared on its first send, and
// reads the states of all its tasks from it.
//
// States are in the client's memory only: Meta and Wait know the tasks
// this client sent (or that were sent with its reply queue).
type RPCBackend struct {
	conn     *kombu.Connection
	logger   *slog.Logger
	queue    string
	producer *kombu.Producer

	once    sync.Once
	started chan struct{}
	err     error
	stop    context.CancelFunc

	mu      sync.Mutex
	states  map[string]*Meta
	waiters map[string][]chan struct{}
}

// NewRPCBackend makes the rpc:// backend on conn (the broker connection).
func NewRPCBackend(conn *kombu.Connection, logger *slog.Logger) *RPCBackend {
	if logger == nil {
		logger = slog.Default()
	}
	return &RPCBackend{
		conn: conn, logger: logger, queue: NewID(), producer: kombu.NewProducer(conn),
		started: make(chan struct{}),
		states:  map[string]*Meta{}, waiters: map[string][]chan struct{}{},
	}
}

// ReplyTo is the client's reply queue.
func (b *RPCBackend) ReplyTo() string { return b.queue }

// prepare declares the reply queue and starts reading it, once.
func (b *RPCBackend) prepare(ctx context.Context) error {
	b.once.Do(func() {
		q := kombu.Queue{Name: b.queue, Transient: true, AutoDelete: true}
		if _, err := q.Declare(ctx, b.conn); err != nil {
			b.err = fmt.Errorf("celery: rpc:// reply queue: %w", err)
			close(b.started)
			return
		}
		cons, err := kombu.NewConsumer(b.conn, []kombu.Subscription{{Queue: q, Handler: kombu.HandlerFunc(b.receive)}},
			kombu.WithAutoAck(), kombu.WithConcurrency(1))
		if err != nil {
			b.err = fmt.Errorf("celery: rpc:// reply queue: %w", err)
			close(b.started)
			return
		}
		runCtx, cancel := context.WithCancel(context.Background())
		b.stop = cancel
		go func() {
			if err := cons.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				b.logger.Error("celery: rpc:// reply consumer stopped", "queue", b.queue, "error", err)
			}
		}()
		close(b.started)
	})
	<-b.started
	return b.err
}

func (b *RPCBackend) receive(_ context.Context, msg *kombu.Message) error {
	var m Meta
	if err := json.Unmarshal(msg.Body, &m); err != nil || m.Status == "" {
		b.logger.Error("celery: rpc:// reply is not a result document; dropped", "queue", b.queue,
			"correlation_id", msg.Properties.CorrelationID)
		return nil
	}
	if m.TaskID == "" {
		m.TaskID = msg.Properties.CorrelationID
	}
	b.mu.Lock()
	if cur, ok := b.states[m.TaskID]; !ok || !cur.Ready() { // a final state is kept, as Celery keeps a SUCCESS
		b.states[m.TaskID] = &m
	}
	ws := b.waiters[m.TaskID]
	delete(b.waiters, m.TaskID)
	b.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
	return nil
}

// Meta returns the last state received for the task; PENDING before any.
func (b *RPCBackend) Meta(_ context.Context, id string) (*Meta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := b.states[id]; ok {
		return m, nil
	}
	return &Meta{TaskID: id, Status: StatePending, Result: json.RawMessage("null")}, nil
}

// Wait blocks until a final state of the task arrives, or ctx ends.
func (b *RPCBackend) Wait(ctx context.Context, id string) (*Meta, error) {
	if err := b.prepare(ctx); err != nil {
		return nil, err
	}
	for {
		b.mu.Lock()
		if m, ok := b.states[id]; ok && m.Ready() {
			b.mu.Unlock()
			return m, nil
		}
		w := make(chan struct{})
		b.waiters[id] = append(b.waiters[id], w)
		b.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return nil, backendErr("wait for", id, ctx.Err())
		}
	}
}

// Forget drops the task's state from memory.
func (b *RPCBackend) Forget(_ context.Context, id string) error {
	b.mu.Lock()
	delete(b.states, id)
	b.mu.Unlock()
	return nil
}

// Store sends meta to the caller's reply queue; a task sent without
// reply_to has no caller to tell, as in Celery.
func (b *RPCBackend) Store(ctx context.Context, req *Request, meta *Meta) error {
	if req == nil || req.ReplyTo == "" {
		return nil
	}
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	corr := req.CorrelationID
	if corr == "" {
		corr = meta.TaskID
	}
	doc := map[string]any{
		"task_id": meta.TaskID, "status": meta.Status, "result": meta.Result,
		"traceback": meta.Traceback, "children": meta.Children,
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return backendErr("encode", meta.TaskID, fmt.Errorf("%w: %v", kombu.ErrEncode, err))
	}
	err = b.producer.Publish(ctx, body, kombu.WithRoutingKey(req.ReplyTo), kombu.WithCorrelationID(corr),
		kombu.WithContentType("application/json", "utf-8"), kombu.WithDeliveryMode(kombu.Transient))
	if err != nil {
		return backendErr("send", meta.TaskID, err)
	}
	return nil
}

// Close stops reading the reply queue (which the broker then deletes).
func (b *RPCBackend) Close() error {
	if b.stop != nil {
		b.stop()
	}
	return nil
}
