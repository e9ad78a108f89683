package sqs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/kombu-go/kombu/internal/ackbatch"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// store is the virtual.Store of one sqs:// connection.
type store struct {
	client *sqs.Client
	o      *options
	mask   masker
	log    *slog.Logger
	tables *tables

	mu   sync.Mutex
	urls map[string]string // SQS queue name: its URL
	held map[string]*lease // receipt handle: the message this store took

	deletes *ackbatch.Batcher[receipt] // acks' deletes, batched per queue URL

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ virtual.Store       = (*store)(nil)
	_ virtual.Quarantiner = (*store)(nil)
	_ virtual.BatchTaker  = (*store)(nil)
	_ virtual.BatchPutter = (*store)(nil)
)

// receipt is what Take hands the connection for a message.
type receipt struct {
	url, queue, handle, id string
}

// lease is a message this store holds, whose visibility it extends while
// the connection has not settled it.
type lease struct {
	r        receipt
	body     string // as SQS holds it, for Quarantine
	extended time.Time
	// envelope and redelivered are what the take handed the connection:
	// a Restore of the same envelope gives back a message never handed
	// over (the connection marks one it handed over redelivered).
	envelope    []byte
	redelivered bool
}

func newStore(client *sqs.Client, o *options, key string, log *slog.Logger) *store {
	s := &store{
		client: client,
		o:      o,
		mask:   masker{secret: o.secretKey},
		log:    log,
		tables: tablesFor(key),
		urls:   map[string]string{},
		held:   map[string]*lease{},
		stop:   make(chan struct{}),
	}
	s.deletes = ackbatch.New(maxDeleteBatch, ackLinger, deleteCalls, s.deleteBatch)
	if o.visibility > 0 {
		s.wg.Add(1)
		go s.renew()
	}
	return s
}

// sqsName is Kombu's SQS name for a queue: the prefix and the name,
// mangled together (entityName).
func (s *store) sqsName(queue string) (string, error) {
	name := shorten(entityName(s.o.prefix + queue))
	if err := checkName(queue, name); err != nil {
		return "", err
	}
	return name, nil
}

// errNoQueue: the queue does not exist.
var errNoQueue = errors.New("no such queue")

// queueURL finds the queue's URL, in the cache or with GetQueueUrl, and
// with create makes the queue when SQS has none (as Kombu's _new_queue
// does, for a publish to a queue nobody declared too).
func (s *store) queueURL(ctx context.Context, queue string, create bool) (url, name string, err error) {
	name, err = s.sqsName(queue)
	if err != nil {
		return "", "", err
	}
	s.mu.Lock()
	url, ok := s.urls[name]
	s.mu.Unlock()
	if ok {
		return url, name, nil
	}
	out, err := s.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	switch {
	case err == nil:
		url = aws.ToString(out.QueueUrl)
	case isMissingQueueCode(errorCode(err)) && create:
		attrs := map[string]string{"VisibilityTimeout": strconv.Itoa(int(s.o.visibility))}
		if strings.HasSuffix(name, ".fifo") {
			attrs["FifoQueue"] = "true"
		}
		created, cerr := s.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if cerr != nil {
			return "", name, s.mask.wrap("CreateQueue", name, cerr)
		}
		url = aws.ToString(created.QueueUrl)
	case isMissingQueueCode(errorCode(err)):
		return "", name, errNoQueue
	default:
		return "", name, s.mask.wrap("GetQueueUrl", name, err)
	}
	s.mu.Lock()
	s.urls[name] = url
	s.mu.Unlock()
	return url, name, nil
}

// forget drops a queue's URL from the cache, after SQS said it is gone.
func (s *store) forget(name string) {
	s.mu.Lock()
	delete(s.urls, name)
	s.mu.Unlock()
}

// call runs a request on the queue's URL, and once more with a fresh URL
// when SQS says the queue is gone (another process deleted and made it
// again, which changes no URL on AWS but does on some emulators).
func (s *store) missing(name string, err error) bool {
	if err != nil && isMissingQueueCode(errorCode(err)) {
		s.forget(name)
		return true
	}
	return false
}

