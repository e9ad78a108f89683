package ackbatch

import (
	"context"
	"errors"
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
	b := New(3, time.Hour, 4, r.send)
	for i := range 7 {
		if ok, err := b.Add(context.Background(), "q", i); !ok || err != nil {
			t.Fatalf("Add refused before Close: %v", err)
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
	b := New(10, 5*time.Millisecond, 4, r.send)
	defer b.Close()
	add(t, b, "q", 1)
	add(t, b, "q", 2)
	r.wait(t, 1)
	if got := r.got(); len(got) != 1 || !slices.Equal(got[0], []int{1, 2}) {
		t.Fatalf("batches %v, want [1 2] after the linger", got)
	}
}

func TestKeysBatchApart(t *testing.T) {
	r := newRecorder()
	b := New(2, time.Hour, 4, r.send)
	add(t, b, "a", 1)
	add(t, b, "b", 10)
	add(t, b, "a", 2) // a is full; b is not
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
	b := New(1, time.Hour, 4, func([]int) { <-release; done.Done() })
	add(t, b, "q", 1) // in flight until released
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
	if ok, err := b.Add(context.Background(), "q", 2); ok || err != nil {
		t.Fatalf("Add after Close: %t, %v; want false, nil: nobody would send the item", ok, err)
	}
	b.Close() // twice is fine
}

// add adds an item that must be accepted.
func add(t *testing.T, b *Batcher[int], key string, item int) {
	t.Helper()
	if ok, err := b.Add(context.Background(), key, item); !ok || err != nil {
		t.Fatalf("Add(%q, %d) = %t, %v; want it queued", key, item, ok, err)
	}
}

// A service that stops answering holds the sends in flight: the Batcher
// runs calls of them at once, lets as many full batches wait, and then
// makes Add wait (or fail with its context) rather than gather deletes
// without end.
func TestAddWaitsWhileTheServiceIsSlow(t *testing.T) {
	release := make(chan struct{})
	var running, most int
	var mu sync.Mutex
	b := New(2, time.Hour, 3, func([]int) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
	})
	for i := range 12 { // 3 calls × 2 items sending, and as many waiting
		add(t, b, "q", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if ok, err := b.Add(ctx, "q", 12); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add past the limit = %t, %v; want it to wait and give up with its context", ok, err)
	}
	added := make(chan struct{})
	go func() {
		add(t, b, "q", 12)
		close(added)
	}()
	select {
	case <-added:
		t.Fatal("Add returned while every send was still in flight")
	case <-time.After(20 * time.Millisecond):
	}
	close(release) // the service answers: the sends finish, Add goes on
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Fatal("Add still waits after the sends finished")
	}
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	if most != 3 {
		t.Fatalf("%d sends ran at once, want at most (and here exactly) 3", most)
	}
}

// Close wakes an Add waiting for room: it returns false, and its caller
// deletes the item itself.
func TestCloseWakesAWaitingAdd(t *testing.T) {
	release := make(chan struct{})
	b := New(1, time.Hour, 1, func([]int) { <-release })
	add(t, b, "q", 1)
	add(t, b, "q", 2)
	result := make(chan error, 1)
	go func() {
		ok, err := b.Add(context.Background(), "q", 3)
		if ok || err != nil {
			err = errors.Join(err, errors.New("accepted after Close"))
		}
		result <- err
	}()
	time.Sleep(20 * time.Millisecond) // Add waits for room
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	if err := <-result; err != nil {
		t.Fatalf("the waiting Add: %v; want false, nil", err)
	}
	close(release)
	<-closed
}
