package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// consumerName is the durable pull consumer every connection shares on a
// queue's stream: a work-queue stream takes one unfiltered consumer, and
// sharing it makes the connections competing consumers, as AMQP's are.
const consumerName = "kombu"

// Headers of the copies kept in the dead-letter stream.
const (
	headerQueue  = "Kombu-Queue"
	headerReason = "Kombu-Reason"
)

// store is virtual.Store over JetStream: a queue is a work-queue stream
// with one subject, its messages Kombu's envelopes; a take is a no-wait
// pull of the shared durable consumer; the binding tables live in a
// key-value bucket.
type store struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	o   *options
	log *slog.Logger

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // by queue, declared or found
	held      map[*receipt]struct{}         // taken, not yet acked or restored
	// unmarked remembers messages restored without having been handed
	// over, by stream/sequence: the stream cannot rewrite them and counts
	// every take as a delivery, so the next take reports the redelivered
	// state they had (Kombu's redelivered mark is not set by a take that
	// never reached a consumer).
	unmarked map[string]bool

	// expects holds, per stream, the header that names it as the
	// publish's expected stream (what jetstream.WithExpectStream sets),
	// made once and shared read-only by every publish to it: the option
	// makes a header map, a slice and a closure per message.
	expectMu sync.RWMutex
	expects  map[string]nats.Header

	kvOnce sync.Mutex
	kv     jetstream.KeyValue
	// tables mirror the binding bucket, kept by a watcher, so that a
	// publish through an exchange reads its table without a round trip.
	tablesMu    sync.Mutex
	tables      map[string]table
	tablesReady chan struct{} // closed once the watcher has the bucket's values
	watcher     jetstream.KeyWatcher
	deadMu      sync.Mutex
	dead        bool // the dead-letter stream exists

	advisory     *nats.Subscription
	nameCache    sync.Map // queue name → queueNames: escaping at every publish shows in profiles
	exchangeKeys sync.Map // exchange name → its key in the binding bucket, as nameCache
	pull         *puller
	stop         chan struct{}
	wg           sync.WaitGroup
}

type receipt struct {
	msg         *nats.Msg // its Reply is the ack subject
	queue       string
	stream      string // from the ack subject; "" when it did not parse
	seq         uint64
	env         []byte
	redelivered bool
}

var (
	_ virtual.Store       = (*store)(nil)
	_ virtual.BatchTaker  = (*store)(nil)
	_ virtual.Rejecter    = (*store)(nil)
	_ virtual.Waker       = (*store)(nil)
	_ virtual.QuickAcker  = (*store)(nil)
	_ virtual.BatchPutter = (*store)(nil)
)

func newStore(nc *nats.Conn, js jetstream.JetStream, o *options, log *slog.Logger) *store {
	return &store{
		nc: nc, js: js, o: o, log: log,
		consumers:   map[string]jetstream.Consumer{},
		held:        map[*receipt]struct{}{},
		unmarked:    map[string]bool{},
		stop:        make(chan struct{}),
		tables:      map[string]table{},
		tablesReady: make(chan struct{}),
	}
}

// table is a binding table as the mirror has it, with the revision it
// was read at.
type table struct {
	rows []virtual.Binding
	rev  uint64
}

// names are a queue's stream and subject.
func (s *store) names(queue string) (stream, subject string, err error) {
	if n, ok := s.nameCache.Load(queue); ok {
		qn := n.(queueNames)
		return qn.stream, qn.subject, nil
	}
	tok, err := token("queue", queue)
	if err != nil {
		return "", "", err
	}
	qn := queueNames{s.o.streamPrefix + "_" + tok, s.o.subjectPrefix + ".q." + tok}
	s.nameCache.Store(queue, qn) // names are few: a process uses a handful of queues
	return qn.stream, qn.subject, nil
}

type queueNames struct{ stream, subject string }