func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	_, _, err := s.queueURL(ctx, queue, true)
	return err
}

func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	url, name, err := s.queueURL(ctx, queue, false)
	if errors.Is(err, errNoQueue) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	out, err := s.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	})
	if s.missing(name, err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.mask.wrap("GetQueueAttributes", name, err)
	}
	n, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	if s.o.goaws {
		inFlight, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
		n = max(n-inFlight, 0)
	}
	return n, true, nil
}

// Purge receives and deletes the queue's ready messages, ten at a time,
// rather than calling PurgeQueue as Kombu does: PurgeQueue also deletes the
// messages consumers hold (which the connection must still be able to
// settle), and SQS allows it once a minute per queue.
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	url, name, err := s.queueURL(ctx, queue, false)
	if errors.Is(err, errNoQueue) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		out, err := s.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 60,
		})
		if s.missing(name, err) {
			return n, nil
		}
		if err != nil {
			return n, s.mask.wrap("ReceiveMessage", name, err)
		}
		if len(out.Messages) == 0 {
			return n, nil
		}
		entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
		for i, m := range out.Messages {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
		}
		del, err := s.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			return n, s.mask.wrap("DeleteMessageBatch", name, err)
		}
		n += len(del.Successful)
	}
}

func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	s.tables.dropQueue(queue)
	n, exists, err := s.Size(ctx, queue)
	if err != nil || !exists {
		return 0, err
	}
	url, name, err := s.queueURL(ctx, queue, false)
	if errors.Is(err, errNoQueue) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	_, err = s.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	s.forget(name)
	if err != nil && !isMissingQueueCode(errorCode(err)) {
		return 0, s.mask.wrap("DeleteQueue", name, err)
	}
	return n, nil
}

// Put sends the envelope, base64-encoded unless sqs-base64-encoding is off,
// as Kombu's _put does; to a FIFO queue with Kombu's message group
// ("default" unless the message's properties or headers name
// MessageGroupId) and a deduplication id (a uuid4 unless they name
// MessageDeduplicationId).
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	url, name, err := s.queueURL(ctx, m.Queue, true)
	if err != nil {
		return err
	}
	body := string(m.Envelope)
	if s.o.base64 {
		body = base64.StdEncoding.EncodeToString(m.Envelope)
	}
	if len(body) > s.o.maxMessageSize {
		return fmt.Errorf("queue %q: the message is %d bytes as SQS would store it, more than its limit of %d (max_message_size): %w",
			m.Queue, len(body), s.o.maxMessageSize, transport.ErrLimitExceeded)
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}
	if strings.HasSuffix(name, ".fifo") {
		group, dedup := fifoIDs(m.Envelope)
		in.MessageGroupId = aws.String(group)
		in.MessageDeduplicationId = aws.String(dedup)
	}
	_, err = s.client.SendMessage(ctx, in)
	if s.missing(name, err) {
		// Deleted since we looked it up: make it again, as Kombu would.
		if url, _, err = s.queueURL(ctx, m.Queue, true); err != nil {
			return err
		}
		in.QueueUrl = aws.String(url)
		_, err = s.client.SendMessage(ctx, in)
	}
	return s.mask.wrap("SendMessage", name, err)
}

// fifoIDs are a FIFO message's group and deduplication ids, from its
// properties as Kombu reads them, or from its headers (where a Go
// publisher puts them), else Kombu's defaults.
func fifoIDs(envelope []byte) (group, dedup string) {
	var env struct {
		Headers    map[string]any `json:"headers"`
		Properties map[string]any `json:"properties"`
	}
	_ = json.Unmarshal(envelope, &env)
	pick := func(key string) string {
		for _, m := range []map[string]any{env.Properties, env.Headers} {
			if v, ok := m[key].(string); ok && v != "" {
				return v
			}
		}
		return ""
	}
	group, dedup = pick("MessageGroupId"), pick("MessageDeduplicationId")
	if group == "" {
		group = "default"
	}
	if dedup == "" {
		dedup = virtual.NewDeliveryTag() // a uuid4, as Kombu's
	}
	return group, dedup
}

