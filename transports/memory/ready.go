package memory

import (
	"cmp"
	"slices"
)

// readyList holds a queue's ready messages in delivery order: highest
// priority first, then by seq, the order they entered the queue.
type readyList struct {
	levels []fifo // indexed by priority; a single level without x-max-priority
	count  int
	bytes  int // body bytes, for x-max-length-bytes
	// expiring counts the messages with a deadline: while there are none,
	// taking a message need not look at the next one's (see queue.take),
	// a read of memory the publisher's core wrote, and so a cache miss.
	expiring int
}

func newReadyList(maxPriority uint8) readyList {
	return readyList{levels: make([]fifo, int(maxPriority)+1)}
}

// push adds a message that just entered the queue, behind its priority level.
func (r *readyList) push(e *entry) {
	r.levels[e.priority].push(e)
	r.added(e)
}

func (r *readyList) added(e *entry) {
	r.count++
	r.bytes += len(e.msg.body)
	if e.expires != 0 {
		r.expiring++
	}
}

func (r *readyList) removed(e *entry) {
	r.count--
	r.bytes -= len(e.msg.body)
	if e.expires != 0 {
		r.expiring--
	}
}

// insert puts a requeued message back at its original position, as RabbitMQ
// does for a requeue when it can.
func (r *readyList) insert(e *entry) {
	r.levels[e.priority].insert(e)
	r.added(e)
}

func (r *readyList) top() *fifo {
	if r.count == 0 {
		return nil
	}
	for i := len(r.levels) - 1; ; i-- {
		if r.levels[i].len() > 0 {
			return &r.levels[i]
		}
	}
}

func (r *readyList) peek() *entry {
	if f := r.top(); f != nil {
		return f.items[f.head]
	}
	return nil
}

func (r *readyList) pop() *entry {
	f := r.top()
	if f == nil {
		return nil
	}
	e := f.pop()
	r.removed(e)
	return e
}

// dropExpired removes the expired messages at the head of each priority
// level, passing each to drop, and returns the earliest deadline left at a
// head (0 if none). Like RabbitMQ it only looks at heads: a message behind
// one that lives longer waits its turn.
func (r *readyList) dropExpired(now int64, drop func(*entry)) (next int64) {
	for i := range r.levels {
		f := &r.levels[i]
		for f.len() > 0 {
			e := f.items[f.head]
			if e.expires == 0 || e.expires > now {
				if e.expires != 0 && (next == 0 || e.expires < next) {
					next = e.expires
				}
				break
			}
			f.pop()
			r.removed(e)
			drop(e)
		}
	}
	return next
}

func (r *readyList) clear() {
	for i := range r.levels {
		r.levels[i] = fifo{}
	}
	r.count, r.bytes, r.expiring = 0, 0, 0
}

// fifo is a slice-backed queue of messages ordered by seq.
type fifo struct {
	items []*entry
	head  int // items[:head] are already taken
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(e *entry) {
	if f.head > 0 && len(f.items) == cap(f.items) && f.head >= len(f.items)/2 {
		// Reuse the taken half rather than grow.
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	if len(f.items) == cap(f.items) {
		// Double, where append grows a large slice by a quarter: a
		// backlog of a million messages copies its list 2 times over
		// instead of 5, and allocates and clears as much less.
		grown := make([]*entry, len(f.items), max(2*cap(f.items), 16))
		copy(grown, f.items)
		f.items = grown
	}
	f.items = append(f.items, e)
}

func (f *fifo) pop() *entry {
	e := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	if f.head == len(f.items) {
		f.items, f.head = f.items[:0], 0
	}
	return e
}

// insert places e by seq. Requeued messages usually belong at the front,
// which takes a free slot before head when there is one.
func (f *fifo) insert(e *entry) {
	live := f.items[f.head:]
	i, _ := slices.BinarySearchFunc(live, e.seq, func(x *entry, seq uint64) int {
		return cmp.Compare(x.seq, seq)
	})
	if i == 0 && f.head > 0 {
		f.head--
		f.items[f.head] = e
		return
	}
	f.items = slices.Insert(f.items, f.head+i, e)
}
