package kafka

import (
	"io"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A receipt from an earlier assignment of its partition (revoked since,
// and given to this member again or to another) settles nothing: its
// record is the new assignment's to deliver and commit, so a late ack
// never commits it twice, and a late requeue never hands it out twice.
func TestStaleReceiptSettlesNothing(t *testing.T) {
	g := &group{
		s:         &store{o: &options{commitEvery: defaultCommitEvery}, log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		topic:     "t",
		parts:     map[int32]*part{0: {epoch: 2, t: newTracker(), pos: -1, committed: -1}},
		commitSig: make(chan struct{}, 1),
		room:      make(chan struct{}, 1),
		arrived:   make(chan struct{}),
	}
	g.parts[0].t.handOut(5)
	stale := &receipt{g: g, rec: &kgo.Record{Partition: 0, Offset: 5, Value: []byte("v")}, epoch: 1}
	g.settle(stale)
	g.restore(stale, []byte("marked"))
	if got := g.parts[0].t.commitPoint(); got != 5 {
		t.Fatalf("a stale ack moved the commit point to %d", got)
	}
	if len(g.again) != 0 || g.owns(stale) {
		t.Fatal("a stale requeue was handed out again")
	}
	fresh := &receipt{g: g, rec: stale.rec, epoch: 2}
	g.restore(fresh, []byte("marked"))
	if ts := g.takeNow(10); len(ts) != 1 || string(ts[0].Envelope) != "marked" {
		t.Fatalf("the requeued record is not handed out again first: %v", ts)
	}
	g.settle(fresh)
	if got := g.parts[0].t.commitPoint(); got != 6 {
		t.Fatalf("commit point %d after the ack, want 6", got)
	}
}
