package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// store is Kombu's Kafka channel as a virtual.Store: a topic per queue,
// the envelope as the record's value, one consumer group member per queue
// (group "<queue>-consumer-group", earliest offset, no auto-commit), and
// offsets committed after acks, in order per partition.
type store struct {
	o    *options
	log  *slog.Logger
	base []kgo.Opt
	cl   *kgo.Client // produces and administers; consumers have their own
	adm  *kadm.Client

	mu       sync.Mutex
	closed   bool
	topics   map[string]bool // topics this store made or saw, so that Put does not ask each time
	groups   map[string]*group
	tables   map[string][]virtual.Binding
	watchers map[*watcher]struct{}
}

var (
	_ virtual.Store      = (*store)(nil)
	_ virtual.BatchTaker = (*store)(nil)
	_ virtual.Rejecter   = (*store)(nil)
	_ virtual.Waker      = (*store)(nil)
	_ virtual.QuickAcker = (*store)(nil)
)

func newStore(o *options, cfg transport.Config, log *slog.Logger) (*store, error) {
	base := append(o.clientOpts(cfg), kgo.WithLogger(kgoLogger{log}))
	popts := append(slices.Clip(base),
		// The envelope is the record: one record fits in one batch, and a
		// bigger one is refused before it is sent (Put).
		kgo.ProducerBatchMaxBytes(int32(o.maxRecordBytes+512)),
		kgo.ProducerLinger(0),
		// Records have no key: librdkafka, under Kombu, spreads keyless
		// records over the partitions one by one (consistent_random), so
		// that every partition, and every member consuming one, gets its
		// share. franz-go's default sticks to one partition per batch.
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
	)
	cl, err := kgo.NewClient(popts...)
	if err != nil {
		return nil, err
	}
	return &store{
		o: o, log: log, base: base, cl: cl, adm: kadm.NewClient(cl),
		topics:   map[string]bool{},
		groups:   map[string]*group{},
		tables:   map[string][]virtual.Binding{},
		watchers: map[*watcher]struct{}{},
	}, nil
}

// ping asks for the cluster's metadata, as Kombu's list_topics does.
func (s *store) ping(ctx context.Context) error {
	_, err := s.adm.BrokerMetadata(ctx)
	return err
}

// brokerErr turns the broker's refusals into the transport's errors.
func brokerErr(topic string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.InvalidReplicationFactor),
		errors.Is(err, kerr.InvalidPartitions):
		return fmt.Errorf("topic %q: the broker refuses it: %w: %v", topic, transport.ErrNotSupported, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("topic %q: %w: %v", topic, transport.ErrAccessRefused, err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("topic %q: %w: %v", topic, transport.ErrLimitExceeded, err)
	}
	return err
}

// ensureTopic makes the topic, as Kombu's _new_queue does, with
// num_partitions and replication_factor, unless it is known to exist.
func (s *store) ensureTopic(ctx context.Context, topic string) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	s.mu.Lock()
	known := s.topics[topic]
	s.mu.Unlock()
	if known {
		return nil
	}
	resp, err := s.adm.CreateTopic(ctx, s.o.numPartitions, s.o.replication, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return brokerErr(topic, fmt.Errorf("create topic %q: %w", topic, err))
	}
	s.mu.Lock()
	s.topics[topic] = true
	s.mu.Unlock()
	return nil
}

func (s *store) forgetTopic(topic string) {
	s.mu.Lock()
	delete(s.topics, topic)
	s.mu.Unlock()
}

func (s *store) topicExists(ctx context.Context, topic string) (bool, error) {
	tds, err := s.adm.ListTopics(ctx, topic)
	if err != nil {
		return false, err
	}
	td, ok := tds[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return false, nil
	}
	return td.Err == nil, td.Err
}

// DeclareQueue makes the queue's topic.
func (s *store) DeclareQueue(ctx context.Context, queue string) error {
	return s.ensureTopic(ctx, topicName(queue))
}

