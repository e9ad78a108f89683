package brokertest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"
)

// Ledger is the bookkeeping of a fault test: a producer publishes with
// confirms and a consumer consumes while a broker is stopped, cut off or
// restarted, and the test then asks what the fault cost. It records, by
// message id (the test's own, usually the body), when each publish began,
// which publishes were confirmed, and how many times and first when each
// message was consumed. From that it counts the columns of the fault table
// (see Tally).
//
// A Ledger is safe for concurrent use: the producer and the consumer
// goroutines write to it while the test reads it. The zero value is not
// ready; use NewLedger.
type Ledger struct {
	mu         sync.Mutex
	sentAt     map[string]time.Time // id: when its publish began
	confirmed  map[string]bool
	consumed   map[string]int       // id: deliveries
	consumedAt map[string]time.Time // id: first delivery
}

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{
		sentAt:     map[string]time.Time{},
		confirmed:  map[string]bool{},
		consumed:   map[string]int{},
		consumedAt: map[string]time.Time{},
	}
}

// Sent records that the publish of id begins now. Call it before the
// publish, so a message consumed before its publish returns is still one
// that was sent, and the time is the publish's start (the time to recover
// is measured from the messages whose publish began after the fault).
func (l *Ledger) Sent(id string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sentAt[id] = now
}

// Confirmed records that the publish of id was confirmed: the broker took
// responsibility for it, so the test fails if it is never consumed.
func (l *Ledger) Confirmed(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.confirmed[id] = true
}

// Consumed records one delivery of id. A second and later delivery counts
// as a duplicate.
func (l *Ledger) Consumed(id string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.consumed[id]++
	if l.consumed[id] == 1 {
		l.consumedAt[id] = now
	}
}

// Missing returns how many confirmed messages have not been consumed yet.
func (l *Ledger) Missing() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.missing()
}

func (l *Ledger) missing() int {
	n := 0
	for id := range l.confirmed {
		if l.consumed[id] == 0 {
			n++
		}
	}
	return n
}

// WaitConsumed polls every 100 ms until every message confirmed so far has
// been consumed or ctx is done, and returns how many confirmed messages are
// still missing (0: all consumed). It does not fail the test: whether a
// miss is an error, and how it is reported, is the test's to say.
func (l *Ledger) WaitConsumed(ctx context.Context) int {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n := l.Missing()
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			// One last look: the consumer may have caught up while we slept.
			return l.Missing()
		case <-tick.C:
		}
	}
}

// FirstConsumedSentAfter returns when the first message whose publish began
// at or after t was first consumed, confirmed or not; ok is false when no
// such message was consumed. With t the moment the fault was removed, that
// is when the consumer side worked again.
func (l *Ledger) FirstConsumedSentAfter(t time.Time) (at time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, sent := range l.sentAt {
		c, consumed := l.consumedAt[id]
		if sent.Before(t) || !consumed {
			continue
		}
		if !ok || c.Before(at) {
			at, ok = c, true
		}
	}
	return at, ok
}

// FirstConfirmedSentAfter returns the confirmed message whose publish began
// first at or after t: when its publish began, and when it was first
// consumed (zero if it was not). ok is false when no publish that began at
// or after t was confirmed. With t the moment the fault was removed, it is
// the first message that went all the way through again.
func (l *Ledger) FirstConfirmedSentAfter(t time.Time) (id string, sentAt, consumedAt time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.sentAt {
		if s.Before(t) || !l.confirmed[i] {
			continue
		}
		if !ok || s.Before(sentAt) || (s.Equal(sentAt) && i < id) {
			id, sentAt, ok = i, s, true
		}
	}
	if ok {
		consumedAt = l.consumedAt[id]
	}
	return id, sentAt, consumedAt, ok
}

// Tally is what a fault cost, as the columns of the fault table count it.
type Tally struct {
	Sent      int // publishes begun
	Confirmed int // publishes confirmed
	Consumed  int // distinct messages consumed
	// Lost: confirmed and never consumed; the broker broke its word.
	Lost int
	// Duplicated: deliveries beyond a message's first (an ack lost in the
	// fault makes the broker deliver the message again).
	Duplicated int
	// Recovered: consumed although the publish was not confirmed (the
	// fault cut off the answer, not the publish).
	Recovered int
	// LostIDs are the ids counted in Lost, sorted, for the test's errors.
	LostIDs []string
}

// Tally counts the ledger as it stands. Ids are taken from every record
// (sent, confirmed or consumed), so a consumed id that was never recorded
// as sent is still counted (as recovered).
func (l *Ledger) Tally() Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := Tally{Sent: len(l.sentAt), Confirmed: len(l.confirmed), Consumed: len(l.consumed)}
	for id := range l.confirmed {
		if l.consumed[id] == 0 {
			tl.Lost++
			tl.LostIDs = append(tl.LostIDs, id)
		}
	}
	sort.Strings(tl.LostIDs)
	for id, n := range l.consumed {
		tl.Duplicated += n - 1
		if !l.confirmed[id] {
			tl.Recovered++
		}
	}
	return tl
}

// LogRow logs the test's row of the fault table (README) in the one format
// every fault test prints and the table is built from:
//
//	FAULT ROW | <fault> | <transport> | <sent> | <confirmed> | <lost> | <duplicated> | <recovered> | <time to recover> | pass
//
// recovery is the time-to-recover cell as the test words it (each test
// rounds it to what its fault can resolve); the verdict is "pass" when pass
// holds and "fail" otherwise.
func (tl Tally) LogRow(t testing.TB, fault, transport, recovery string, pass bool) {
	t.Helper()
	verdict := "pass"
	if !pass {
		verdict = "fail"
	}
	t.Logf("FAULT ROW | %s | %s | %d | %d | %d | %d | %d | %s | %s",
		fault, transport, tl.Sent, tl.Confirmed, tl.Lost, tl.Duplicated, tl.Recovered, recovery, verdict)
}