// start runs the lease keeper, and with max_deliver the dead-lettering of
// messages the server gave up on.
func (s *store) start() error {
	p, err := newPuller(s.nc)
	if err != nil {
		return fmt.Errorf("subscribe the pull inbox: %w", err)
	}
	s.pull = p
	if s.o.maxDeliver > 0 {
		// The server announces a message that reached MaxDeliver on this
		// subject (once, to whoever listens): the store copies it into the
		// dead-letter stream and deletes it from its queue. Several
		// connections may hear it; the copy's Nats-Msg-Id makes them one.
		// A wildcard is a whole token: the handler keeps the streams of
		// this prefix.
		subj := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*." + consumerName
		sub, err := s.nc.Subscribe(subj, s.onMaxDeliveries)
		if err != nil {
			return fmt.Errorf("subscribe to the max-deliveries advisory: %w", err)
		}
		s.advisory = sub
	}
	s.wg.Add(1)
	go s.keepLeases()
	return nil
}

// keepLeases tells the server, every third of the ack wait, that the
// messages this store holds are still being worked on (InProgress), so a
// handler may run longer than the ack wait without its message going to
// another consumer; a process that dies stops telling, and the server
// delivers its messages again once the ack wait has passed.
func (s *store) keepLeases() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.o.ackWait/3, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		held := make([]*receipt, 0, len(s.held))
		for r := range s.held {
			held = append(held, r)
		}
		s.mu.Unlock()
		for _, r := range held {
			if err := s.nc.Publish(r.msg.Reply, []byte("+WPI")); err != nil {
				s.log.Debug("nats: extend a held message's ack wait", "queue", r.queue, "error", err)
			}
		}
	}
}

// consumer returns the queue's consumer; with create it declares the
// queue's stream and consumer first. Without create it returns nil when
// the stream does not exist.
func (s *store) consumer(ctx context.Context, queue string, create bool) (jetstream.Consumer, error) {
	s.mu.Lock()
	c := s.consumers[queue]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	stream, subject, err := s.names(queue)
	if err != nil {
		return nil, err
	}
	var st jetstream.Stream
	if create {
		st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        stream,
			Description: "kombu queue " + queue,
			Subjects:    []string{subject},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     s.o.storage,
			Replicas:    s.o.replicas,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Made by another connection, perhaps with other settings:
			// keep it as it is.
			st, err = s.js.Stream(ctx, stream)
		}
		if err != nil {
			return nil, fmt.Errorf("create stream %s for queue %q: %w", stream, queue, err)
		}
		maxDeliver := -1
		if s.o.maxDeliver > 0 {
			maxDeliver = s.o.maxDeliver
		}
		c, err = st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       consumerName,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       s.o.ackWait,
			MaxDeliver:    maxDeliver,
			MaxAckPending: -1,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return nil, fmt.Errorf("create consumer %s on stream %s for queue %q: %w", consumerName, stream, queue, err)
		}
	} else {
		c, err = s.js.Consumer(ctx, stream, consumerName)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("look up queue %q (stream %s): %w", queue, stream, err)
		}
	}
	s.mu.Lock()
	s.consumers[queue] = c
	s.mu.Unlock()
	return c, nil
}

// forget drops the cached consumer of a queue whose stream went away.
func (s *store) forget(queue string) {
	s.mu.Lock()
	delete(s.consumers, queue)
	s.mu.Unlock()
}

func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	_, err := s.consumer(ctx, queue, true)
	return err
}

// Size counts the messages the shared consumer has not handed out
// (NumPending) and those given back and waiting to go out again
// (NumRedelivered); messages out with a consumer are not ready.
func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	c, err := s.consumer(ctx, queue, false)
	if err != nil || c == nil {
		return 0, false, err
	}
	info, err := c.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.forget(queue)
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("consumer info of queue %q: %w", queue, err)
	}
	return int(info.NumPending) + info.NumRedelivered, true, nil
}

// Purge takes and acks every ready message, so that messages out with a
// consumer stay out (purging the stream would remove them too).
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	c, err := s.consumer(ctx, queue, false)
	if err != nil || c == nil {
		return 0, err
	}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return n, fmt.Errorf("purge queue %q: %w", queue, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := m.Ack(); err != nil {
				return n, fmt.Errorf("purge queue %q: %w", queue, err)
			}
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return n, fmt.Errorf("purge queue %q: %w", queue, err)
		}
		if got == 0 {
			break
		}
	}
	// The acks went without replies: a flush makes the server have them
	// before Purge returns (it wants a deadline).
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		return n, fmt.Errorf("purge queue %q: %w", queue, err)
	}
	return n, nil
}