// Size is what Kombu's _size counts, for every partition: the end offset
// less the group's committed offset (or the log start where nothing is
// committed), less the records this connection holds unsettled.
func (s *store) Size(ctx context.Context, queue string) (int, bool, error) {
	topic := topicName(queue)
	if checkTopic(topic) != nil {
		return 0, false, nil
	}
	ok, err := s.topicExists(ctx, topic)
	if err != nil || !ok {
		return 0, false, err
	}
	n, _, err := s.ready(ctx, queue)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return 0, false, nil // deleted since the metadata said it was there
	}
	return n, true, err
}

// ready counts the queue's ready records and returns its end offsets.
func (s *store) ready(ctx context.Context, queue string) (int, kadm.ListedOffsets, error) {
	topic := topicName(queue)
	g := s.existingGroup(queue)
	if g != nil {
		if err := g.commitNow(ctx, false); err != nil {
			return 0, nil, err
		}
	}
	ends, err := s.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, nil, fmt.Errorf("list end offsets of %q: %w", topic, err)
	}
	starts, err := s.adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, nil, fmt.Errorf("list start offsets of %q: %w", topic, err)
	}
	committed, err := s.adm.FetchOffsets(ctx, groupName(queue))
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return 0, nil, fmt.Errorf("fetch the offsets of group %q: %w", groupName(queue), err)
	}
	n := 0
	ends.Each(func(lo kadm.ListedOffset) {
		from := int64(0)
		if so, ok := starts.Lookup(topic, lo.Partition); ok {
			from = so.Offset
		}
		if c, ok := committed.Lookup(topic, lo.Partition); ok && c.Err == nil && c.At > from {
			from = c.At
		}
		if lo.Offset > from {
			n += int(lo.Offset - from)
		}
	})
	if g != nil {
		n -= g.unsettled()
	}
	return max(n, 0), ends, nil
}

// Purge deletes the queue's records up to its end offsets (Kafka's
// DeleteRecords), for every consumer group, and returns how many of them
// were ready. Records this connection holds unsettled stay held.
func (s *store) Purge(ctx context.Context, queue string) (int, error) {
	topic := topicName(queue)
	if checkTopic(topic) != nil {
		return 0, nil
	}
	if ok, err := s.topicExists(ctx, topic); err != nil || !ok {
		return 0, err
	}
	n, ends, err := s.ready(ctx, queue)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	to := kadm.Offsets{}
	ends.Each(func(lo kadm.ListedOffset) {
		if lo.Offset > 0 {
			to.Add(kadm.Offset{Topic: topic, Partition: lo.Partition, At: lo.Offset, LeaderEpoch: -1})
		}
	})
	if len(to) > 0 {
		resp, err := s.adm.DeleteRecords(ctx, to)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return 0, fmt.Errorf("delete the records of %q: %w", topic, err)
		}
	}
	if g := s.existingGroup(queue); g != nil {
		g.dropReady(ends)
	}
	return n, nil
}

// DeleteQueue deletes the topic, and the queue's consumer group with its
// committed offsets, so that a topic made again under the name starts
// from its beginning.
func (s *store) DeleteQueue(ctx context.Context, queue string) (int, error) {
	topic := topicName(queue)
	for ex, rows := range s.tableSnapshot() {
		for _, b := range rows {
			if b.Queue == queue {
				_ = s.Unbind(ctx, ex, b)
			}
		}
	}
	if checkTopic(topic) != nil {
		return 0, nil
	}
	ok, err := s.topicExists(ctx, topic)
	if err != nil || !ok {
		s.stopGroup(queue)
		return 0, err
	}
	n, _, err := s.ready(ctx, queue)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		s.stopGroup(queue)
		s.forgetTopic(topic)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s.stopGroup(queue)
	s.forgetTopic(topic)
	resp, err := s.adm.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return 0, fmt.Errorf("delete topic %q: %w", topic, err)
	}
	// Other members may still be in the group: its offsets then stay,
	// and the group's consumers reset to the new topic's start.
	_, _ = s.adm.DeleteGroups(ctx, groupName(queue))
	return n, nil
}

