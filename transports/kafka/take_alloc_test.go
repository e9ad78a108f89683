package kafka

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// testGroup is a group member holding partition 0, with no client: enough
// to hand records out and settle them.
func testGroup() *group {
	s := &store{o: &options{commitEvery: defaultCommitEvery, commitInterval: defaultCommitInterval}}
	return &group{
		s: s, commitSig: make(chan struct{}, 1), commitFull: make(chan struct{}, 1),
		room: make(chan struct{}, 1), arrived: make(chan struct{}),
		parts: map[int32]*part{0: {epoch: 1, t: newTracker(), pos: -1, committed: -1}},
	}
}

// TestTakeAndAckAllocs budgets handing out a batch of records and acking
// each: two allocations a batch (its Taken slice and its receipts), none
// an ack (an ack marks the offset; the commit is the background's).
func TestTakeAndAckAllocs(t *testing.T) {
	const batch = 100
	g := testGroup()
	recs := make([]kgo.Record, 0, 1<<16)
	next := int64(0)
	s := g.s
	val := []byte("{}")
	g.buf = make([]*kgo.Record, 0, batch)
	allocs := testing.AllocsPerRun(50, func() {
		for range batch {
			recs = append(recs, kgo.Record{Offset: next, Value: val})
			g.buf = append(g.buf, &recs[len(recs)-1])
			next++
		}
		ts := g.takeNow(batch)
		if len(ts) != batch {
			t.Fatalf("took %d, want %d", len(ts), batch)
		}
		for _, tk := range ts {
			if err := s.AckQuick(tk.Receipt); err != nil {
				t.Fatal(err)
			}
		}
	})
	// g.buf's growth is the test's, amortised to nothing over the runs.
	if allocs > 2 {
		t.Errorf("a batch of %d taken and acked: %.0f allocations, want at most 2", batch, allocs)
	}
	if cp := g.parts[0].t.commitPoint(); cp != next {
		t.Fatalf("commit point %d after acking all %d, want %d", cp, next, next)
	}
}

// TestBatchFindsAFailedRecordsPublishing: records share one promise,
// which charges a failure to the publishing the record was made for,
// the second record of a publishing (routed to two queues) included.
func TestBatchFindsAFailedRecordsPublishing(t *testing.T) {
	b := newBatch(3)
	var recs []*kgo.Record
	for i, n := range []int{1, 2, 1} { // publishing 1 goes to two queues
		b.cur = i
		for range n {
			recs = append(recs, b.record("t", []byte("x")))
		}
	}
	b.wg.Add(len(recs))
	boom := errors.New("boom")
	b.promise(recs[0], nil)
	b.promise(recs[2], boom) // publishing 1's second record
	b.promise(recs[1], nil)
	b.promise(recs[3], boom)
	b.wg.Wait()
	if b.errs[0] != nil || !errors.Is(b.errs[1], boom) || !errors.Is(b.errs[2], boom) {
		t.Fatalf("errors by publishing: %v", b.errs)
	}
}
