package kafka

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/virtual"
)

// group is this connection's member of a queue's consumer group: a
// client that fetches the records of the partitions assigned to it ahead
// of the consumers (up to fetch_buffer), hands them out in offset order,
// and commits each partition's offsets as its records are settled.
type group struct {
	s      *store
	queue  string
	topic  string
	cl     *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // the fetching goroutine ended

	commitMu   sync.Mutex    // one commit at a time
	commitSig  chan struct{} // an ack made a commit due
	commitFull chan struct{} // commit_every records were settled since the last commit

	mu          sync.Mutex
	stopped     bool
	assigned    chan struct{} // closed at the first assignment
	wasAssigned bool
	arrived     chan struct{} // closed and replaced when records arrive or come back
	room        chan struct{} // the buffer has room again
	buf         []*kgo.Record // fetched, not handed out; per partition in offset order
	again       []*again      // restored, handed out before buf
	parts       map[int32]*part
	epochs      int64
	settledN    int // records settled since the last commit gathered its offsets
}

// part is an assigned partition.
type part struct {
	epoch     int64 // this assignment's number: receipts from an earlier one are stale
	t         *tracker
	pos       int64  // one past the last record fetched; -1: none yet
	committed int64  // the offset last committed; -1: none by this member
	marked    []span // offsets a member before this one handed out unsettled (see redelivered.go)
}

// again is a restored record.
type again struct {
	rc        *receipt
	env       []byte
	delivered bool // it reached a consumer (and env is marked redelivered)
}

func (s *store) group(queue string) (*group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, transport.ErrClosed
	}
	if g := s.groups[queue]; g != nil {
		return g, nil
	}
	g := &group{
		s: s, queue: queue, topic: topicName(queue),
		done:       make(chan struct{}),
		commitSig:  make(chan struct{}, 1),
		commitFull: make(chan struct{}, 1),
		assigned:   make(chan struct{}),
		arrived:    make(chan struct{}),
		room:       make(chan struct{}, 1),
		parts:      map[int32]*part{},
	}
	opts := append(slices.Clip(s.base),
		kgo.ConsumerGroup(groupName(queue)),
		kgo.ConsumeTopics(g.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // auto.offset.reset=earliest
		kgo.DisableAutoCommit(),                           // enable.auto.commit=False: committed after acks
		// librdkafka's default assignors, which Kombu's consumers use:
		// a group with Python and Go members needs a protocol both have.
		kgo.Balancers(kgo.RangeBalancer(), kgo.RoundRobinBalancer()),
		// Records of a poll are buffered before a rebalance can revoke
		// their partition: the revocation then finds them and drops them.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(g.onAssigned),
		kgo.OnPartitionsRevoked(g.onRevoked),
		kgo.OnPartitionsLost(g.onLost),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	g.cl = cl
	g.ctx, g.cancel = context.WithCancel(context.Background())
	s.groups[queue] = g
	go g.fetch()
	go g.commits()
	return g, nil
}

// fetch polls records into the buffer while it has room.
func (g *group) fetch() {
	defer close(g.done)
	for {
		g.mu.Lock()
		room := g.s.o.buffered - len(g.buf)
		g.mu.Unlock()
		if room <= 0 {
			select {
			case <-g.room:
			case <-g.ctx.Done():
				return
			}
			continue
		}
		fs := g.cl.PollRecords(g.ctx, room)
		if g.ctx.Err() != nil || fs.IsClientClosed() {
			g.cl.AllowRebalance()
			return
		}
		failed := false
		fs.EachError(func(topic string, p int32, err error) {
			failed = true
			if !errors.Is(err, context.Canceled) {
				g.s.log.Debug("kafka: fetch", "topic", topic, "partition", p, "error", err)
			}
		})
		added := false
		g.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			pt := g.parts[r.Partition]
			if pt == nil || r.Offset < pt.pos {
				return // revoked, or fetched before
			}
			pt.pos = r.Offset + 1
			g.buf = append(g.buf, r)
			added = true
		})
		if added {
			close(g.arrived)
			g.arrived = make(chan struct{})
		}
		g.mu.Unlock()
		g.cl.AllowRebalance()
		if added {
			g.s.wake(g.queue)
		} else if failed {
			select { // a failing fetch answers at once: do not spin
			case <-time.After(100 * time.Millisecond):
			case <-g.ctx.Done():
				return
			}
		}
	}
}