func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	n, exists, err := s.Size(ctx, queue)
	if err != nil {
		return 0, err
	}
	stream, _, err := s.names(queue)
	if err != nil {
		return 0, err
	}
	s.forget(queue)
	if exists {
		if err := s.js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, fmt.Errorf("delete stream %s of queue %q: %w", stream, queue, err)
		}
	}
	kv, err := s.bindings(ctx, false)
	if err != nil || kv == nil {
		return n, err
	}
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("list binding tables: %w", err)
	}
	for _, key := range keys {
		err := s.updateTable(ctx, kv, key, func(rows []virtual.Binding) ([]virtual.Binding, bool) {
			kept := slices.DeleteFunc(slices.Clone(rows), func(b virtual.Binding) bool { return b.Queue == queue })
			return kept, len(kept) != len(rows)
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Put publishes the envelope to the queue's subject and waits for the
// stream's ack. A queue whose stream does not exist yet gets one: a
// virtual queue is made by its messages.
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	msg, stream, err := s.message(m, s.nc.MaxPayload())
	if err != nil {
		return err
	}
	return s.publishSync(ctx, m.Queue, stream, msg)
}

// message is the NATS message that stores m in its queue's stream, named
// too; it fails with ErrLimitExceeded for an envelope over limit, the
// server's max_payload.
func (s *store) message(m virtual.Message, limit int64) (*nats.Msg, string, error) {
	stream, subject, err := s.names(m.Queue)
	if err != nil {
		return nil, "", err
	}
	if int64(len(m.Envelope)) > limit {
		return nil, "", fmt.Errorf("queue %q: a message of %d bytes as Kombu's envelope, over the server's max_payload of %d: %w",
			m.Queue, len(m.Envelope), limit, transport.ErrLimitExceeded)
	}
	msg := &nats.Msg{Subject: subject, Data: m.Envelope}
	if !s.known(m.Queue) {
		msg.Header = s.expectHeader(stream)
	}
	return msg, stream, nil
}

// PutBatch pipelines the batch, as publisher confirms are on AMQP: every
// message is sent (PublishMsgAsync) before the first stream ack is
// awaited, then each ack is awaited and checked as Put checks it. When
// the connection has as many acks outstanding as nats.go allows, sending
// waits for room (publishAsync). A message that fails (too big, refused,
// acked by another stream, no ack before ctx ended) fails alone; one to a queue whose stream does not
// exist yet (no stream answered) is sent again, synchronously, once the
// stream is made. The virtual connection hands it up to 1000 copies at a
// time (virtual's maxPutBatch), in the batch's order: a bigger batch waits
// for each run's acks before sending the next.
func (s *store) PutBatch(ctx context.Context, ms []virtual.Message) []error {
	var errs []error
	fail := func(k int, err error) {
		if errs == nil {
			errs = make([]error, len(ms))
		}
		errs[k] = err
	}
	futures := make([]jetstream.PubAckFuture, len(ms))
	streams := make([]string, len(ms))
	limit := s.nc.MaxPayload() // read under the connection's lock: once for the batch
	for k, m := range ms {
		if err := ctx.Err(); err != nil {
			for j := k; j < len(ms); j++ {
				fail(j, fmt.Errorf("not published: %w", err))
			}
			break
		}
		msg, stream, err := s.message(m, limit)
		if err != nil {
			fail(k, err) // it names the queue
			continue
		}
		if futures[k], err = s.publishAsync(ctx, msg); err != nil {
			fail(k, err)
			continue
		}
		streams[k] = stream
	}
	for k, f := range futures {
		if f == nil {
			continue
		}
		var err error
		select {
		case ack := <-f.Ok():
			err = checkAck(streams[k], ack)
		case err = <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				err = s.publishSync(ctx, ms[k].Queue, streams[k], f.Msg())
			}
		case <-ctx.Done():
			// select picks at random among ready cases: an ack that came
			// with ctx's end still counts (the message is stored; calling
			// it failed would have a retry store it twice).
			select {
			case ack := <-f.Ok():
				err = checkAck(streams[k], ack)
			default:
				err = fmt.Errorf("no ack: %w", ctx.Err())
			}
		}
		if err != nil {
			fail(k, err)
		}
	}
	return errs
}

// publishAsync sends msg without waiting for its ack. nats.go allows a
// connection 4000 outstanding acks (every batch's on it together) and
// fails a send that found no room within 200 ms with
// ErrTooManyStalledMsgs, before sending it; the acks are then only slow
// (a busy server, a big batch beside other big batches), so the send is
// tried again until ctx ends: a full pipeline makes PublishBatch wait,
// as a full TCP window would, instead of failing messages the server
// would take.
func (s *store) publishAsync(ctx context.Context, msg *nats.Msg) (jetstream.PubAckFuture, error) {
	for {
		f, err := s.js.PublishMsgAsync(msg)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", err, ctx.Err())
		}
	}
}

