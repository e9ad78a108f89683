package virtual

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// batchStore is a listStore with binding tables, a Delayer and a
// BatchPutter that refuses the queue "bad", logging what it is asked.
type batchStore struct {
	listStore
	tables map[string][]Binding
	log    []string
	logMu  sync.Mutex
}

var errBadQueue = errors.New("the store refuses this queue")

func (s *batchStore) note(format string, args ...any) {
	s.logMu.Lock()
	s.log = append(s.log, fmt.Sprintf(format, args...))
	s.logMu.Unlock()
}

func (s *batchStore) Bind(_ context.Context, x string, b Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables[x] = append([]Binding{b}, s.tables[x]...)
	return nil
}

func (s *batchStore) Bindings(_ context.Context, x string) ([]Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Binding(nil), s.tables[x]...), nil
}

func (s *batchStore) Put(ctx context.Context, m Message) error {
	s.note("put %s", m.Queue)
	return s.listStore.Put(ctx, m)
}

func (s *batchStore) PutDelayed(ctx context.Context, m Message, _ time.Duration) error {
	s.note("delayed %s", m.Queue)
	return s.listStore.Put(ctx, m)
}

func (s *batchStore) PutBatch(ctx context.Context, ms []Message) []error {
	var qs []string
	var errs []error
	for i, m := range ms {
		qs = append(qs, m.Queue)
		if m.Queue == "bad" {
			if errs == nil {
				errs = make([]error, len(ms))
			}
			errs[i] = errBadQueue
			continue
		}
		_ = s.listStore.Put(ctx, m)
	}
	s.note("batch %s", strings.Join(qs, ","))
	return errs
}

// TestPublishBatchThroughBatchPutter: PublishBatch over a BatchPutter
// checks and routes each message as Publish does, stores the copies in
// one PutBatch (in order, delayed ones by PutDelayed between), and gives
// each message the error of its own copies.
func TestPublishBatchThroughBatchPutter(t *testing.T) {
	ctx := context.Background()
	s := &batchStore{listStore: listStore{queues: map[string][][]byte{}}, tables: map[string][]Binding{}}
	var unroutable []string
	conn := NewConn(s, Config{Name: "test", Unroutable: func(x, key, _ string) { unroutable = append(unroutable, x+"/"+key) }})
	defer conn.Close()
	for _, q := range []string{"a", "b", "bad"} {
		if _, err := conn.DeclareQueue(ctx, transport.Queue{Name: q}); err != nil {
			t.Fatal(err)
		}
	}
	for x, qs := range map[string][]string{"fx": {"a", "b"}, "fxbad": {"a", "bad"}} {
		if err := conn.DeclareExchange(ctx, transport.Exchange{Name: x, Type: transport.ExchangeFanout}); err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if err := conn.Bind(ctx, transport.Binding{Source: x, Destination: q}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ps := []*transport.Publishing{
		0: {RoutingKey: "a", Body: []byte("0")},
		1: {Exchange: "fx", Body: []byte("1")},
		2: {Mandatory: true, Body: []byte("2")},
		3: {RoutingKey: "a", Properties: transport.Properties{Priority: 3}, Body: []byte("3")},
		4: {RoutingKey: "bad", Body: []byte("4")},
		5: {Exchange: "fxbad", Body: []byte("5")},
		6: {RoutingKey: "b", Delay: time.Second, Body: []byte("6")},
		7: {RoutingKey: "a", Body: []byte("7")},
		8: {RoutingKey: "", NotifyUnroutable: true, Body: []byte("8")},
	}
	err := conn.(transport.BatchPublisher).PublishBatch(ctx, ps)
	var be *transport.BatchError
	if !errors.As(err, &be) || len(be.Errs) != len(ps) {
		t.Fatalf("PublishBatch: %v; want a *BatchError of %d", err, len(ps))
	}
	for i, e := range be.Errs {
		var ok bool
		switch i {
		case 2:
			ok = errors.Is(e, transport.ErrUnroutable)
		case 3:
			ok = errors.Is(e, transport.ErrNotSupported)
		case 4:
			ok = errors.Is(e, errBadQueue) && !strings.Contains(e.Error(), "stored for")
		case 5:
			ok = errors.Is(e, errBadQueue) && strings.Contains(e.Error(), `publish to "bad"`) && strings.Contains(e.Error(), `stored for ["a"]`)
		default:
			ok = e == nil
		}
		if !ok {
			t.Errorf("message %d: %v", i, e)
		}
	}
	if want := "batch a,a,b,bad,a,bad|delayed b|batch a"; strings.Join(s.log, "|") != want {
		t.Errorf("the store was asked %q; want %q", strings.Join(s.log, "|"), want)
	}
	if want := "/"; strings.Join(unroutable, ",") != want {
		t.Errorf("unroutable told of %q; want %q", unroutable, want)
	}
	tags := map[string]bool{}
	for q, want := range map[string]int{"a": 4, "b": 2, "bad": 0} {
		if got := len(s.queues[q]); got != want {
			t.Errorf("queue %q holds %d messages; want %d", q, got, want)
		}
		for _, env := range s.queues[q] {
			var e struct {
				Properties struct {
					DeliveryTag string `json:"delivery_tag"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(env, &e); err != nil || e.Properties.DeliveryTag == "" || tags[e.Properties.DeliveryTag] {
				t.Errorf("queue %q: delivery tag %q (%v): want one of its own", q, e.Properties.DeliveryTag, err)
			}
			tags[e.Properties.DeliveryTag] = true
		}
	}
	// Publish, of one message, still uses Put.
	if err := conn.Publish(ctx, &transport.Publishing{RoutingKey: "a", Body: []byte("9")}); err != nil {
		t.Fatal(err)
	}
	if last := s.log[len(s.log)-1]; last != "put a" {
		t.Errorf("Publish: the store was asked %q; want put a", last)
	}
}