// batchKey marks a context whose Puts only make their records: the
// connection's PublishBatch produces them all at once and waits for all.
type batchKey struct{}

// batch collects the results of the records a PublishBatch produced.
// Its records come from one array, one per publishing (a publishing
// routed to several queues makes more, allocated alone), and share one
// promise, which finds a failed record's publishing by its place: a
// record and a closure allocated per message cost a pipelined publish
// more than franz-go's own work for it.
type batch struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	cur     int                          // the index of the publishing being routed (set and read in the publisher's goroutine)
	errs    []error                      // by publishing
	tables  map[string][]virtual.Binding // the exchanges' tables, read once per batch
	recs    []kgo.Record                 // the records, by publishing, while each has one
	used    []bool                       // recs[i] is produced
	extra   map[*kgo.Record]int          // records past the first of a publishing, and their publishing
	queued  []*kgo.Record                // made by Puts, produced by produce (the publisher's goroutine only)
	promise func(*kgo.Record, error)
}

func newBatch(n int) *batch {
	b := &batch{errs: make([]error, n), recs: make([]kgo.Record, n), used: make([]bool, n), queued: make([]*kgo.Record, 0, n)}
	b.promise = func(r *kgo.Record, err error) {
		if err != nil {
			b.fail(b.owner(r), brokerErr(r.Topic, err))
		}
		b.wg.Done()
	}
	return b
}

// record returns a record for the publishing being routed.
func (b *batch) record(topic string, value []byte) *kgo.Record {
	i := b.cur
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.used[i] {
		b.used[i] = true
		b.recs[i] = kgo.Record{Topic: topic, Value: value}
		return &b.recs[i]
	}
	r := &kgo.Record{Topic: topic, Value: value}
	if b.extra == nil {
		b.extra = map[*kgo.Record]int{}
	}
	b.extra[r] = i
	return r
}

// owner is the index of the publishing a record was produced for.
func (b *batch) owner(r *kgo.Record) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.extra[r]; ok {
		return i
	}
	for i := range b.recs {
		if &b.recs[i] == r {
			return i
		}
	}
	return b.cur // not reached: every record is the batch's
}

// produce hands every queued record to the client, in the order the
// Puts made them, in one tight loop: records produced while the batch is
// still being routed (a few microseconds each) leave franz-go, lingering
// 0, to send the first few alone and the rest in small requests, each a
// round trip and a request's work for the broker; handed over at once,
// they go in as few requests as a bare producer's window.
func (b *batch) produce(ctx context.Context, cl *kgo.Client) {
	b.wg.Add(len(b.queued))
	for _, r := range b.queued {
		cl.Produce(ctx, r, b.promise)
	}
	clear(b.queued)
	b.queued = b.queued[:0]
}

func (b *batch) fail(i int, err error) {
	b.mu.Lock()
	if b.errs[i] == nil {
		b.errs[i] = err
	}
	b.mu.Unlock()
}

// Put produces the envelope as the record's value, with no key and no
// headers, as Kombu's _put does, and waits for the brokers' acks (all
// in-sync replicas), unless it is part of a PublishBatch.
func (s *store) Put(ctx context.Context, m virtual.Message) error {
	topic := topicName(m.Queue)
	if err := checkTopic(topic); err != nil {
		return err
	}
	if len(m.Envelope) > s.o.maxRecordBytes {
		return fmt.Errorf("a %d-byte envelope for %q: over max_record_bytes (%d): %w",
			len(m.Envelope), topic, s.o.maxRecordBytes, transport.ErrLimitExceeded)
	}
	if err := s.ensureTopic(ctx, topic); err != nil {
		return err
	}
	if b, _ := ctx.Value(batchKey{}).(*batch); b != nil {
		b.queued = append(b.queued, b.record(topic, m.Envelope))
		return nil
	}
	rec := &kgo.Record{Topic: topic, Value: m.Envelope}
	err := s.cl.ProduceSync(ctx, rec).FirstErr()
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		// Deleted by another connection since this one made it.
		s.forgetTopic(topic)
		if err = s.ensureTopic(ctx, topic); err == nil {
			err = s.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: m.Envelope}).FirstErr()
		}
	}
	return brokerErr(topic, err)
}

