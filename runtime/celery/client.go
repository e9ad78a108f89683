package celery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	kombu "github.com/kombu-go/kombu/runtime"
)

// Client sends tasks. It is safe for concurrent use.
type Client struct {
	conn      *kombu.Connection
	backend   Backend
	logger    *slog.Logger
	origin    string
	confirms  bool
	producers sync.Map // route → *kombu.Producer
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithBackend sets where the client reads results (and, for rpc://, where
// workers send them). Without one, AsyncResult.Get fails with ErrIgnored.
func WithBackend(b Backend) ClientOption { return func(c *Client) { c.backend = b } }

// WithClientLogger sets the client's logger.
func WithClientLogger(l *slog.Logger) ClientOption { return func(c *Client) { c.logger = l } }

// WithConfirms sets whether a send waits for the broker's publisher
// confirm (on brokers that have them, such as RabbitMQ). On by default, as
// kombu-go's producers are: a task the broker did not take is an error.
// Celery does not wait by default (its broker_transport_options
// confirm_publish): WithConfirms(false) sends as it does, several times
// faster on RabbitMQ, and loses a task the broker drops.
func WithConfirms(on bool) ClientOption { return func(c *Client) { c.confirms = on } }

// WithOrigin sets the origin header (Celery's node name of the sender).
func WithOrigin(o string) ClientOption { return func(c *Client) { c.origin = o } }

// NewClient makes a client that sends tasks on conn.
func NewClient(conn *kombu.Connection, opts ...ClientOption) *Client {
	c := &Client{conn: conn, logger: slog.Default(), confirms: true}
	for _, o := range opts {
		o(c)
	}
	if c.origin == "" {
		c.origin = origin()
	}
	return c
}

// Backend returns the client's result backend (nil without one).
func (c *Client) Backend() Backend { return c.backend }

// TaskSpec names a task and where it is sent; the generated code fills it
// from the proto options. Zero fields are Celery's defaults.
type TaskSpec struct {
	Name         string
	Queue        string // "celery"
	Exchange     string // "celery"
	RoutingKey   string // "celery"
	Args         ArgMode
	IgnoreResult bool
}

func (s TaskSpec) route() (queue, exchange, key string) {
	queue, exchange, key = s.Queue, s.Exchange, s.RoutingKey
	if queue == "" {
		queue = DefaultQueue
	}
	if exchange == "" {
		exchange = queue
	}
	if key == "" {
		key = queue
	}
	return
}

type sendConfig struct {
	eta, expires       time.Time
	countdown, expireD time.Duration
	retries            int
	priority           uint8
	hard, soft         time.Duration
	id                 string
	queue              string
	ignoreResult       *bool
	parentID, rootID   string
}

// SendOption is a per-call option of a task: when it runs, until when,
// its priority and time limits.
type SendOption func(*sendConfig)

// Countdown runs the task no earlier than d from now (Celery's countdown).
func Countdown(d time.Duration) SendOption { return func(c *sendConfig) { c.countdown = d } }

// ETA runs the task no earlier than t.
func ETA(t time.Time) SendOption { return func(c *sendConfig) { c.eta = t } }

// Expires revokes the task if it has not started d from now.
func Expires(d time.Duration) SendOption { return func(c *sendConfig) { c.expireD = d } }

// ExpiresAt revokes the task if it has not started by t.
func ExpiresAt(t time.Time) SendOption { return func(c *sendConfig) { c.expires = t } }

// Retries sets the task's retries header (how often it was retried
// already; 0 for a new task).
func Retries(n int) SendOption { return func(c *sendConfig) { c.retries = n } }

// Priority sets the message priority (0-9 on Redis; the queue's
// x-max-priority on RabbitMQ).
func Priority(p uint8) SendOption { return func(c *sendConfig) { c.priority = p } }

// TimeLimit sets the hard time limit: the worker stops waiting for the
// task after d and reports TimeLimitExceeded.
func TimeLimit(d time.Duration) SendOption { return func(c *sendConfig) { c.hard = d } }

// SoftTimeLimit sets the soft time limit: in Python the task gets
// SoftTimeLimitExceeded, in Go its context ends.
func SoftTimeLimit(d time.Duration) SendOption { return func(c *sendConfig) { c.soft = d } }

// TaskID sets the task's id (a new UUID by default).
func TaskID(id string) SendOption { return func(c *sendConfig) { c.id = id } }

// ToQueue sends the task to another queue (exchange and routing key named
// after it, as Celery's queue= does).
func ToQueue(q string) SendOption { return func(c *sendConfig) { c.queue = q } }

// IgnoreResult asks the worker not to store the result.
func IgnoreResult(on bool) SendOption { return func(c *sendConfig) { c.ignoreResult = &on } }

// Parent sets the parent and root task ids (a task sent from a task).
func Parent(parentID, rootID string) SendOption {
	return func(c *sendConfig) { c.parentID, c.rootID = parentID, rootID }
}

// Send sends the task with JSON args and kwargs (each a JSON value) and
// returns its AsyncResult.
func (c *Client) Send(ctx context.Context, spec TaskSpec, args []json.RawMessage, kwargs map[string]json.RawMessage, opts ...SendOption) (*AsyncResult, error) {
	var cfg sendConfig
	for _, o := range opts {
		o(&cfg)
	}
	now := time.Now()
	r := &Request{
		ID: cfg.id, Task: spec.Name, Args: args, Kwargs: kwargs, Retries: cfg.retries,
		ETA: cfg.eta, Expires: cfg.expires, TimeLimit: cfg.hard, SoftTimeLimit: cfg.soft,
		IgnoreResult: spec.IgnoreResult, Origin: c.origin, Priority: cfg.priority,
		ParentID: cfg.parentID, RootID: cfg.rootID,
	}
	if cfg.ignoreResult != nil {
		r.IgnoreResult = *cfg.ignoreResult
	}
	if r.ID == "" {
		r.ID = NewID()
	}
	if cfg.countdown > 0 {
		r.ETA = now.Add(cfg.countdown)
	}
	if cfg.expireD > 0 {
		r.Expires = now.Add(cfg.expireD)
	}
	if cfg.queue != "" {
		spec.Queue, spec.Exchange, spec.RoutingKey = cfg.queue, "", ""
	}
	if c.backend != nil && !r.IgnoreResult {
		if p, ok := c.backend.(interface{ prepare(context.Context) error }); ok {
			if err := p.prepare(ctx); err != nil {
				return nil, err
			}
		}
		r.ReplyTo = c.backend.ReplyTo()
	}
	if err := c.publish(ctx, spec, r); err != nil {
		return nil, err
	}
	return &AsyncResult{ID: r.ID, Task: r.Task, backend: c.backend, ignored: r.IgnoreResult}, nil
}

// publish sends r as Celery does, declaring the route's queue first (once
// per connection).
func (c *Client) publish(ctx context.Context, spec TaskSpec, r *Request) error {
	headers, body, err := r.encode()
	if err != nil {
		return err
	}
	queue, exchange, key := spec.route()
	p := c.producer(queue, exchange, key)
	opts := []kombu.PublishOption{
		kombu.WithRoutingKey(key),
		kombu.WithContentType("application/json", "utf-8"),
		kombu.WithHeaders(headers),
		kombu.WithCorrelationID(r.ID),
	}
	if r.ReplyTo != "" {
		opts = append(opts, kombu.WithReplyTo(r.ReplyTo))
	}
	if r.Priority > 0 {
		opts = append(opts, kombu.WithPriority(r.Priority))
	}
	if err := p.Publish(ctx, body, opts...); err != nil {
		return fmt.Errorf("celery: send %s[%s]: %w", r.Task, r.ID, err)
	}
	return nil
}

func (c *Client) producer(queue, exchange, key string) *kombu.Producer {
	k := queue + "\x00" + exchange + "\x00" + key
	if p, ok := c.producers.Load(k); ok {
		return p.(*kombu.Producer)
	}
	ex := kombu.Exchange{Name: exchange, Type: kombu.ExchangeDirect}
	q := kombu.Queue{Name: queue, Bindings: []kombu.Binding{{Exchange: exchange, RoutingKey: key}}}
	p := kombu.NewProducer(c.conn, kombu.WithExchange(ex), kombu.WithDeclare(q), kombu.WithConfirms(c.confirms))
	actual, _ := c.producers.LoadOrStore(k, p)
	return actual.(*kombu.Producer)
}

// SendProto sends a task whose arguments are a request message's fields
// (see RequestArgs), as the generated clients do.
func (c *Client) SendProto(ctx context.Context, spec TaskSpec, req proto.Message, opts ...SendOption) (*AsyncResult, error) {
	args, kwargs, err := RequestArgs(req, spec.Args)
	if err != nil {
		return nil, fmt.Errorf("celery: send %s: %w: %w", spec.Name, kombu.ErrEncode, err)
	}
	return c.Send(ctx, spec, args, kwargs, opts...)
}

// AsyncResult is a sent task's handle: its id, and its state and result
// as the result backend reports them.
type AsyncResult struct {
	ID      string
	Task    string
	backend Backend
	ignored bool
}

// NewAsyncResult is the handle of a task sent elsewhere, by its id.
func NewAsyncResult(id, task string, b Backend) *AsyncResult {
	return &AsyncResult{ID: id, Task: task, backend: b}
}

func (r *AsyncResult) check() error {
	if r.backend == nil {
		return fmt.Errorf("%w: %s[%s]: the client has no result backend (WithBackend)", ErrIgnored, r.Task, r.ID)
	}
	if r.ignored {
		return fmt.Errorf("%w: %s[%s] was sent with ignore_result", ErrIgnored, r.Task, r.ID)
	}
	return nil
}

// Wait blocks until the task has finished and returns its JSON result; a
// failure or revocation is a *TaskError (errors.Is ErrTaskFailed). ctx
// bounds the wait, an unreachable backend included.
func (r *AsyncResult) Wait(ctx context.Context) (json.RawMessage, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	m, err := r.backend.Wait(ctx, r.ID)
	if err != nil {
		return nil, fmt.Errorf("celery: %s[%s]: %w", r.Task, r.ID, err)
	}
	if err := m.Err(r.Task); err != nil {
		return nil, err
	}
	return m.Result, nil
}

// Status returns the task's state: PENDING, STARTED, RETRY, SUCCESS,
// FAILURE or REVOKED.
func (r *AsyncResult) Status(ctx context.Context) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	m, err := r.backend.Meta(ctx, r.ID)
	if err != nil {
		return "", err
	}
	return m.Status, nil
}

// Ready reports whether the task has finished (SUCCESS, FAILURE, REVOKED).
func (r *AsyncResult) Ready(ctx context.Context) (bool, error) {
	s, err := r.Status(ctx)
	return ReadyState(s), err
}

// Forget drops the task's result from the backend.
func (r *AsyncResult) Forget(ctx context.Context) error {
	if err := r.check(); err != nil {
		return err
	}
	return r.backend.Forget(ctx, r.ID)
}

// Result is an AsyncResult whose value decodes into the reply message R.
type Result[R proto.Message] struct {
	*AsyncResult
}

// Get waits for the task and decodes its result into a new R. A result
// that does not fit R fails with ErrResultDecode naming the task and id.
func (r Result[R]) Get(ctx context.Context) (R, error) {
	var zero R
	raw, err := r.Wait(ctx)
	if err != nil {
		return zero, err
	}
	out := zero.ProtoReflect().New().Interface().(R)
	if err := DecodeResult(raw, out); err != nil {
		return zero, fmt.Errorf("%w: task %s[%s] into %s: %v", ErrResultDecode, r.Task, r.ID,
			out.ProtoReflect().Descriptor().FullName(), err)
	}
	return out, nil
}

// Call sends a task from a request message and returns its typed result,
// as the generated clients do.
func Call[R proto.Message](ctx context.Context, c *Client, spec TaskSpec, req proto.Message, opts ...SendOption) (Result[R], error) {
	ar, err := c.SendProto(ctx, spec, req, opts...)
	if err != nil {
		return Result[R]{}, err
	}
	return Result[R]{ar}, nil
}
