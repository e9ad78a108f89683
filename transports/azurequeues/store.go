package azurequeues

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue/queueerror"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// peekMax is the most messages Azure peeks or dequeues at once.
const peekMax = 32

// tables are the exchanges' binding tables, shared by this process's
// connections to one account. Kombu's Azure transport keeps them in the
// memory of its connection (the virtual transport's default); Azure
// Storage Queues has nowhere to keep them that every process reads.
type tables struct {
	mu sync.Mutex
	m  map[string][]virtual.Binding
}

var (
	tablesMu sync.Mutex
	allTabs  = map[string]*tables{}
)

func tablesFor(account string) *tables {
	tablesMu.Lock()
	defer tablesMu.Unlock()
	t := allTabs[account]
	if t == nil {
		t = &tables{m: map[string][]virtual.Binding{}}
		allTabs[account] = t
	}
	return t
}

// clean holds the messages this process gave back without delivering
// them, with their dequeue count then: taken again, they are not
// redelivered.
var (
	cleanMu sync.Mutex
	clean   = map[string]int64{}
)

const maxClean = 1 << 16

// store is the virtual.Store over one storage account: a queue is an
// Azure queue (Kombu's entity name), a message its envelope as the
// message text.
type store struct {
	svc  *azqueue.ServiceClient
	o    *options
	log  *slog.Logger
	tabs *tables

	stop    chan struct{}
	stopped sync.WaitGroup

	mu    sync.Mutex
	taken map[*receipt]struct{} // taken and not settled: their visibility is extended

	clientsMu sync.Mutex
	clients   map[string]*azqueue.QueueClient // queue: its client, made once
}

// receipt is a dequeued message: its id and its current pop receipt,
// which each visibility extension renews.
type receipt struct {
	queue    *azqueue.QueueClient
	id       string
	count    int64 // dequeue count when taken
	envelope string
	mu       sync.Mutex
	pop      string
}

func newStore(svc *azqueue.ServiceClient, o *options, log *slog.Logger) *store {
	return &store{svc: svc, o: o, log: log, tabs: tablesFor(o.serviceURL), stop: make(chan struct{}), taken: map[*receipt]struct{}{}}
}

// client is the queue's client, made once per connection: making one
// joins and parses its URL and wraps the pipeline, for every publish.
func (s *store) client(queue string) *azqueue.QueueClient {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	q := s.clients[queue]
	if q == nil {
		if s.clients == nil || len(s.clients) >= maxClients {
			s.clients = map[string]*azqueue.QueueClient{}
		}
		q = s.svc.NewQueueClient(entityName(s.o.prefix, queue))
		s.clients[queue] = q
	}
	return q
}

// maxClients bounds the queue clients a connection keeps.
const maxClients = 1024

// ping asks for the account's service properties.
func (s *store) ping(ctx context.Context) error {
	_, err := s.svc.GetServiceProperties(ctx, nil)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("azurestoragequeues: %s does not answer: %w", s.o.masked(), ctx.Err())
	case queueerror.HasCode(err, queueerror.AuthenticationFailed, queueerror.AuthorizationFailure, queueerror.InsufficientAccountPermissions):
		return fmt.Errorf("azurestoragequeues: %s: %w: %w: %v", s.o.masked(), ErrCredentials, transport.ErrAccessRefused, err)
	}
	return fmt.Errorf("azurestoragequeues: %s: %w", s.o.masked(), err)
}

// named turns Azure's refusal of a queue name into ErrNotSupported naming
// it.
func named(queue, name string, err error) error {
	if queueerror.HasCode(err, queueerror.InvalidResourceName, queueerror.OutOfRangeInput, queueerror.InvalidURI) {
		return fmt.Errorf("queue %q (Azure name %q) refused by Azure: %w: %v", queue, name, transport.ErrNotSupported, err)
	}
	return err
}

func notFound(err error) bool {
	return queueerror.HasCode(err, queueerror.QueueNotFound, queueerror.MessageNotFound, queueerror.PopReceiptMismatch, queueerror.QueueBeingDeleted)
}

// start extends the visibility of the messages taken and not settled, a
// third of the visibility timeout before it ends, so that a long handler
// does not see its message go to another consumer (Kombu deletes a message
// as it receives it and has nothing to extend).
func (s *store) start() {
	every := s.o.visibility / 3
	s.stopped.Add(1)
	go func() {
		defer s.stopped.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.mu.Lock()
				rs := make([]*receipt, 0, len(s.taken))
				for r := range s.taken {
					rs = append(rs, r)
				}
				s.mu.Unlock()
				for _, r := range rs {
					s.extend(r)
				}
			}
		}
	}()
}

