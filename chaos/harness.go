package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Outcome is what a producer was told about one publish.
type Outcome int

const (
	// Pending: the publish has not returned yet.
	Pending Outcome = iota
	// Confirmed: Publish returned nil; the broker took responsibility.
	Confirmed
	// Failed: Publish returned a definite error (nack, unroutable, refused).
	Failed
	// Unknown: Publish gave up when its context ended; the message may or
	// may not be in the queue.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Confirmed:
		return "confirmed"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	}
	return "pending"
}

// Classify maps an error returned by Publish to an outcome: nil is
// Confirmed, an error caused by the end of the publish's context is Unknown
// (the broker may have the message), anything else is Failed.
func Classify(err error) Outcome {
	switch {
	case err == nil:
		return Confirmed
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Unknown
	}
	return Failed
}

// Delivery is one delivery of a message to a consumer.
type Delivery struct {
	ID          string
	Consumer    string
	Redelivered bool
	At          time.Time
	Acked       bool  // the consumer's ack returned nil
	AckErr      error // what the ack returned otherwise
}

type publishRecord struct {
	outcome    Outcome
	start, end time.Time
	err        error
}

// Window is one fault: when it was injected and when it was removed.
type Window struct {
	Injected, Removed time.Time
}

// Ledger is the history of one test: every publish with its outcome and
// every delivery. It is safe for concurrent use.
type Ledger struct {
	mu         sync.Mutex
	prefix     string
	seq        int
	pubs       map[string]*publishRecord
	order      []string
	deliveries map[string][]*Delivery
	unexpected []*Delivery
	windows    []Window
}

// NewLedger returns an empty ledger whose ids start with prefix.
func NewLedger(prefix string) *Ledger {
	return &Ledger{prefix: prefix, pubs: map[string]*publishRecord{}, deliveries: map[string][]*Delivery{}}
}

// Prefix returns the prefix of the ledger's ids.
func (l *Ledger) Prefix() string { return l.prefix }

// Begin allocates the next id and records that its publish starts now.
func (l *Ledger) Begin() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	id := fmt.Sprintf("%s-%06d", l.prefix, l.seq)
	l.pubs[id] = &publishRecord{start: time.Now()}
	l.order = append(l.order, id)
	return id
}

// End records what the publish of id returned.
func (l *Ledger) End(id string, err error) Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.pubs[id]
	if p == nil {
		return Pending
	}
	p.end = time.Now()
	p.err = err
	p.outcome = Classify(err)
	return p.outcome
}

// Publish allocates an id and calls publish with it under a context bounded
// by timeout, recording the outcome.
func (l *Ledger) Publish(ctx context.Context, timeout time.Duration, publish func(ctx context.Context, id string) error) (string, Outcome, error) {
	id := l.Begin()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := publish(pctx, id)
	cancel()
	return id, l.End(id, err), err
}

// Delivered records a delivery. Ids outside the ledger are unexpected.
func (l *Ledger) Delivered(consumer, id string, redelivered bool) *Delivery {
	d := &Delivery{ID: id, Consumer: consumer, Redelivered: redelivered, At: time.Now()}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pubs[id]; !ok {
		l.unexpected = append(l.unexpected, d)
		return d
	}
	l.deliveries[id] = append(l.deliveries[id], d)
	return d
}

// Acked records what acknowledging d returned.
func (l *Ledger) Acked(d *Delivery, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d.Acked, d.AckErr = err == nil, err
}

// Inject records that a fault starts now and returns its index.
func (l *Ledger) Inject() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, Window{Injected: time.Now()})
	return len(l.windows) - 1
}

// Remove records that the last fault injected ends now.
func (l *Ledger) Remove() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.windows); n > 0 && l.windows[n-1].Removed.IsZero() {
		l.windows[n-1].Removed = time.Now()
	}
}

// Windows returns the faults recorded so far.
func (l *Ledger) Windows() []Window {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.windows)
}

// Counts returns how many ids were published, confirmed, and delivered at
// least once.
func (l *Ledger) Counts() (sent, confirmed, consumed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, p := range l.pubs {
		if p.outcome == Confirmed {
			confirmed++
		}
		if len(l.deliveries[id]) > 0 {
			consumed++
		}
	}
	return len(l.pubs), confirmed, consumed
}

// Missing returns the ids that are confirmed (or, with all, published in
// any way) and not delivered yet.
func (l *Ledger) Missing(all bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, id := range l.order {
		p := l.pubs[id]
		if (p.outcome == Confirmed || all) && len(l.deliveries[id]) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// DeliveriesOf returns the deliveries of id so far.
func (l *Ledger) DeliveriesOf(id string) []Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Delivery
	for _, d := range l.deliveries[id] {
		out = append(out, *d)
	}
	return out
}

// LastDelivery returns when the last delivery was recorded.
func (l *Ledger) LastDelivery() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, ds := range l.deliveries {
		for _, d := range ds {
			if d.At.After(last) {
				last = d.At
			}
		}
	}
	for _, d := range l.unexpected {
		if d.At.After(last) {
			last = d.At
		}
	}
	return last
}