// Take takes the queue's next record.
func (s *store) Take(ctx context.Context, queue string) (virtual.Taken, error) {
	ts, err := s.take(ctx, queue, 1)
	if err != nil {
		return virtual.Taken{}, err
	}
	return ts[0], nil
}

// TakeBatch takes up to max of the records fetched ahead.
func (s *store) TakeBatch(ctx context.Context, queue string, max int) ([]virtual.Taken, error) {
	return s.take(ctx, queue, max)
}

// take hands out fetched records. When none is fetched and nobody watches
// the queue (a Get), it asks the brokers whether this member's partitions
// hold records past what it fetched, and if so waits up to
// wait_time_seconds for them, so that a Get right after a confirmed
// publish finds the message, as Kombu's poll(wait_time_seconds) does.
func (s *store) take(ctx context.Context, queue string, max int) ([]virtual.Taken, error) {
	if err := checkTopic(topicName(queue)); err != nil {
		return nil, err
	}
	g, err := s.group(queue)
	if err != nil {
		return nil, err
	}
	if ts := g.takeNow(max); len(ts) > 0 {
		return ts, nil
	}
	if s.watched(queue) || s.o.waitTime <= 0 {
		return nil, transport.ErrEmpty
	}
	wctx, cancel := context.WithTimeout(ctx, s.o.waitTime)
	defer cancel()
	if !g.waitAssigned(wctx) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, transport.ErrEmpty
	}
	if more, err := g.lagging(wctx); err != nil || !more {
		if err != nil && ctx.Err() == nil && wctx.Err() == nil {
			return nil, err
		}
		if ts := g.takeNow(max); len(ts) > 0 {
			return ts, nil
		}
		return nil, transport.ErrEmpty
	}
	for {
		arrived := g.arrivals()
		if ts := g.takeNow(max); len(ts) > 0 {
			return ts, nil
		}
		select {
		case <-arrived:
		case <-wctx.Done():
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, transport.ErrEmpty
		}
	}
}

// receipt is a handed-out record: its group member, and the assignment of
// its partition it was handed out under. A partition revoked since (moved
// to another member) makes the receipt stale: the record is the new
// owner's to deliver again.
type receipt struct {
	g     *group
	rec   *kgo.Record
	epoch int64
}

// Ack settles the record; its offset is committed once every earlier
// record handed out from its partition is settled too.
func (s *store) Ack(_ context.Context, r virtual.Receipt) error { return s.AckQuick(r) }

// AckQuick is Ack: it marks the record settled, for the background
// commit, and never waits on the brokers.
func (s *store) AckQuick(r virtual.Receipt) error {
	rc := r.(*receipt)
	rc.g.settle(rc)
	return nil
}

// Restore hands the record out again, before the records fetched after it.
func (s *store) Restore(_ context.Context, r virtual.Receipt, envelope []byte) error {
	rc := r.(*receipt)
	rc.g.restore(rc, envelope)
	return nil
}

