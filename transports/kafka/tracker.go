package kafka

import "sort"

// tracker keeps the offsets of one partition that were handed out and
// not settled, so that the committed offset only ever passes offsets that
// are settled: a record acked out of order is committed once every
// earlier one handed out is settled too.
type tracker struct {
	pend []pending // handed out, ascending offsets; pend[0] the oldest
	next int64     // one past the highest offset handed out; -1: none yet
}

type pending struct {
	off  int64
	done bool
}

func newTracker() *tracker { return &tracker{next: -1} }

// handOut records that the record at off was handed out. Offsets come in
// ascending order, but for a record handed out again after a restore,
// which is pending already.
func (t *tracker) handOut(off int64) {
	if off < t.next {
		return // handed out again: still pending at its place
	}
	t.pend = append(t.pend, pending{off: off})
	t.next = off + 1
}

// settle marks off done and drops the settled head. It reports whether
// off was pending.
func (t *tracker) settle(off int64) bool {
	i := sort.Search(len(t.pend), func(i int) bool { return t.pend[i].off >= off })
	if i == len(t.pend) || t.pend[i].off != off || t.pend[i].done {
		return false
	}
	t.pend[i].done = true
	n := 0
	for n < len(t.pend) && t.pend[n].done {
		n++
	}
	if n > 0 {
		t.pend = t.pend[n:]
		if len(t.pend) == 0 {
			t.pend = nil
		}
	}
	return true
}

// unsettled reports how many handed-out records are not settled.
func (t *tracker) unsettled() int {
	n := 0
	for _, p := range t.pend {
		if !p.done {
			n++
		}
	}
	return n
}

// commitPoint is the offset to commit: the oldest unsettled one, or one
// past the highest handed out when all are settled; -1 when nothing was
// handed out.
func (t *tracker) commitPoint() int64 {
	if len(t.pend) > 0 {
		return t.pend[0].off
	}
	return t.next
}

// offsets returns the handed-out offsets not committed past, settled or
// not.
func (t *tracker) offsets() []int64 {
	out := make([]int64, len(t.pend))
	for i, p := range t.pend {
		out[i] = p.off
	}
	return out
}