// Take receives one message (see TakeBatch).
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.TakeBatch(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// maxReceive is the most messages one ReceiveMessage returns.
const maxReceive = 10

// TakeBatch receives up to n messages (at most ten, SQS's limit) in one
// ReceiveMessage without waiting (the connection polls every
// polling_interval), with the connection's visibility timeout, which the
// store extends while a message is unsettled. Python Kombu's consumer
// receives ten at a time too (its prefetch allowing).
func (s *store) TakeBatch(ctx context.Context, queue string, n int) ([]virtual.Taken, error) {
	url, name, err := s.queueURL(ctx, queue, false)
	if errors.Is(err, errNoQueue) {
		return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	if err != nil {
		return nil, err
	}
	in := &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(url),
		MaxNumberOfMessages: int32(min(max(n, 1), maxReceive)),
		AttributeNames:      []types.QueueAttributeName{"ApproximateReceiveCount"},
	}
	if s.o.visibility > 0 {
		in.VisibilityTimeout = s.o.visibility
	}
	out, err := s.receive(ctx, in)
	if s.missing(name, err) {
		return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	if err != nil {
		return nil, s.mask.wrap("ReceiveMessage", name, err)
	}
	if len(out.Messages) == 0 {
		return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	ts := make([]virtual.Taken, len(out.Messages))
	now := time.Now()
	for i, m := range out.Messages {
		r := receipt{url: url, queue: name, handle: aws.ToString(m.ReceiptHandle), id: aws.ToString(m.MessageId)}
		count, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
		redelivered, known := s.tables.takeRestored(r.id)
		if !known {
			redelivered = count > 1
		}
		env := decodeBody(aws.ToString(m.Body))
		s.mu.Lock()
		s.held[r.handle] = &lease{r: r, body: aws.ToString(m.Body), extended: now, envelope: env, redelivered: redelivered}
		s.mu.Unlock()
		ts[i] = virtual.Taken{Envelope: env, Receipt: r, Redelivered: redelivered}
	}
	return ts, nil
}

// receive is ReceiveMessage bounded by ctx without losing what it
// receives: a request that ctx cancels may still have been served, and the
// messages of its lost answer would stay invisible for the whole
// visibility timeout. So the request runs on, and if ctx ends first,
// whatever it received is made visible again at once when it answers.
func (s *store) receive(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
	type result struct {
		out *sqs.ReceiveMessageOutput
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), receiveTimeout)
		defer cancel()
		out, err := s.client.ReceiveMessage(rctx, in)
		ch <- result{out, err}
	}()
	select {
	case r := <-ch:
		return r.out, r.err
	case <-ctx.Done():
		go func() {
			r := <-ch
			if r.err != nil {
				return
			}
			for _, m := range r.out.Messages {
				cctx, cancel := context.WithTimeout(context.Background(), receiveTimeout)
				_, _ = s.client.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{
					QueueUrl: in.QueueUrl, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
				})
				cancel()
			}
		}()
		return nil, ctx.Err()
	}
}

// receiveTimeout bounds a receive whose caller gave up.
const receiveTimeout = 30 * time.Second

// base64Body is what Kombu's _optional_b64_decode takes for base64.
var base64Body = regexp.MustCompile(`^[A-Za-z0-9+/]*={0,2}$`)

// decodeBody is Kombu's _optional_b64_decode: a body that is base64 and
// encodes back to itself is decoded; any other is taken as it is, so that
// messages from producers with sqs-base64-encoding off, and foreign JSON,
// are read too.
func decodeBody(body string) []byte {
	if len(body)%4 == 0 && base64Body.MatchString(body) {
		if b, err := base64.StdEncoding.DecodeString(body); err == nil {
			return b
		}
	}
	return []byte(body)
}

