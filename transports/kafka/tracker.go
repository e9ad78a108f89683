package kafka

import "sort"

// tracker keeps the offsets of one partition that were handed out and
// not settled, so that the committed offset only ever passes offsets that
// are settled: a record acked out of order is committed once every
// earlier one handed out is settled too.
type tracker struct {
	// pend[head:] are handed out and not committed past, ascending
	// offsets, the oldest first. The settled head is dropped by moving
	// head, and the array is reused once all are settled, so that acks
	// in order allocate nothing.
	pend []pending
	head int
	next int64 // one past the highest offset handed out; -1: none yet
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
	p := t.pend[t.head:]
	i := sort.Search(len(p), func(i int) bool { return p[i].off >= off })
	if i == len(p) || p[i].off != off || p[i].done {
		return false
	}
	p[i].done = true
	for t.head < len(t.pend) && t.pend[t.head].done {
		t.head++
	}
	switch {
	case t.head == len(t.pend):
		t.pend, t.head = t.pend[:0], 0
	case t.head > 1024 && t.head > len(t.pend)/2:
		// A record long unsettled keeps the head: slide the rest down
		// rather than let the array grow without end.
		n := copy(t.pend, t.pend[t.head:])
		t.pend, t.head = t.pend[:n], 0
	}
	return true
}

// unsettled reports how many handed-out records are not settled.
func (t *tracker) unsettled() int {
	n := 0
	for _, p := range t.pend[t.head:] {
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
	if t.head < len(t.pend) {
		return t.pend[t.head].off
	}
	return t.next
}

// offsets returns the handed-out offsets not committed past, settled or
// not.
func (t *tracker) offsets() []int64 {
	p := t.pend[t.head:]
	out := make([]int64, len(p))
	for i, p := range p {
		out[i] = p.off
	}
	return out
}