func (g *group) onAssigned(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	// The previous owner's commit metadata says which records it handed
	// out unsettled: they are delivered marked redelivered.
	var committed kadm.OffsetResponses
	if len(m[g.topic]) > 0 {
		fctx, cancel := context.WithTimeout(ctx, opTimeout)
		var err error
		committed, err = g.s.adm.FetchOffsets(fctx, groupName(g.queue))
		cancel()
		if err != nil {
			g.s.log.Debug("kafka: reading the commit metadata failed; redelivered records are not marked", "topic", g.topic, "error", err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range m[g.topic] {
		g.epochs++
		pt := &part{epoch: g.epochs, t: newTracker(), pos: -1, committed: -1}
		if c, ok := committed.Lookup(g.topic, p); ok && c.Err == nil {
			pt.marked = decodeDelivered(c.Metadata)
		}
		g.parts[p] = pt
	}
	if !g.wasAssigned {
		g.wasAssigned = true
		close(g.assigned)
	}
	g.s.log.Debug("kafka: partitions assigned", "topic", g.topic, "partitions", m[g.topic])
}

// onRevoked commits what was settled in the revoked partitions and
// forgets them: their records fetched and not handed out are dropped,
// and those handed out and not settled are the new owner's to deliver
// (at least once), so that their late acks commit nothing here.
func (g *group) onRevoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	offs, meta := g.forget(m[g.topic], true)
	if len(offs) > 0 {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		g.commitMu.Lock()
		defer g.commitMu.Unlock()
		if err := commitErr(cl, cctx, g.topic, offs, meta); err != nil {
			g.s.log.Warn("kafka: committing the revoked partitions' settled records failed; the new owner delivers them again", "topic", g.topic, "error", err)
		}
	}
}

// onLost forgets the partitions without committing: the group has moved
// on (this member's session expired).
func (g *group) onLost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	_, _ = g.forget(m[g.topic], false)
	g.s.log.Warn("kafka: partitions lost (session expired); their unsettled records are delivered again", "topic", g.topic, "partitions", m[g.topic])
}

func (g *group) forget(ps []int32, collect bool) (map[string]map[int32]kgo.EpochOffset, map[int32]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var offs map[string]map[int32]kgo.EpochOffset
	meta := map[int32]string{}
	for _, p := range ps {
		pt := g.parts[p]
		if pt == nil {
			continue
		}
		if cp := pt.t.commitPoint(); collect && cp >= 0 {
			if offs == nil {
				offs = map[string]map[int32]kgo.EpochOffset{g.topic: {}}
			}
			offs[g.topic][p] = kgo.EpochOffset{Epoch: -1, Offset: cp}
			meta[p] = g.metaLocked(p, pt)
		}
		delete(g.parts, p)
	}
	g.buf = slices.DeleteFunc(g.buf, func(r *kgo.Record) bool { return g.parts[r.Partition] == nil })
	g.again = slices.DeleteFunc(g.again, func(a *again) bool { return g.parts[a.rc.rec.Partition] == nil })
	select {
	case g.room <- struct{}{}:
	default:
	}
	return offs, meta
}

// metaLocked is the partition's commit metadata: the offsets handed to
// consumers and not committed, but for those restored unmarked (taken,
// never delivered).
func (g *group) metaLocked(p int32, pt *part) string {
	offs := pt.t.offsets()
	if len(offs) == 0 {
		return ""
	}
	for _, a := range g.again {
		if a.rc.rec.Partition == p && !a.delivered {
			offs = slices.DeleteFunc(offs, func(o int64) bool { return o == a.rc.rec.Offset })
		}
	}
	return encodeDelivered(offs)
}

// takeNow hands out up to max records without waiting: restored ones
// first, then fetched ones.
func (g *group) takeNow(max int) []virtual.Taken {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ts []virtual.Taken
	if n := min(max, len(g.again)+len(g.buf)); n > 0 {
		ts = make([]virtual.Taken, 0, n) // one allocation for a batch, not one per doubling
	}
	for len(ts) < max && len(g.again) > 0 {
		a := g.again[0]
		g.again = g.again[1:]
		ts = append(ts, virtual.Taken{Envelope: a.env, Receipt: a.rc})
	}
	n := min(max-len(ts), len(g.buf))
	if n <= 0 {
		return ts
	}
	rcs := make([]receipt, n) // the batch's receipts in one allocation
	for i, r := range g.buf[:n] {
		pt := g.parts[r.Partition]
		pt.t.handOut(r.Offset)
		rcs[i] = receipt{g: g, rec: r, epoch: pt.epoch}
		ts = append(ts, virtual.Taken{Envelope: r.Value, Receipt: &rcs[i],
			Redelivered: inSpans(pt.marked, r.Offset)})
	}
	clear(g.buf[:n])
	if n == len(g.buf) {
		g.buf = g.buf[:0] // kept for the next fetch, not grown again from nothing
	} else {
		g.buf = g.buf[n:]
	}
	select {
	case g.room <- struct{}{}:
	default:
	}
	return ts
}

// owns reports whether the receipt's partition is still assigned as it
// was when the record was handed out.
func (g *group) owns(rc *receipt) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	pt := g.parts[rc.rec.Partition]
	return !g.stopped && pt != nil && pt.epoch == rc.epoch
}