// Reject dead-letters the record to the "<queue>.dlq" topic (the record's
// value as it was, with the reason and where it came from in headers),
// and settles it only once the dead-letter topic has it: a record is
// never committed past unless it is acked or kept there.
func (s *store) Reject(ctx context.Context, r virtual.Receipt, reason string) error {
	rc := r.(*receipt)
	if !rc.g.owns(rc) {
		s.log.Info("kafka: a rejected record's partition moved to another consumer, which delivers it again; not dead-lettered here",
			"topic", rc.rec.Topic, "partition", rc.rec.Partition, "offset", rc.rec.Offset)
		return nil
	}
	dlq := rc.rec.Topic + DLQSuffix
	if err := s.ensureTopic(ctx, dlq); err != nil {
		return fmt.Errorf("dead-letter topic: %w", err)
	}
	headers := []kgo.RecordHeader{
		{Key: "kombu_queue", Value: []byte(rc.rec.Topic)},
		{Key: "kombu_partition", Value: strconv.AppendInt(nil, int64(rc.rec.Partition), 10)},
		{Key: "kombu_offset", Value: strconv.AppendInt(nil, rc.rec.Offset, 10)},
	}
	if reason != "" {
		headers = append(headers, kgo.RecordHeader{Key: transport.ErrorHeader, Value: []byte(reason)})
	}
	rec := &kgo.Record{Topic: dlq, Value: rc.rec.Value, Headers: headers}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter to %q: %w", dlq, brokerErr(dlq, err))
	}
	rc.g.settle(rc)
	return nil
}

// The routing tables live in the connection's memory, as in Kombu's
// virtual BrokerState: Kafka keeps no bindings.

func (s *store) tableSnapshot() map[string][]virtual.Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]virtual.Binding, len(s.tables))
	for k, v := range s.tables {
		out[k] = slices.Clone(v)
	}
	return out
}

func (s *store) Bind(_ context.Context, exchange string, b virtual.Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.tables[exchange], b) {
		return nil
	}
	s.tables[exchange] = append([]virtual.Binding{b}, s.tables[exchange]...)
	return nil
}

func (s *store) Unbind(_ context.Context, exchange string, b virtual.Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables[exchange] = slices.DeleteFunc(s.tables[exchange], func(x virtual.Binding) bool {
		return x.RoutingKey == b.RoutingKey && x.Queue == b.Queue
	})
	if len(s.tables[exchange]) == 0 {
		delete(s.tables, exchange)
	}
	return nil
}

func (s *store) Bindings(ctx context.Context, exchange string) ([]virtual.Binding, error) {
	b, _ := ctx.Value(batchKey{}).(*batch)
	if b != nil {
		if t, ok := b.tables[exchange]; ok {
			return t, nil
		}
	}
	s.mu.Lock()
	t := slices.Clone(s.tables[exchange])
	s.mu.Unlock()
	if b != nil {
		if b.tables == nil {
			b.tables = map[string][]virtual.Binding{}
		}
		b.tables[exchange] = t
	}
	return t, nil
}

func (s *store) DeleteExchange(_ context.Context, exchange string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tables, exchange)
	return nil
}

// watcher is a Watch of some queues.
type watcher struct {
	queues []string
	ch     chan struct{}
}

// Watch starts the queues' group members, so that their records are
// fetched ahead, and wakes the caller when records arrive.
func (s *store) Watch(queues []string) (<-chan struct{}, func()) {
	w := &watcher{queues: slices.Clone(queues), ch: make(chan struct{}, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	for _, q := range queues {
		if checkTopic(topicName(q)) == nil {
			if _, err := s.group(q); err != nil {
				s.log.Warn("kafka: could not start a consumer", "queue", q, "error", err)
			}
		}
	}
	return w.ch, func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}
}

func (s *store) watched(queue string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		if slices.Contains(w.queues, queue) {
			return true
		}
	}
	return false
}

func (s *store) wake(queue string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		if slices.Contains(w.queues, queue) {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}

// Close commits what was settled, leaves the groups and closes the
// clients.
func (s *store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	groups := s.groups
	s.groups = map[string]*group{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() { defer wg.Done(); g.stop() }()
	}
	wg.Wait()
	s.cl.Close()
	return nil
}

func (s *store) existingGroup(queue string) *group {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[queue]
}

func (s *store) stopGroup(queue string) {
	s.mu.Lock()
	g := s.groups[queue]
	delete(s.groups, queue)
	s.mu.Unlock()
	if g != nil {
		g.stop()
	}
}

// opTimeout bounds the commits the store makes on its own (at close, on
// revocation).
const opTimeout = 10 * time.Second
