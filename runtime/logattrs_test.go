package kombu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// syncBuffer is a bytes.Buffer safe for the consumer's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b.buf.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestMessageLogLinesCarryTheMessagesAttributes(t *testing.T) {
	var logs syncBuffer
	conn := dialWith(t, kombu.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	ex := kombu.Exchange{Name: "ex", Type: kombu.ExchangeDirect}
	handled := make(chan struct{}, 2)
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "q", Bindings: []kombu.Binding{{Exchange: "ex", RoutingKey: "k"}}},
		Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
			defer func() { handled <- struct{}{} }()
			if string(m.Body) == "panic" {
				panic("boom")
			}
			return errors.New("failed")
		}),
	}}, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{ex}}))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	p := kombu.NewProducer(conn, kombu.WithExchange(ex), kombu.WithRoutingKey("k"))
	mustPublish(t, p.Publish(ctxT(t), []byte("fail"), kombu.WithMessageID("id-1"), kombu.WithCorrelationID("c-1")))
	mustPublish(t, p.Publish(ctxT(t), []byte("panic"), kombu.WithMessageID("id-2")))
	for range 2 {
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatal("not handled")
		}
	}
	if err := stop(); err != nil { // the handler's lines are logged before Run returns
		t.Fatal(err)
	}
	want := map[string]map[string]any{
		"kombu: handler failed":   {"queue": "q", "exchange": "ex", "routing_key": "k", "message_id": "id-1", "correlation_id": "c-1"},
		"kombu: handler panicked": {"queue": "q", "exchange": "ex", "routing_key": "k", "message_id": "id-2"},
	}
	found := map[string]bool{}
	for _, line := range logs.lines(t) {
		attrs, ok := want[line["msg"].(string)]
		if !ok {
			continue
		}
		if line["msg"] == "kombu: handler failed" && line["message_id"] != "id-1" {
			continue // the panicked message's own "handler failed" line
		}
		found[line["msg"].(string)] = true
		for k, v := range attrs {
			if line[k] != v {
				t.Errorf("%q: %s = %v, want %v (line %v)", line["msg"], k, line[k], v, line)
			}
		}
		if _, ok := line["delivery_tag"]; !ok {
			t.Errorf("%q has no delivery_tag: %v", line["msg"], line)
		}
	}
	if len(found) != len(want) {
		t.Errorf("found lines %v, want %d kinds", found, len(want))
	}
}
