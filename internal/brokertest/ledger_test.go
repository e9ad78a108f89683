package brokertest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLedgerTally(t *testing.T) {
	l := NewLedger()
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		l.Sent(id)
	}
	// a: confirmed, consumed once. b: confirmed, consumed three times.
	// c: confirmed, never consumed (lost). d: not confirmed, consumed
	// twice (recovered, and one duplicate). e: not confirmed, never
	// consumed (nothing owed).
	for _, id := range []string{"a", "b", "c"} {
		l.Confirmed(id)
	}
	for _, id := range []string{"a", "b", "b", "b", "d", "d"} {
		l.Consumed(id)
	}
	got := l.Tally()
	want := Tally{Sent: 5, Confirmed: 3, Consumed: 3, Lost: 1, Duplicated: 3, Recovered: 1, LostIDs: []string{"c"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
	if n := l.Missing(); n != 1 {
		t.Errorf("missing %d, want 1", n)
	}
}

// Producer and consumer goroutines write while the test reads (run with
// -race).
func TestLedgerConcurrent(t *testing.T) {
	l := NewLedger()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				id := fmt.Sprintf("%d-%d", w, i)
				l.Sent(id)
				l.Confirmed(id)
				l.Consumed(id)
				_ = l.Missing()
			}
		}()
	}
	wg.Wait()
	if tl := l.Tally(); tl.Sent != 400 || tl.Confirmed != 400 || tl.Lost != 0 || tl.Duplicated != 0 || tl.Recovered != 0 {
		t.Fatalf("tally %+v", tl)
	}
}

func TestLedgerWaitConsumedEarly(t *testing.T) {
	l := NewLedger()
	l.Sent("a")
	l.Confirmed("a")
	go func() {
		time.Sleep(200 * time.Millisecond)
		l.Consumed("a")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if n := l.WaitConsumed(ctx); n != 0 {
		t.Fatalf("missing %d, want 0", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %v: did not return once all were consumed", d)
	}
}

func TestLedgerWaitConsumedDeadline(t *testing.T) {
	l := NewLedger()
	for _, id := range []string{"a", "b", "c"} {
		l.Sent(id)
		l.Confirmed(id)
	}
	l.Consumed("a")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if n := l.WaitConsumed(ctx); n != 2 {
		t.Fatalf("missing %d, want 2", n)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("returned after %v, want at the 300 ms deadline", d)
	}
}

func TestLedgerFirstAfter(t *testing.T) {
	l := NewLedger()
	l.Sent("before")
	l.Confirmed("before")
	time.Sleep(5 * time.Millisecond)
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)
	l.Sent("u") // not confirmed, consumed first
	time.Sleep(5 * time.Millisecond)
	l.Sent("c") // the first confirmed after the mark
	l.Confirmed("c")
	l.Consumed("before")
	l.Consumed("u")
	time.Sleep(5 * time.Millisecond)
	l.Consumed("c")

	at, ok := l.FirstConsumedSentAfter(mark)
	if !ok {
		t.Fatal("no first consumed")
	}
	id, sentAt, consumedAt, ok := l.FirstConfirmedSentAfter(mark)
	if !ok || id != "c" {
		t.Fatalf("first confirmed %q %v, want c", id, ok)
	}
	if !at.Before(consumedAt) {
		t.Errorf("u, consumed first, at %v; c at %v", at, consumedAt)
	}
	if sentAt.Before(mark) {
		t.Errorf("c sent at %v, before the mark %v", sentAt, mark)
	}
	if _, ok := l.FirstConsumedSentAfter(time.Now().Add(time.Hour)); ok {
		t.Error("a first consumed after a time no publish began after")
	}
	if _, _, _, ok := l.FirstConfirmedSentAfter(time.Now().Add(time.Hour)); ok {
		t.Error("a first confirmed after a time no publish began after")
	}
}

// recorder keeps what LogRow logs.
type recorder struct {
	testing.TB
	lines []string
}

func (r *recorder) Helper() {}
func (r *recorder) Logf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func TestTallyLogRow(t *testing.T) {
	r := &recorder{TB: t}
	tl := Tally{Sent: 10, Confirmed: 8, Lost: 0, Duplicated: 2, Recovered: 1}
	tl.LogRow(r, "the fault", "sqs", "1.5s", true)
	tl.LogRow(r, "the fault", "sqs", "1.5s", false)
	want := []string{
		"FAULT ROW | the fault | sqs | 10 | 8 | 0 | 2 | 1 | 1.5s | pass",
		"FAULT ROW | the fault | sqs | 10 | 8 | 0 | 2 | 1 | 1.5s | fail",
	}
	if strings.Join(r.lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged\n%s\nwant\n%s", strings.Join(r.lines, "\n"), strings.Join(want, "\n"))
	}
}