func (s *store) extend(r *receipt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pop == "" {
		return // settled meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.visibility/3)
	defer cancel()
	resp, err := r.queue.UpdateMessage(ctx, r.id, r.pop, r.envelope, &azqueue.UpdateMessageOptions{VisibilityTimeout: to.Ptr(int32(s.o.visibility / time.Second))})
	if err != nil {
		s.log.Warn("azurestoragequeues: could not extend a message's visibility", "message", r.id, "error", err)
		return
	}
	if resp.PopReceipt != nil {
		r.pop = *resp.PopReceipt
	}
}

func (s *store) track(r *receipt, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.taken[r] = struct{}{}
	} else {
		delete(s.taken, r)
	}
}

// DeclareQueue creates the queue unless it exists.
func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	q := s.client(queue)
	_, err := q.Create(ctx, nil)
	if err != nil && !queueerror.HasCode(err, queueerror.QueueAlreadyExists) {
		return named(queue, entityName(s.o.prefix, queue), err)
	}
	return nil
}

// Size counts the visible messages by peeking at them (Azure's approximate
// count includes the invisible, taken ones): exactly up to 32, beyond that
// the approximate count less the messages this connection has taken.
func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	q := s.client(queue)
	peek, err := q.PeekMessages(ctx, &azqueue.PeekMessagesOptions{NumberOfMessages: to.Ptr(int32(peekMax))})
	if notFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, named(queue, entityName(s.o.prefix, queue), err)
	}
	if len(peek.Messages) < peekMax {
		return len(peek.Messages), true, nil
	}
	props, err := q.GetProperties(ctx, nil)
	if err != nil {
		return 0, true, err
	}
	n := int(deref(props.ApproximateMessagesCount, 0))
	s.mu.Lock()
	for r := range s.taken {
		if r.queue.URL() == q.URL() {
			n--
		}
	}
	s.mu.Unlock()
	return max(n, len(peek.Messages)), true, nil
}

// Purge deletes the visible messages, 32 at a time. Taken messages stay
// (Kombu clears the queue, which deletes them too).
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	q := s.client(queue)
	n := 0
	for {
		resp, err := q.DequeueMessages(ctx, &azqueue.DequeueMessagesOptions{NumberOfMessages: to.Ptr(int32(peekMax)), VisibilityTimeout: to.Ptr(int32(s.o.visibility / time.Second))})
		if notFound(err) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if len(resp.Messages) == 0 {
			return n, nil
		}
		for _, m := range resp.Messages {
			if _, err := q.DeleteMessage(ctx, deref(m.MessageID, ""), deref(m.PopReceipt, ""), nil); err != nil && !notFound(err) {
				return n, err
			}
			n++
		}
	}
}

// DeleteQueue counts the visible messages, deletes the queue and its rows
// from every exchange's table.
func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	n, exists, err := s.Size(ctx, queue)
	if err != nil || !exists {
		s.dropRows(queue)
		return 0, err
	}
	if _, err := s.client(queue).Delete(ctx, nil); err != nil && !notFound(err) {
		return 0, err
	}
	s.dropRows(queue)
	return n, nil
}

func (s *store) dropRows(queue string) {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	for ex, rows := range s.tabs.m {
		s.tabs.m[ex] = slices.DeleteFunc(slices.Clone(rows), func(b virtual.Binding) bool { return b.Queue == queue })
	}
}

// Put enqueues the envelope as the message text, as Kombu's _put does
// (creating the queue, as Kombu's _ensure_queue does).
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	if len(m.Envelope) > maxMessageBytes {
		return fmt.Errorf("a message of %d bytes (with Kombu's envelope) exceeds Azure's limit of %d: %w", len(m.Envelope), maxMessageBytes, codec.ErrLimitExceeded)
	}
	q := s.client(m.Queue)
	ttl := to.Ptr(int32(-1)) // never expires (Azure's default: 7 days)
	_, err := q.EnqueueMessage(ctx, string(m.Envelope), &azqueue.EnqueueMessageOptions{TimeToLive: ttl})
	if queueerror.HasCode(err, queueerror.QueueNotFound) {
		if err := s.DeclareQueue(ctx, m.Queue); err != nil {
			return err
		}
		_, err = q.EnqueueMessage(ctx, string(m.Envelope), &azqueue.EnqueueMessageOptions{TimeToLive: ttl})
	}
	if queueerror.HasCode(err, queueerror.RequestBodyTooLarge, queueerror.MessageTooLarge) {
		return fmt.Errorf("queue %q: %w: %v", m.Queue, codec.ErrLimitExceeded, err)
	}
	return named(m.Queue, entityName(s.o.prefix, m.Queue), err)
}