// settled forgets a lease.
func (s *store) settled(r receipt) {
	s.mu.Lock()
	delete(s.held, r.handle)
	s.mu.Unlock()
}

// Ack queues the message's delete for a DeleteMessageBatch (see
// deleter), returning before it lands: see "Acknowledgements" in the
// package documentation. Its visibility is extended until the delete has
// landed (a timeout that ran out while the delete waited would hand the
// message to another consumer). Once the store is closing, it deletes the
// message itself.
func (s *store) Ack(ctx context.Context, rc virtual.Receipt) error {
	r := rc.(receipt)
	if queued, err := s.deletes.Add(ctx, r.url, r); queued || err != nil {
		return err // err: ctx ended while the deletes in flight were at their limit
	}
	defer s.settled(r)
	return s.deleteOne(ctx, r)
}

// deleteOne deletes a message with DeleteMessage. A receipt SQS no longer
// honours (the visibility timeout ran out, another consumer may have it)
// is logged and not an error: the message may be delivered again, as
// at-least-once allows. Any other failure is logged too (an async ack has
// no caller to tell) and returned.
func (s *store) deleteOne(ctx context.Context, r receipt) error {
	_, err := s.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(r.url), ReceiptHandle: aws.String(r.handle)})
	if err != nil && (isGoneReceipt(errorCode(err)) || isMissingQueueCode(errorCode(err)) || s.o.goaws && code(errorCode(err)) == "QueueExists") {
		s.log.Warn("sqs: acked a message SQS no longer holds for us: its visibility timeout ran out, and it may be delivered again",
			"queue", r.queue, "message_id", r.id)
		return nil
	}
	if err != nil {
		err = s.mask.wrap("DeleteMessage", r.queue, err)
		s.log.Warn("sqs: could not delete an acked message: it will be delivered again once its visibility timeout runs out",
			"queue", r.queue, "message_id", r.id, "error", err)
	}
	return err
}

// Restore makes the message visible again at once (visibility 0): SQS
// cannot rewrite it, so it keeps its place and is marked redelivered by
// its receive count.
func (s *store) Restore(ctx context.Context, rc virtual.Receipt, envelope []byte) error {
	r := rc.(receipt)
	redelivered := true
	s.mu.Lock()
	if l, ok := s.held[r.handle]; ok && bytes.Equal(l.envelope, envelope) {
		redelivered = l.redelivered // never handed over: as it was
	}
	s.mu.Unlock()
	s.settled(r)
	s.tables.markRestored(r.id, redelivered)
	_, err := s.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(r.url), ReceiptHandle: aws.String(r.handle), VisibilityTimeout: 0,
	})
	if err != nil && (isGoneReceipt(errorCode(err)) || isMissingQueueCode(errorCode(err))) {
		return nil
	}
	return s.mask.wrap("ChangeMessageVisibility", r.queue, err)
}

// Quarantine moves a message that is not a Kombu envelope to the queue's
// quarantine queue (its SQS name with "-quarantine" before any ".fifo"),
// where a person can look at it, and deletes it from its queue.
func (s *store) Quarantine(ctx context.Context, rc virtual.Receipt, reason error) error {
	r := rc.(receipt)
	qname := quarantineName(r.queue)
	s.log.Warn("sqs: a message is not a Kombu envelope: moved to the quarantine queue", "queue", r.queue, "quarantine", qname, "message_id", r.id, "reason", reason)
	return s.moveAside(ctx, r, qname)
}

func quarantineName(name string) string {
	base, fifo := strings.CutSuffix(name, ".fifo")
	if len(base) > maxQueueName-len("-quarantine.fifo") {
		base = base[:maxQueueName-len("-quarantine.fifo")]
	}
	if fifo {
		return base + "-quarantine.fifo"
	}
	return base + "-quarantine"
}