// publishSync publishes and waits for the stream's ack, making the
// queue's stream when nothing answered for its subject.
// The message carries its expected stream (expectHeader): no option may
// set headers on it, as its header map is shared.
func (s *store) publishSync(ctx context.Context, queue, stream string, msg *nats.Msg) error {
	ack, err := s.js.PublishMsg(ctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		if _, err := s.consumer(ctx, queue, true); err != nil {
			return err
		}
		ack, err = s.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		return err
	}
	return checkAck(stream, ack)
}

// known reports whether the queue's stream was declared or found by this
// store: its subject is then the stream's, as the server refuses a
// stream whose subjects overlap another's, and a publish to it goes
// without the expected-stream header. Every stored message keeps its
// headers, and every consumer of it decodes them: the header costs each
// message on both sides. A message to a queue not known yet carries it,
// so that a foreign stream capturing the subject refuses it.
func (s *store) known(queue string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.consumers[queue] != nil
}

// checkAck fails a publish that a stream other than the queue's stored:
// the queue's stream was deleted and another one took its subject since
// this store found it (the message is then in that stream).
func checkAck(stream string, ack *jetstream.PubAck) error {
	if ack != nil && ack.Stream != stream {
		return fmt.Errorf("stored by stream %s, not the queue's %s (another stream took its subject): %w",
			ack.Stream, stream, transport.ErrPrecondition)
	}
	return nil
}

func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.TakeBatch(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// TakeBatch pulls up to max messages without waiting (a no-wait pull
// request): the virtual connection waits for the Waker or its poll.
func (s *store) TakeBatch(ctx context.Context, queue string, max int) ([]virtual.Taken, error) {
	c, err := s.consumer(ctx, queue, false)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	stream, _, err := s.names(queue)
	if err != nil {
		return nil, err
	}
	msgs, err := s.pull.fetch(ctx, stream, consumerName, max)
	if err == errNoStream {
		// The stream was deleted (by another connection, perhaps): the
		// queue is empty, as a virtual queue without messages.
		s.forget(queue)
		return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
	}
	out := make([]virtual.Taken, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, s.hold(queue, m))
	}
	if len(out) > 0 {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("take from queue %q: %w", queue, err)
	}
	return nil, fmt.Errorf("queue %q: %w", queue, transport.ErrEmpty)
}

// key names the message by stream and sequence ("" when its ack subject
// did not parse). Made only where needed (a requeue, a dead letter), not
// for every message taken.
func (r *receipt) key() string {
	if r.stream == "" {
		return ""
	}
	return r.stream + "/" + strconv.FormatUint(r.seq, 10)
}

func (s *store) hold(queue string, m *nats.Msg) virtual.Taken {
	r := &receipt{msg: m, queue: queue, env: m.Data}
	if md, ok := parseAck(m.Reply); ok {
		r.stream, r.seq = md.stream, md.seq
		r.redelivered = md.delivered > 1
	}
	s.mu.Lock()
	if len(s.unmarked) > 0 && r.stream != "" {
		if st, ok := s.unmarked[r.key()]; ok {
			r.redelivered = st
			delete(s.unmarked, r.key())
		}
	}
	s.held[r] = struct{}{}
	s.mu.Unlock()
	return virtual.Taken{Envelope: r.env, Receipt: r, Redelivered: r.redelivered}
}

func (s *store) release(r *receipt) {
	s.mu.Lock()
	delete(s.held, r)
	s.mu.Unlock()
}

// ackPayload is the ack's body, shared: Publish copies it out.
var ackPayload = []byte("+ACK")

