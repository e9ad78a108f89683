package ackbatch

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder keeps the batches sent, in the order they were.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	sent    chan struct{}
}

func newRecorder() *recorder { return &recorder{sent: make(chan struct{}, 100)} }

func (r *recorder) send(b []int) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(b))
	r.mu.Unlock()
	r.sent <- struct{}{}
}

func (r *recorder) got() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.batches)
	slices.SortFunc(out, func(a, b []int) int { return a[0] - b[0] })
	return out
}

func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("a batch did not go")
		}
	}
}

func TestFullBatchGoesAtOnce(t *testing.T) {
	r := newRecorder()
	b := New(3, time.Hour, r.send)
	for i := range 7 {
		if !b.Add("q", i) {
			t.Fatal("Add refused before Close")
		}
	}
	r.wait(t, 2) // 0-2 and 3-5; 6 waits for the hour
	if got := r.got(); len(got) != 2 || !slices.Equal(got[0], []int{0, 1, 2}) || !slices.Equal(got[1], []int{3, 4, 5}) {
		t.Fatalf("batches %v, want [0 1 2] [3 4 5]", got)
	}
	b.Close()
	if got := r.got(); len(got) != 3 || !slices.Equal(got[2], []int{6}) {
		t.Fatalf("after Close: %v, want [6] sent too", got)
	}
}

func TestLingerSendsAPartBatch(t *testing.T) {
	r := newRecorder()
	b := New(10, 5*time.Millisecond, r.send)
	defer b.Close()
	b.Add("q", 1)
	b.Add("q", 2)
	r.wait(t, 1)
	if got := r.got(); len(got) != 1 || !slices.Equal(got[0], []int{1, 2}) {
		t.Fatalf("batches %v, want [1 2] after the linger", got)
	}
}

func TestKeysBatchApart(t *testing.T) {
	r := newRecorder()
	b := New(2, time.Hour, r.send)
	b.Add("a", 1)
	b.Add("b", 10)
	b.Add("a", 2) // a is full; b is not
	r.wait(t, 1)
	if got := r.got(); len(got) != 1 || !slices.Equal(got[0], []int{1, 2}) {
		t.Fatalf("batches %v, want only a's [1 2]", got)
	}
	b.Close()
	if got := r.got(); len(got) != 2 || !slices.Equal(got[1], []int{10}) {
		t.Fatalf("after Close: %v, want b's [10] too", got)
	}
}

func TestCloseWaitsAndRefuses(t *testing.T) {
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(1)
	b := New(1, time.Hour, func([]int) { <-release; done.Done() })
	b.Add("q", 1) // in flight until released
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a batch was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	done.Wait()
	if b.Add("q", 2) {
		t.Fatal("Add after Close accepted an item nobody will send")
	}
	b.Close() // twice is fine
}