// moveAside copies the held message's body to the queue named qname (made
// if missing) and deletes it.
func (s *store) moveAside(ctx context.Context, r receipt, qname string) error {
	body, ok := s.bodyOf(r)
	if !ok {
		return fmt.Errorf("queue %q: message %s: its body is no longer held", r.queue, r.id)
	}
	var url string
	out, err := s.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(qname)})
	if err != nil && isMissingQueueCode(errorCode(err)) {
		attrs := map[string]string{}
		if strings.HasSuffix(qname, ".fifo") {
			attrs["FifoQueue"] = "true"
		}
		created, cerr := s.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(qname), Attributes: attrs})
		if cerr != nil {
			return s.mask.wrap("CreateQueue", qname, cerr)
		}
		url = aws.ToString(created.QueueUrl)
	} else if err != nil {
		return s.mask.wrap("GetQueueUrl", qname, err)
	} else {
		url = aws.ToString(out.QueueUrl)
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}
	if strings.HasSuffix(qname, ".fifo") {
		in.MessageGroupId, in.MessageDeduplicationId = aws.String("default"), aws.String(r.id)
	}
	if _, err := s.client.SendMessage(ctx, in); err != nil {
		return s.mask.wrap("SendMessage", qname, err)
	}
	// Deleted at once, not batched: the caller moves on to the next
	// message believing this one gone from its queue.
	s.settled(r)
	return s.deleteOne(ctx, r)
}

func (s *store) bodyOf(r receipt) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.held[r.handle]
	if !ok {
		return "", false
	}
	return l.body, true
}

// renew extends the visibility of the messages this store holds, a third
// of the visibility timeout before it runs out, so that a long handler's
// message is not delivered to a second consumer meanwhile; a process that
// dies stops extending, and SQS delivers its messages again once their
// visibility runs out.
func (s *store) renew() {
	defer s.wg.Done()
	vis := time.Duration(s.o.visibility) * time.Second
	every := max(vis/3, 200*time.Millisecond)
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var due []*lease
		s.mu.Lock()
		for _, l := range s.held {
			if now.Sub(l.extended) >= every {
				l.extended = now
				due = append(due, l)
			}
		}
		s.mu.Unlock()
		for _, l := range due {
			ctx, cancel := context.WithTimeout(context.Background(), every)
			_, err := s.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(l.r.url), ReceiptHandle: aws.String(l.r.handle), VisibilityTimeout: s.o.visibility,
			})
			cancel()
			if err != nil {
				s.log.Warn("sqs: could not extend a message's visibility timeout", "queue", l.r.queue, "message_id", l.r.id, "error", s.mask.wrap("ChangeMessageVisibility", l.r.queue, err))
			}
		}
	}
}

func (s *store) Bind(_ context.Context, exchange string, b virtual.Binding) error {
	s.tables.change(exchange, func(rows []virtual.Binding) []virtual.Binding {
		if slices.Contains(rows, b) {
			return rows
		}
		return slices.Insert(rows, 0, b)
	})
	return nil
}

func (s *store) Unbind(_ context.Context, exchange string, b virtual.Binding) error {
	s.tables.change(exchange, func(rows []virtual.Binding) []virtual.Binding {
		return slices.DeleteFunc(rows, func(r virtual.Binding) bool { return r.RoutingKey == b.RoutingKey && r.Queue == b.Queue })
	})
	return nil
}

func (s *store) Bindings(_ context.Context, exchange string) ([]virtual.Binding, error) {
	return s.tables.get(exchange), nil
}

func (s *store) DeleteExchange(_ context.Context, exchange string) error {
	s.tables.drop(exchange)
	return nil
}

// Close stops the visibility extender and sends the acks' deletes still
// waiting, returning once they have landed (or failed, logged).
func (s *store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.deletes.Close()
	})
	return nil
}