func (s *store) Ack(_ context.Context, rc virtual.Receipt) error { return s.AckQuick(rc) }

// AckQuick is Ack: the ack is a publish to the message's reply subject,
// written into the client's buffer, with no answer awaited (JetStream's
// Ack, not AckSync).
func (s *store) AckQuick(rc virtual.Receipt) error {
	r := rc.(*receipt)
	s.release(r)
	if err := s.nc.Publish(r.msg.Reply, ackPayload); err != nil {
		return fmt.Errorf("ack a message of queue %q: %w", r.queue, err)
	}
	return nil
}

// Restore naks the message: the server hands it out again first. A
// message that was delivered (its envelope came back marked) waits
// requeue_delay first where the URL sets one.
func (s *store) Restore(ctx context.Context, rc virtual.Receipt, envelope []byte) error {
	r := rc.(*receipt)
	s.release(r)
	delivered := !bytes.Equal(envelope, r.env)
	if !delivered && r.stream != "" {
		s.mu.Lock()
		if len(s.unmarked) < 100_000 {
			s.unmarked[r.key()] = r.redelivered
		}
		s.mu.Unlock()
	}
	// The nak goes as a request: the server answers once it has taken
	// the message back, so that a Get right after a requeue finds it.
	payload := []byte("-NAK")
	if delivered && s.o.requeueDelay > 0 {
		payload = fmt.Appendf(nil, `-NAK {"delay": %d}`, s.o.requeueDelay.Nanoseconds())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.nc.RequestWithContext(ctx, r.msg.Reply, payload); err != nil {
		return fmt.Errorf("requeue a message of queue %q: %w", r.queue, err)
	}
	return nil
}

// Reject keeps the message in the dead-letter stream, with its queue and
// the reason in headers, then acks it away from its queue.
func (s *store) Reject(ctx context.Context, rc virtual.Receipt, reason string) error {
	r := rc.(*receipt)
	if err := s.deadLetter(ctx, r.queue, r.key(), r.env, reason); err != nil {
		return err
	}
	return s.Ack(ctx, r)
}

// deadLetter publishes a copy to the dead-letter stream and waits for its
// ack; id, when set, makes copies of the same message one.
func (s *store) deadLetter(ctx context.Context, queue, id string, data []byte, reason string) error {
	if err := s.ensureDead(ctx); err != nil {
		return err
	}
	tok, err := token("queue", queue)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: s.o.subjectPrefix + ".dead." + tok, Data: data, Header: nats.Header{}}
	msg.Header.Set(headerQueue, queue)
	if reason != "" {
		msg.Header.Set(headerReason, reason)
	}
	if id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, id)
	}
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(s.deadStream())); err != nil {
		return fmt.Errorf("keep a rejected message of queue %q in stream %s: %w", queue, s.deadStream(), err)
	}
	return nil
}

// expectHeader is the header naming stream as a publish's expected
// stream, shared: nobody may change it.
func (s *store) expectHeader(stream string) nats.Header {
	s.expectMu.RLock()
	h, ok := s.expects[stream]
	s.expectMu.RUnlock()
	if ok {
		return h
	}
	h = nats.Header{jetstream.ExpectedStreamHeader: []string{stream}}
	s.expectMu.Lock()
	if s.expects == nil || len(s.expects) > 10000 { // queues come and go: do not grow without end
		s.expects = map[string]nats.Header{}
	}
	s.expects[stream] = h
	s.expectMu.Unlock()
	return h
}

func (s *store) deadStream() string { return s.o.streamPrefix + "_DEAD" }

func (s *store) ensureDead(ctx context.Context) error {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	if s.dead {
		return nil
	}
	_, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        s.deadStream(),
		Description: "kombu: rejected messages, and messages that reached max_deliver, with their queue in " + headerQueue,
		Subjects:    []string{s.o.subjectPrefix + ".dead.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     s.o.storage,
		Replicas:    s.o.replicas,
		MaxAge:      s.o.deadMaxAge,
		Duplicates:  2 * time.Minute,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("create the dead-letter stream %s: %w", s.deadStream(), err)
	}
	s.dead = true
	return nil
}

