package sqs_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/transports/sqs"
)

func errorsIsEmpty(err error) bool { return errors.Is(err, transport.ErrEmpty) }

// A queue name with punctuation: Kombu's mangling must meet Go's in one SQS
// queue ("interop.q@x-..." is "interop-q_x-...").
func interopQueue() string { return uniq("interop.q@x-") }

func TestInteropPythonToGo(t *testing.T) {
	requireKombuSQS(t)
	g := startGoaws(t)
	q := interopQueue()
	msgs := []map[string]any{
		{"body": map[string]any{"n": 1, "text": "héllo"}, "headers": map[string]any{"k": "v"}},
		{"body": map[string]any{"n": 2}},
	}
	peer(t, g, mustJSON(t, msgs), "publish", g.pyURL(), q)

	c := g.open(t, "")
	defer c.Close()
	for i, want := range []string{`{"n": 1, "text": "h\u00e9llo"}`, `{"n": 2}`} {
		d := getWithin(t, c, q, 10*time.Second)
		if string(d.Body) != want {
			t.Errorf("message %d: body %s, want %s", i, d.Body, want)
		}
		if d.Properties.ContentType != "application/json" {
			t.Errorf("message %d: content type %q", i, d.Properties.ContentType)
		}
		if i == 0 && d.Headers["k"] != "v" {
			t.Errorf("message %d: headers %v", i, d.Headers)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInteropGoToPython(t *testing.T) {
	requireKombuSQS(t)
	g := startGoaws(t)
	q := interopQueue()
	c := g.open(t, "")
	defer c.Close()
	if _, err := c.DeclareQueue(ctx(t), transport.Queue{Name: q, Durable: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p := &transport.Publishing{RoutingKey: q, Confirm: true, Body: mustJSON(t, map[string]any{"n": i, "text": "héllo"}),
			Headers: map[string]any{"from": "go"}}
		p.ContentType, p.ContentEncoding = "application/json", "utf-8"
		if err := c.Publish(ctx(t), p); err != nil {
			t.Fatal(err)
		}
	}
	var got []struct {
		Payload     map[string]any `json:"payload"`
		ContentType string         `json:"content_type"`
		Headers     map[string]any `json:"headers"`
	}
	if err := json.Unmarshal(peer(t, g, nil, "consume", g.pyURL(), q, "2"), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("python got %d messages", len(got))
	}
	for i, m := range got {
		if m.Payload["n"] != float64(i) || m.Payload["text"] != "héllo" || m.ContentType != "application/json" || m.Headers["from"] != "go" {
			t.Errorf("python got message %d as %+v", i, m)
		}
	}
}

// TestQueueNamesAreKombus checks entityName against Python Kombu's own
// Channel.entity_name, for every ASCII punctuation character.
func TestQueueNamesAreKombus(t *testing.T) {
	requireKombuSQS(t)
	names := []string{"celery", "a.b@c!d-e_f", `x!"#$%&'()*+,-./:;<=>?@[\]^_{|}~y`, "tasks.fifo", "a.b.fifo", "celery@host.pidbox"}
	var kombu []string
	if err := json.Unmarshal(peer(t, nil, nil, append([]string{"entity"}, names...)...), &kombu); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		want := kombu[i]
		if got := sqs.EntityName(name); got != want {
			t.Errorf("entity name of %q: Go %q, Kombu %q", name, got, want)
		}
	}
}