// tables are the binding tables of one SQS (endpoint, region and queue
// name prefix), shared by the connections of a process. SQS has nowhere to
// keep them: Kombu keeps them in each connection's memory, and every
// process declares its own (Kombu's consumers and producers declare their
// queues' bindings before they use them).
//
// They also hold the ids of the messages the process restored, so that a
// message taken again is marked redelivered even where SQS's
// ApproximateReceiveCount does not say so (goaws never counts).
type tables struct {
	mu       sync.Mutex
	m        map[string][]virtual.Binding
	restored map[string]restoredMark
}

// restoredMark is what a restored message's next take reports as its
// Redelivered: true once it was handed over, the first take's own
// otherwise (a message a batch took and gave back unseen, as it was).
type restoredMark struct {
	at          time.Time
	redelivered bool
}

// maxRestored bounds the restored ids a process remembers; past it, those
// older than restoredAge are forgotten (another process took them).
const (
	maxRestored = 10000
	restoredAge = time.Hour
)

func (t *tables) markRestored(id string, redelivered bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if len(t.restored) >= maxRestored {
		for k, at := range t.restored {
			if now.Sub(at.at) > restoredAge {
				delete(t.restored, k)
			}
		}
	}
	if len(t.restored) < 2*maxRestored {
		t.restored[id] = restoredMark{at: now, redelivered: redelivered}
	}
}

// takeRestored returns what the message's take reports as Redelivered, if
// this process restored it (known).
func (t *tables) takeRestored(id string) (redelivered, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.restored[id]
	delete(t.restored, id)
	return m.redelivered, ok
}

var (
	allTablesMu sync.Mutex
	allTables   = map[string]*tables{}
)

func tablesFor(key string) *tables {
	allTablesMu.Lock()
	defer allTablesMu.Unlock()
	t, ok := allTables[key]
	if !ok {
		t = &tables{m: map[string][]virtual.Binding{}, restored: map[string]restoredMark{}}
		allTables[key] = t
	}
	return t
}

func (t *tables) change(exchange string, f func([]virtual.Binding) []virtual.Binding) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rows := f(slices.Clone(t.m[exchange]))
	if len(rows) == 0 {
		delete(t.m, exchange)
		return
	}
	t.m[exchange] = rows
}

func (t *tables) get(exchange string) []virtual.Binding {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.m[exchange])
}

func (t *tables) drop(exchange string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, exchange)
}

func (t *tables) dropQueue(queue string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for x, rows := range t.m {
		rows = slices.DeleteFunc(slices.Clone(rows), func(r virtual.Binding) bool { return r.Queue == queue })
		if len(rows) == 0 {
			delete(t.m, x)
		} else {
			t.m[x] = rows
		}
	}
}

// SendMessageBatch's limits: ten entries, and 256 KiB of bodies in all.
const (
	maxSendBatch      = 10
	maxSendBatchBytes = 256 * 1024
)

// sendEntry is a message of PutBatch on its way: its index in the batch
// and its request entry.
type sendEntry struct {
	i     int
	entry types.SendMessageBatchRequestEntry
}