// onMaxDeliveries dead-letters a message the server will not deliver
// again: it reached max_deliver.
func (s *store) onMaxDeliveries(m *nats.Msg) {
	var adv struct {
		Stream   string `json:"stream"`
		Consumer string `json:"consumer"`
		Seq      uint64 `json:"stream_seq"`
	}
	if err := json.Unmarshal(m.Data, &adv); err != nil || adv.Consumer != consumerName ||
		!strings.HasPrefix(adv.Stream, s.o.streamPrefix+"_") || adv.Stream == s.deadStream() {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.deadLetterSeq(ctx, adv.Stream, adv.Seq); err != nil {
			s.log.Error("nats: dead-letter a message that reached max_deliver", "stream", adv.Stream, "seq", adv.Seq, "error", err)
		}
	}()
}

func (s *store) deadLetterSeq(ctx context.Context, stream string, seq uint64) error {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // another connection moved it
	}
	if err != nil {
		return err
	}
	queue, ok := untoken(strings.TrimPrefix(stream, s.o.streamPrefix+"_"))
	if !ok {
		return fmt.Errorf("stream %s names no kombu queue", stream)
	}
	reason := fmt.Sprintf("delivered %d times (max_deliver) without an ack", s.o.maxDeliver)
	if err := s.deadLetter(ctx, queue, stream+"/"+strconv.FormatUint(seq, 10), raw.Data, reason); err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	return nil
}

// Watch wakes consumers with a core subscription on their queues'
// subjects: every publish to a queue reaches it, besides the stream.
func (s *store) Watch(queues []string) (<-chan struct{}, func()) {
	wake := make(chan struct{}, 1)
	var subs []*nats.Subscription
	for _, q := range queues {
		_, subject, err := s.names(q)
		if err != nil {
			continue
		}
		sub, err := s.nc.Subscribe(subject, func(*nats.Msg) {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		if err != nil {
			s.log.Debug("nats: watch a queue (polling instead)", "queue", q, "error", err)
			continue
		}
		subs = append(subs, sub)
	}
	return wake, func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
}

// Binding tables: one key per exchange in the key-value bucket
// <stream_prefix>_bindings, its value a JSON array of [routing key,
// pattern, queue] rows; updates compare the revision they read.

// bindings returns the binding bucket, watched into s.tables. Without
// create a missing bucket is nil (deleting a queue or an exchange makes
// none); publishes create it, so that a publish through an exchange never
// looks for a missing bucket again.
func (s *store) bindings(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	s.kvOnce.Lock()
	defer s.kvOnce.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	bucket := s.o.streamPrefix + "_bindings"
	kv, err := s.js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if !create {
			return nil, nil
		}
		kv, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: "kombu binding tables", History: 1,
			Storage: s.o.storage, Replicas: s.o.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			kv, err = s.js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("binding bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("watch binding bucket %s: %w", bucket, err)
	}
	s.kv, s.watcher = kv, w
	s.wg.Add(1)
	go s.mirror(w)
	return kv, nil
}

// mirror keeps s.tables up to date with the bucket's changes, from every
// connection of every process.
func (s *store) mirror(w jetstream.KeyWatcher) {
	defer s.wg.Done()
	ready := false
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-s.stop:
			return
		case e, ok = <-w.Updates():
			if !ok {
				return
			}
		}
		if e == nil { // the initial values are in
			if !ready {
				ready = true
				close(s.tablesReady)
			}
			continue
		}
		var rows []virtual.Binding
		if e.Operation() == jetstream.KeyValuePut {
			var err error
			if rows, err = decodeRows(e.Value()); err != nil {
				s.log.Warn("nats: a binding table that is not kombu's", "key", e.Key(), "error", err)
				continue
			}
		}
		s.setTable(e.Key(), rows, e.Revision())
	}
}

// setTable keeps rows as the table under key unless the mirror has a
// later revision already.
func (s *store) setTable(key string, rows []virtual.Binding, rev uint64) {
	s.tablesMu.Lock()
	defer s.tablesMu.Unlock()
	if t, ok := s.tables[key]; ok && t.rev > rev {
		return
	}
	s.tables[key] = table{rows: rows, rev: rev}
}

func encodeRows(rows []virtual.Binding) []byte {
	out := make([][3]string, len(rows))
	for i, b := range rows {
		out[i] = [3]string{b.RoutingKey, b.Pattern, b.Queue}
	}
	data, _ := json.Marshal(out)
	return data
}