// Take dequeues one message (see TakeBatch).
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.TakeBatch(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// maxDequeue is the most messages one DequeueMessages returns.
const maxDequeue = 32

// TakeBatch dequeues up to n messages (at most 32, Azure's limit) in one
// request, invisible to others for the visibility timeout (which the
// store extends until each is settled).
func (s *store) TakeBatch(ctx context.Context, queue string, n int) ([]virtual.Taken, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q := s.client(queue)
	// A dequeue cancelled in flight could hide messages for the whole
	// visibility timeout: it runs to its end, and what arrives after ctx
	// ended goes back at once.
	wait := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)+time.Second)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	resp, err := q.DequeueMessages(dctx, &azqueue.DequeueMessagesOptions{
		NumberOfMessages:  to.Ptr(int32(min(max(n, 1), maxDequeue))),
		VisibilityTimeout: to.Ptr(int32(s.o.visibility / time.Second)),
	})
	cancel()
	if notFound(err) || (err == nil && len(resp.Messages) == 0) {
		return nil, transport.ErrEmpty
	}
	if err != nil {
		return nil, err
	}
	rs := make([]*receipt, len(resp.Messages))
	for i, m := range resp.Messages {
		rs[i] = &receipt{queue: q, id: deref(m.MessageID, ""), pop: deref(m.PopReceipt, ""), envelope: deref(m.MessageText, ""), count: deref(m.DequeueCount, 1)}
	}
	if err := ctx.Err(); err != nil {
		for _, r := range rs {
			_ = s.Restore(context.Background(), r, []byte(r.envelope))
		}
		return nil, err
	}
	ts := make([]virtual.Taken, len(rs))
	for i, r := range rs {
		s.track(r, true)
		// A dequeue count above one means a taker before: one that died,
		// or one that gave the message back undelivered, which this
		// process remembers (the envelope marks the delivered ones).
		cleanMu.Lock()
		prev, wasClean := clean[r.id]
		delete(clean, r.id)
		cleanMu.Unlock()
		redelivered := r.count > 1 && !(wasClean && prev == r.count-1)
		ts[i] = virtual.Taken{Envelope: []byte(r.envelope), Receipt: r, Redelivered: redelivered}
	}
	return ts, nil
}

// Ack deletes the message.
func (s *store) Ack(ctx context.Context, rc virtual.Receipt) error {
	r := rc.(*receipt)
	s.track(r, false)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.queue.DeleteMessage(ctx, r.id, r.pop, nil)
	r.pop = ""
	if notFound(err) {
		return nil
	}
	return err
}

// Restore makes the message visible at once, with the envelope the
// connection passes (marked redelivered when it was delivered): Azure can
// rewrite a message.
func (s *store) Restore(ctx context.Context, rc virtual.Receipt, envelope []byte) error {
	r := rc.(*receipt)
	s.track(r, false)
	r.mu.Lock()
	defer r.mu.Unlock()
	if string(envelope) == r.envelope {
		cleanMu.Lock()
		if len(clean) >= maxClean {
			clear(clean)
		}
		clean[r.id] = r.count
		cleanMu.Unlock()
	}
	_, err := r.queue.UpdateMessage(ctx, r.id, r.pop, string(envelope), &azqueue.UpdateMessageOptions{VisibilityTimeout: to.Ptr(int32(0))})
	r.pop = ""
	if notFound(err) {
		return nil
	}
	return err
}

// Bind adds the row to the exchange's table, in front, unless it has it.
func (s *store) Bind(_ context.Context, exchange string, b virtual.Binding) error {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	rows := s.tabs.m[exchange]
	if slices.Contains(rows, b) {
		return nil
	}
	s.tabs.m[exchange] = append([]virtual.Binding{b}, rows...)
	return nil
}

// Unbind removes the rows with b's routing key and queue.
func (s *store) Unbind(_ context.Context, exchange string, b virtual.Binding) error {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	s.tabs.m[exchange] = slices.DeleteFunc(slices.Clone(s.tabs.m[exchange]), func(r virtual.Binding) bool {
		return r.RoutingKey == b.RoutingKey && r.Queue == b.Queue
	})
	return nil
}

// Bindings returns a copy of the exchange's table.
func (s *store) Bindings(_ context.Context, exchange string) ([]virtual.Binding, error) {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	return slices.Clone(s.tabs.m[exchange]), nil
}

// DeleteExchange removes the exchange's table.
func (s *store) DeleteExchange(_ context.Context, exchange string) error {
	s.tabs.mu.Lock()
	defer s.tabs.mu.Unlock()
	delete(s.tabs.m, exchange)
	return nil
}

// Close stops the visibility extender.
func (s *store) Close() error {
	close(s.stop)
	s.stopped.Wait()
	return nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

var _ virtual.BatchTaker = (*store)(nil)