// WaitDelivered waits until every confirmed id has been delivered, then
// until no delivery has come for quiet (late duplicates), or until ctx
// ends. It returns the confirmed ids still missing.
func (l *Ledger) WaitDelivered(ctx context.Context, quiet time.Duration) []string {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for len(l.Missing(false)) > 0 {
		select {
		case <-ctx.Done():
			return l.Missing(false)
		case <-t.C:
		}
	}
	for time.Since(l.LastDelivery()) < quiet {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	return nil
}

// Timeline renders, per bucket since the first publish, how many publishes
// were confirmed (c), failed or gave up (x) and how many deliveries came
// (d), with the faults marked: evidence for a failing test's log.
func (l *Ledger) Timeline(bucket time.Duration) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) == 0 {
		return "(no publishes)"
	}
	t0 := l.pubs[l.order[0]].start
	type counts struct{ c, x, d int }
	var bs []counts
	at := func(t time.Time) *counts {
		i := int(t.Sub(t0) / bucket)
		if i < 0 {
			i = 0
		}
		for len(bs) <= i {
			bs = append(bs, counts{})
		}
		return &bs[i]
	}
	for _, id := range l.order {
		p := l.pubs[id]
		switch {
		case p.end.IsZero():
		case p.outcome == Confirmed:
			at(p.end).c++
		default:
			at(p.end).x++
		}
		for _, d := range l.deliveries[id] {
			at(d.At).d++
		}
	}
	var b strings.Builder
	for i, n := range bs {
		mark := ""
		for _, w := range l.windows {
			s, e := w.Injected.Sub(t0), w.Removed.Sub(t0)
			lo, hi := time.Duration(i)*bucket, time.Duration(i+1)*bucket
			if s < hi && (w.Removed.IsZero() || e >= lo) {
				mark = " [fault]"
			}
		}
		fmt.Fprintf(&b, "%6v c=%-5d x=%-5d d=%-5d%s\n", time.Duration(i)*bucket, n.c, n.x, n.d, mark)
	}
	return b.String()
}

// Result is the checker's verdict over a ledger.
type Result struct {
	Sent, Confirmed, Failed, Unknown, Pending int

	Consumed   int // ids delivered at least once
	Deliveries int // deliveries in all, duplicates included

	Lost       []string // confirmed, never delivered
	Duplicated []string // delivered more than once
	// RepeatNotRedelivered are duplicated ids one of whose later deliveries
	// did not carry the redelivered flag: a second copy in the queue
	// (producer-side duplicate), not a redelivery of the same copy.
	RepeatNotRedelivered []string
	Recovered            []string // not confirmed (failed, unknown, pending), delivered anyway
	FailedButDelivered   []string // Failed (a definite error) and delivered anyway
	Unexpected           []string // delivered, never published
	NeverAcked           []string // delivered, but no ack of any delivery succeeded

	// MaxPublishLatency is the longest a Publish call took.
	MaxPublishLatency time.Duration
	// Reconnect is, for the worst fault, the time from its removal to the
	// first publish confirmed after it; -1 if none was.
	Reconnect time.Duration
	// Recovery is, for the worst fault, the time from its removal to the
	// first delivery of a message confirmed after it (publish and consume
	// both work again); -1 if none was delivered. 0 without faults.
	Recovery time.Duration
	// Recoveries are the per-fault recovery times.
	Recoveries []time.Duration
	Faults     int
}

// Check runs the checker over everything recorded so far.
func (l *Ledger) Check() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r Result
	r.Sent = len(l.pubs)
	for _, id := range l.order {
		p := l.pubs[id]
		ds := l.deliveries[id]
		switch p.outcome {
		case Confirmed:
			r.Confirmed++
		case Failed:
			r.Failed++
		case Unknown:
			r.Unknown++
		default:
			r.Pending++
		}
		if !p.end.IsZero() {
			r.MaxPublishLatency = max(r.MaxPublishLatency, p.end.Sub(p.start))
		}
		r.Deliveries += len(ds)
		if len(ds) > 0 {
			r.Consumed++
		}
		switch {
		case p.outcome == Confirmed && len(ds) == 0:
			r.Lost = append(r.Lost, id)
		case p.outcome != Confirmed && len(ds) > 0:
			r.Recovered = append(r.Recovered, id)
			if p.outcome == Failed {
				r.FailedButDelivered = append(r.FailedButDelivered, id)
			}
		}
		if len(ds) > 1 {
			r.Duplicated = append(r.Duplicated, id)
			for _, d := range ds[1:] {
				if !d.Redelivered {
					r.RepeatNotRedelivered = append(r.RepeatNotRedelivered, id)
					break
				}
			}
		}
		if len(ds) > 0 && !slices.ContainsFunc(ds, func(d *Delivery) bool { return d.Acked }) {
			r.NeverAcked = append(r.NeverAcked, id)
		}
	}
	for _, d := range l.unexpected {
		r.Unexpected = append(r.Unexpected, d.ID)
	}
	r.Faults = len(l.windows)
	r.Reconnect, r.Recovery = 0, 0
	for _, w := range l.windows {
		if w.Removed.IsZero() {
			continue
		}
		reconnect, recovery := time.Duration(-1), time.Duration(-1)
		for _, id := range l.order {
			p := l.pubs[id]
			if p.outcome != Confirmed || p.end.Before(w.Removed) {
				continue
			}
			if d := p.end.Sub(w.Removed); reconnect < 0 || d < reconnect {
				reconnect = d
			}
			for _, dl := range l.deliveries[id] {
				if dl.At.Before(w.Removed) {
					continue
				}
				if d := dl.At.Sub(w.Removed); recovery < 0 || d < recovery {
					recovery = d
				}
			}
		}
		r.Recoveries = append(r.Recoveries, recovery)
		r.Reconnect = worst(r.Reconnect, reconnect)
		r.Recovery = worst(r.Recovery, recovery)
	}
	return r
}