func decodeRows(data []byte) ([]virtual.Binding, error) {
	var in [][3]string
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, err
	}
	rows := make([]virtual.Binding, len(in))
	for i, r := range in {
		rows[i] = virtual.Binding{RoutingKey: r[0], Pattern: r[1], Queue: r[2]}
	}
	return rows, nil
}

// updateTable applies change to the table under key until no other writer
// came between the read and the write.
func (s *store) updateTable(ctx context.Context, kv jetstream.KeyValue, key string,
	change func([]virtual.Binding) ([]virtual.Binding, bool)) error {
	for {
		var rows []virtual.Binding
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read binding table %s: %w", key, err)
		default:
			rev = e.Revision()
			if rows, err = decodeRows(e.Value()); err != nil {
				return fmt.Errorf("binding table %s: %w", key, err)
			}
		}
		rows, changed := change(rows)
		if !changed {
			return nil
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = kv.Create(ctx, key, encodeRows(rows))
		} else {
			newRev, err = kv.Update(ctx, key, encodeRows(rows), rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write binding table %s: %w", key, err)
		}
		// This connection's next publish routes with it at once; the
		// watcher brings it to the others.
		s.setTable(key, rows, newRev)
		return nil
	}
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

func (s *store) Bind(ctx context.Context, exchange string, b virtual.Binding) error {
	key, err := token("exchange", exchange)
	if err != nil {
		return err
	}
	kv, err := s.bindings(ctx, true)
	if err != nil {
		return err
	}
	return s.updateTable(ctx, kv, key, func(rows []virtual.Binding) ([]virtual.Binding, bool) {
		if slices.Contains(rows, b) {
			return rows, false
		}
		return append([]virtual.Binding{b}, rows...), true
	})
}

func (s *store) Unbind(ctx context.Context, exchange string, b virtual.Binding) error {
	key, err := token("exchange", exchange)
	if err != nil {
		return err
	}
	kv, err := s.bindings(ctx, false)
	if err != nil || kv == nil {
		return err
	}
	return s.updateTable(ctx, kv, key, func(rows []virtual.Binding) ([]virtual.Binding, bool) {
		kept := slices.DeleteFunc(slices.Clone(rows), func(r virtual.Binding) bool {
			return r.RoutingKey == b.RoutingKey && r.Queue == b.Queue
		})
		return kept, len(kept) != len(rows)
	})
}

// Bindings reads the exchange's table from the mirror of the bucket: a
// binding made on another connection reaches this one's publishes once its
// watcher has it (the server pushes it at once).
func (s *store) Bindings(ctx context.Context, exchange string) ([]virtual.Binding, error) {
	var key string
	if k, ok := s.exchangeKeys.Load(exchange); ok {
		key = k.(string)
	} else {
		var err error
		if key, err = token("exchange", exchange); err != nil {
			return nil, err
		}
		s.exchangeKeys.Store(exchange, key)
	}
	if _, err := s.bindings(ctx, true); err != nil {
		return nil, err
	}
	select {
	case <-s.tablesReady:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.tablesMu.Lock()
	defer s.tablesMu.Unlock()
	return s.tables[key].rows, nil
}

func (s *store) DeleteExchange(ctx context.Context, exchange string) error {
	key, err := token("exchange", exchange)
	if err != nil {
		return err
	}
	kv, err := s.bindings(ctx, false)
	if err != nil || kv == nil {
		return err
	}
	if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete binding table %s: %w", key, err)
	}
	s.tablesMu.Lock()
	s.tables[key] = table{rev: s.tables[key].rev}
	s.tablesMu.Unlock()
	return nil
}

// Close flushes the settlements the connection sent (naks and acks are
// fire-and-forget) and closes the NATS connection.
func (s *store) Close() error {
	close(s.stop)
	if s.watcher != nil {
		_ = s.watcher.Stop()
	}
	if s.advisory != nil {
		_ = s.advisory.Unsubscribe()
	}
	if s.pull != nil {
		s.pull.close()
	}
	s.wg.Wait()
	err := s.nc.FlushTimeout(5 * time.Second)
	s.nc.Close()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("flush settlements: %w", err)
	}
	return nil
}