// settle marks the record settled and makes a commit due.
func (g *group) settle(rc *receipt) {
	g.mu.Lock()
	pt := g.parts[rc.rec.Partition]
	if g.stopped || pt == nil || pt.epoch != rc.epoch {
		g.mu.Unlock()
		g.s.log.Debug("kafka: a settled record's partition moved to another consumer, which delivers it again",
			"topic", g.topic, "partition", rc.rec.Partition, "offset", rc.rec.Offset)
		return
	}
	pt.t.settle(rc.rec.Offset)
	g.settledN++
	full := g.settledN >= g.s.o.commitEvery
	g.mu.Unlock()
	select {
	case g.commitSig <- struct{}{}:
	default:
	}
	if full {
		select {
		case g.commitFull <- struct{}{}:
		default:
		}
	}
}

// restore puts the record back before the records fetched after it.
func (g *group) restore(rc *receipt, env []byte) {
	g.mu.Lock()
	pt := g.parts[rc.rec.Partition]
	if g.stopped || pt == nil || pt.epoch != rc.epoch {
		g.mu.Unlock()
		return // the new owner delivers it again
	}
	i, _ := slices.BinarySearchFunc(g.again, rc.rec.Offset, func(a *again, off int64) int {
		return int(a.rc.rec.Offset - off)
	})
	g.again = slices.Insert(g.again, i, &again{rc: rc, env: env, delivered: !bytes.Equal(env, rc.rec.Value)})
	close(g.arrived)
	g.arrived = make(chan struct{})
	g.mu.Unlock()
	g.s.wake(g.queue)
}

// dropReady forgets the fetched records a purge deleted, and settles the
// restored ones (a purge removes ready records).
func (g *group) dropReady(ends kadm.ListedOffsets) {
	g.mu.Lock()
	defer g.mu.Unlock()
	end := func(p int32) int64 {
		if lo, ok := ends.Lookup(g.topic, p); ok {
			return lo.Offset
		}
		return -1
	}
	g.buf = slices.DeleteFunc(g.buf, func(r *kgo.Record) bool { return r.Offset < end(r.Partition) })
	g.again = slices.DeleteFunc(g.again, func(a *again) bool {
		if a.rc.rec.Offset >= end(a.rc.rec.Partition) {
			return false
		}
		if pt := g.parts[a.rc.rec.Partition]; pt != nil && pt.epoch == a.rc.epoch {
			pt.t.settle(a.rc.rec.Offset)
		}
		return true
	})
	select {
	case g.commitSig <- struct{}{}:
	default:
	}
	select {
	case g.room <- struct{}{}:
	default:
	}
}

// unsettled counts the records handed out and neither settled nor
// restored.
func (g *group) unsettled() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, pt := range g.parts {
		n += pt.t.unsettled()
	}
	return n - len(g.again)
}

func (g *group) arrivals() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.arrived
}

func (g *group) waitAssigned(ctx context.Context) bool {
	select {
	case <-g.assigned:
		return true
	case <-ctx.Done():
		return false
	}
}

