package virtual

import (
	"context"
	"sync"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
)

// listStore is a Store in memory, as small as one gets: enough for a
// connection to publish, take and ack.
type listStore struct {
	mu     sync.Mutex
	queues map[string][][]byte
	acks   int
}

func (s *listStore) DeclareQueue(context.Context, string) error { return nil }
func (s *listStore) Size(_ context.Context, q string) (int, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queues[q]), true, nil
}
func (s *listStore) Purge(context.Context, string) (int, error)       { return 0, nil }
func (s *listStore) DeleteQueue(context.Context, string) (int, error) { return 0, nil }
func (s *listStore) Put(_ context.Context, m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queues[m.Queue] = append(s.queues[m.Queue], m.Envelope)
	return nil
}
func (s *listStore) Take(_ context.Context, q string) (Taken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queues[q]) == 0 {
		return Taken{}, transport.ErrEmpty
	}
	env := s.queues[q][0]
	s.queues[q] = s.queues[q][1:]
	return Taken{Envelope: env, Receipt: q}, nil
}
func (s *listStore) Ack(context.Context, Receipt) error {
	s.mu.Lock()
	s.acks++
	s.mu.Unlock()
	return nil
}
func (s *listStore) Restore(_ context.Context, r Receipt, env []byte) error {
	return s.Put(context.Background(), Message{Queue: r.(string), Envelope: env})
}
func (s *listStore) Bind(context.Context, string, Binding) error         { return nil }
func (s *listStore) Unbind(context.Context, string, Binding) error       { return nil }
func (s *listStore) Bindings(context.Context, string) ([]Binding, error) { return nil, nil }
func (s *listStore) DeleteExchange(context.Context, string) error        { return nil }
func (s *listStore) Close() error                                        { return nil }

// quickStore is a listStore whose ack does not block.
type quickStore struct{ listStore }

func (s *quickStore) AckQuick(r Receipt) error { return s.Ack(context.Background(), r) }

// ackAllocs is what acking one delivery costs, in allocations, on a
// connection over store.
func ackAllocs(t *testing.T, store Store, acked func() int) float64 {
	t.Helper()
	ctx := context.Background()
	conn := NewConn(store, Config{Name: "test"})
	defer conn.Close()
	if _, err := conn.DeclareQueue(ctx, transport.Queue{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	const runs = 200
	ds := make([]*transport.Delivery, runs+1) // AllocsPerRun runs once more, to warm up
	for i := range ds {
		if err := conn.Publish(ctx, &transport.Publishing{RoutingKey: "q", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		d, err := conn.Get(ctx, "q", false)
		if err != nil {
			t.Fatal(err)
		}
		ds[i] = d
	}
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		d := ds[i]
		i++
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	})
	if acked() != runs+1 {
		t.Fatalf("the store has %d acks, want %d", acked(), runs+1)
	}
	return allocs
}

// TestAckAllocs: an ack through a QuickAcker allocates nothing (no
// context, no timer); through a store that may block, it keeps its
// timeout and what that costs.
func TestAckAllocs(t *testing.T) {
	q := &quickStore{listStore{queues: map[string][][]byte{}}}
	if got := ackAllocs(t, q, func() int { return q.acks }); got > 0 {
		t.Errorf("an ack on a QuickAcker: %.1f allocations, want 0", got)
	}
	s := &listStore{queues: map[string][][]byte{}}
	if got := ackAllocs(t, s, func() int { return s.acks }); got > 4 {
		t.Errorf("an ack with a timeout: %.1f allocations, want at most 4", got)
	}
}