// worst returns the larger duration, where -1 (never) is the worst.
func worst(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}

// Summary is a one-line account of r for test logs.
func (r Result) Summary() string {
	return fmt.Sprintf("sent=%d confirmed=%d failed=%d unknown=%d pending=%d consumed=%d deliveries=%d lost=%d duplicated=%d (not-redelivered %d) recovered=%d unexpected=%d never-acked=%d max-publish=%v reconnect=%s recovery=%s faults=%d",
		r.Sent, r.Confirmed, r.Failed, r.Unknown, r.Pending, r.Consumed, r.Deliveries, len(r.Lost), len(r.Duplicated),
		len(r.RepeatNotRedelivered), len(r.Recovered), len(r.Unexpected), len(r.NeverAcked),
		r.MaxPublishLatency.Round(time.Millisecond), fmtDur(r.Reconnect), fmtDur(r.Recovery), r.Faults)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "never"
	case d == 0:
		return "0"
	}
	return d.Round(10 * time.Millisecond).String()
}

// Row is one line of the figures table.
type Row struct {
	Test      string // "1", "1b", ...
	Name      string // the Go test function
	Fault     string
	Transport string
	Result    *Result // nil: the test measured no message history
	Recovery  string  // overrides the recovery column when set
	Status    string  // pass, FAIL, skipped
	Notes     []string
	Elapsed   time.Duration
}

// Note adds a note to the row.
func (r *Row) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// WriteFigures writes rows as a markdown table, after header and followed
// by the rows' notes.
func WriteFigures(w io.Writer, rows []Row, header string) error {
	rows = slices.Clone(rows)
	sort.SliceStable(rows, func(i, j int) bool { return testOrder(rows[i].Test) < testOrder(rows[j].Test) })
	var b strings.Builder
	b.WriteString(header)
	b.WriteString(FiguresTable(rows))
	var notes []string
	for _, r := range rows {
		if len(r.Notes) > 0 {
			notes = append(notes, fmt.Sprintf("- **%s** (`%s`): %s", r.Test, r.Name, escape(strings.Join(r.Notes, "; "))))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		b.WriteString(strings.Join(notes, "\n"))
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FiguresTable renders rows, in test order, as a markdown table.
func FiguresTable(rows []Row) string {
	rows = slices.Clone(rows)
	sort.SliceStable(rows, func(i, j int) bool { return testOrder(rows[i].Test) < testOrder(rows[j].Test) })
	var b strings.Builder
	b.WriteString("| # | fault | transport | sent | confirmed | lost | duplicated | recovered | unexpected | time to recover | result | time |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, r := range rows {
		cells := []string{"–", "–", "–", "–", "–", "–"}
		if res := r.Result; res != nil {
			rec := "–"
			if res.Faults > 0 {
				rec = fmtDur(res.Recovery)
			}
			cells = []string{
				fmt.Sprint(res.Sent), fmt.Sprint(res.Confirmed), fmt.Sprint(len(res.Lost)),
				fmt.Sprint(len(res.Duplicated)), fmt.Sprint(len(res.Recovered)), fmt.Sprint(len(res.Unexpected)), rec,
			}
		} else {
			cells = append(cells, "–")
		}
		if r.Recovery != "" {
			cells[6] = r.Recovery
		}
		status := r.Status
		if status == "FAIL" {
			status = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Test, escape(r.Fault), r.Transport,
			strings.Join(cells, " | "), status, r.Elapsed.Round(100*time.Millisecond))
	}
	return b.String()
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// testOrder sorts "1", "1b", "2", ..., "10" numerically.
func testOrder(s string) string {
	n := 0
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + int(s[i]-'0')
		i++
	}
	return fmt.Sprintf("%04d%s", n, s[i:])
}