// lagging reports whether the brokers hold records of this member's
// partitions past those it fetched.
func (g *group) lagging(ctx context.Context) (bool, error) {
	g.mu.Lock()
	pos := make(map[int32]int64, len(g.parts))
	for p, pt := range g.parts {
		pos[p] = pt.pos
	}
	g.mu.Unlock()
	if len(pos) == 0 {
		return false, nil
	}
	ends, err := g.s.adm.ListEndOffsets(ctx, g.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return false, err
	}
	var starts kadm.ListedOffsets
	committed := g.cl.CommittedOffsets()[g.topic]
	for p, at := range pos {
		lo, ok := ends.Lookup(g.topic, p)
		if !ok {
			continue
		}
		if at < 0 { // nothing fetched yet: from the committed offset, or the log's start
			if c, ok := committed[p]; ok && c.Offset >= 0 {
				at = c.Offset
			} else {
				if starts == nil {
					if starts, err = g.s.adm.ListStartOffsets(ctx, g.topic); err != nil {
						return false, err
					}
				}
				at = 0
				if so, ok := starts.Lookup(g.topic, p); ok {
					at = so.Offset
				}
			}
		}
		if lo.Offset > at {
			return true, nil
		}
	}
	return false, nil
}

// commits commits what acks made due, in the background, one commit at a
// time and at most every commit_interval, or sooner once commit_every
// records were settled since the last one, so that many acks share one
// commit. Close, a revocation and a count of the queue commit at once.
func (g *group) commits() {
	var last time.Time
	for {
		select {
		case <-g.commitSig:
		case <-g.ctx.Done():
			return
		}
		if wait := g.s.o.commitInterval - time.Since(last); wait > 0 {
			timer := time.NewTimer(wait) // at most one per commit_interval
			select {
			case <-timer.C:
			case <-g.commitFull:
			case <-g.ctx.Done():
				timer.Stop()
				return
			}
			timer.Stop()
		}
		select { // this commit takes what made it full
		case <-g.commitFull:
		default:
		}
		last = time.Now()
		if err := g.commitNow(g.ctx, false); err != nil && g.ctx.Err() == nil {
			g.s.log.Warn("kafka: commit failed; retried at the next ack", "topic", g.topic, "error", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-g.ctx.Done():
				return
			}
			select {
			case g.commitSig <- struct{}{}:
			default:
			}
		}
	}
}

// commitNow commits each assigned partition's commit point that moved.
// With all, it commits every partition a record was handed out from, so
// that the metadata names those delivered and unsettled (at close).
func (g *group) commitNow(ctx context.Context, all bool) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	g.settledN = 0
	offs := map[string]map[int32]kgo.EpochOffset{}
	epochs := map[int32]int64{}
	meta := map[int32]string{}
	for p, pt := range g.parts {
		if cp := pt.t.commitPoint(); cp > pt.committed || all && cp >= 0 {
			meta[p] = g.metaLocked(p, pt)
			if offs[g.topic] == nil {
				offs[g.topic] = map[int32]kgo.EpochOffset{}
			}
			offs[g.topic][p] = kgo.EpochOffset{Epoch: -1, Offset: cp}
			epochs[p] = pt.epoch
		}
	}
	g.mu.Unlock()
	if len(offs) == 0 {
		return nil
	}
	if err := commitErr(g.cl, ctx, g.topic, offs, meta); err != nil {
		return err
	}
	g.mu.Lock()
	for p, eo := range offs[g.topic] {
		if pt := g.parts[p]; pt != nil && pt.epoch == epochs[p] && eo.Offset > pt.committed {
			pt.committed = eo.Offset
		}
	}
	g.mu.Unlock()
	return nil
}

// commitErr commits synchronously and returns the first error, the
// request's or a partition's.
func commitErr(cl *kgo.Client, ctx context.Context, topic string, offs map[string]map[int32]kgo.EpochOffset, meta map[int32]string) error {
	ctx = kgo.PreCommitFnContext(ctx, withMetadata(topic, meta))
	var out error
	cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			out = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && out == nil {
					out = err
				}
			}
		}
	})
	return out
}

// stop commits what was settled and leaves the group. Unsettled records
// are delivered again to the group's next member.
func (g *group) stop() {
	g.cancel()
	<-g.done
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	if err := g.commitNow(ctx, true); err != nil {
		g.s.log.Warn("kafka: the last commit failed; settled records may be delivered again", "topic", g.topic, "error", err)
	}
	cancel()
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cl.Close()
}