// PutBatch sends the messages queue by queue, in SendMessageBatch requests
// of up to ten messages and 256 KiB of bodies (a bigger message, which
// max_message_size allowed, goes alone), each message as Put sends it. A
// message over max_message_size fails alone, with ErrLimitExceeded,
// before anything is sent; an entry SQS refuses fails alone with SQS's
// code; a request that fails fails its entries.
func (s *store) PutBatch(ctx context.Context, ms []virtual.Message) []error {
	var errs []error
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(ms))
		}
		errs[i] = err
	}
	var order []string
	byQueue := map[string][]int{}
	for i, m := range ms {
		if _, ok := byQueue[m.Queue]; !ok {
			order = append(order, m.Queue)
		}
		byQueue[m.Queue] = append(byQueue[m.Queue], i)
	}
	for _, queue := range order {
		idx := byQueue[queue]
		url, name, err := s.queueURL(ctx, queue, true)
		if err != nil {
			for _, i := range idx {
				fail(i, err)
			}
			continue
		}
		fifo := strings.HasSuffix(name, ".fifo")
		var req []sendEntry
		total := 0 // the bodies' bytes in req
		send := func() {
			if len(req) > 0 {
				s.sendBatch(ctx, queue, url, name, req, fail)
			}
			req, total = req[:0:0], 0
		}
		for _, i := range idx {
			m := ms[i]
			body := string(m.Envelope)
			if s.o.base64 {
				body = base64.StdEncoding.EncodeToString(m.Envelope)
			}
			if len(body) > s.o.maxMessageSize {
				fail(i, fmt.Errorf("queue %q: the message is %d bytes as SQS would store it, more than its limit of %d (max_message_size): %w",
					m.Queue, len(body), s.o.maxMessageSize, transport.ErrLimitExceeded))
				continue
			}
			if len(req) == maxSendBatch || len(req) > 0 && total+len(body) > maxSendBatchBytes {
				send()
			}
			e := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(len(req))), MessageBody: aws.String(body)}
			if fifo {
				group, dedup := fifoIDs(m.Envelope)
				e.MessageGroupId = aws.String(group)
				e.MessageDeduplicationId = aws.String(dedup)
			}
			req = append(req, sendEntry{i: i, entry: e})
			total += len(body)
		}
		send()
	}
	return errs
}

// sendBatch sends one SendMessageBatch and tells fail of each entry that
// was not stored: those SQS lists as failed, those it lists nowhere, or
// all when the request failed. A queue deleted since it was looked up is
// made again and the request sent once more, as Put does.
func (s *store) sendBatch(ctx context.Context, queue, url, name string, req []sendEntry, fail func(int, error)) {
	entries := make([]types.SendMessageBatchRequestEntry, len(req))
	for k, e := range req {
		entries[k] = e.entry
	}
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}
	out, err := s.client.SendMessageBatch(ctx, in)
	if s.missing(name, err) {
		// Deleted since we looked it up: make it again, as Kombu would.
		if url, _, err = s.queueURL(ctx, queue, true); err == nil {
			in.QueueUrl = aws.String(url)
			out, err = s.client.SendMessageBatch(ctx, in)
			err = s.mask.wrap("SendMessageBatch", name, err)
		}
	} else {
		err = s.mask.wrap("SendMessageBatch", name, err)
	}
	if err != nil {
		for _, e := range req {
			fail(e.i, err)
		}
		return
	}
	done := make([]bool, len(req))
	for _, ok := range out.Successful {
		if k, err := strconv.Atoi(aws.ToString(ok.Id)); err == nil && k >= 0 && k < len(req) {
			done[k] = true
		}
	}
	for _, f := range out.Failed {
		k, err := strconv.Atoi(aws.ToString(f.Id))
		if err != nil || k < 0 || k >= len(req) || done[k] {
			continue
		}
		done[k] = true
		fail(req[k].i, s.mask.wrap("SendMessageBatch", name, &entryError{code: aws.ToString(f.Code), msg: aws.ToString(f.Message), sender: f.SenderFault}))
	}
	for k, d := range done {
		if !d {
			fail(req[k].i, &Error{Op: "SendMessageBatch", Queue: name, Err: errors.New("SQS answered neither that it stored the message nor that it failed")})
		}
	}
}

// entryError is SQS's failure of one entry of a batch request, which
// the SDK does not make an error: an smithy.APIError, so that Error
// reads its code as a request's.
type entryError struct {
	code, msg string
	sender    bool
}

func (e *entryError) Error() string {
	return fmt.Sprintf("entry failed: %s: %s", e.code, e.msg)
}
func (e *entryError) ErrorCode() string    { return e.code }
func (e *entryError) ErrorMessage() string { return e.msg }
func (e *entryError) ErrorFault() smithy.ErrorFault {
	if e.sender {
		return smithy.FaultClient
	}
	return smithy.FaultServer
}
