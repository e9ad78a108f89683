package mongodb_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
)

// fanoutConsumer starts the Python peer consuming count messages from
// queue, bound to the fanout exchange, and returns once it is bound, with
// a function that lets it read and waits for what it received. It reads
// only then: on FerretDB a tailable cursor that reached the end is dead,
// and Kombu 5.2 does not open another (see testdata/kombu_mongo_peer.py).
func fanoutConsumer(t *testing.T, url, exchange, queue string, count int) func() []map[string]any {
	t.Helper()
	script, _ := filepath.Abs("testdata/kombu_mongo_peer.py")
	cmd := exec.Command(python, script, "fanout-consume", url, exchange, queue, strconv.Itoa(count))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		_ = cmd.Wait()
		t.Fatalf("python fanout consumer did not start: %q\n%s", lines.Text(), stderr.String())
	}
	return func() []map[string]any {
		t.Helper()
		if _, err := in.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
		if !lines.Scan() {
			t.Fatalf("python fanout consumer printed nothing\n%s", stderr.String())
		}
		var got []map[string]any
		if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
			t.Fatalf("python fanout consumer: %v: %s\n%s", err, lines.Text(), stderr.String())
		}
		return got
	}
}

// TestInteropFanoutGoToPython: Go publishes through a fanout exchange that
// a Python Kombu consumer's queue is bound to; the message is one document
// in Kombu's capped collection messages.broadcast, which Python reads with
// its tailable cursor, while a Go queue bound to the same exchange gets it
// too.
func TestInteropFanoutGoToPython(t *testing.T) {
	requireKombuMongo(t)
	s := ferret(t)
	db := uniq("fanout")
	ex, pyQueue, goQueue := uniq("interop.fx-"), uniq("interop.fpy-"), uniq("interop.fgo-")
	url := "mongodb://" + s.addr + "/" + db
	wait := fanoutConsumer(t, url, ex, pyQueue, 2)

	c := s.open(t, db, "")
	defer c.Close()
	transporttest.DeclareExchange(t, c, transport.Exchange{Name: ex, Type: transport.ExchangeFanout})
	transporttest.DeclareQueue(t, c, transport.Queue{Name: goQueue})
	transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: goQueue})
	for i := range 2 {
		body, _ := json.Marshal(map[string]any{"n": i, "text": "héllo"})
		p := &transport.Publishing{Exchange: ex, Confirm: true, Body: body, Headers: map[string]any{"from": "go"}}
		p.ContentType, p.ContentEncoding = "application/json", "utf-8"
		if err := c.Publish(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	got := wait()
	if len(got) != 2 {
		t.Fatalf("python got %d fanout messages, want 2: %v", len(got), got)
	}
	for i, m := range got {
		payload, _ := m["payload"].(map[string]any)
		headers, _ := m["headers"].(map[string]any)
		if payload["n"] != float64(i) || payload["text"] != "héllo" || headers["from"] != "go" {
			t.Errorf("python got fanout message %d as %+v", i, m)
		}
	}
	for i := range 2 {
		d := getWithin(t, c, goQueue, 10*time.Second)
		if want := `{"n":` + string(rune('0'+i)) + `,"text":"héllo"}`; string(d.Body) != want {
			t.Errorf("go queue message %d: %s, want %s", i, d.Body, want)
		}
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
	// One document per publish in the broadcast collection, none in
	// messages: what Kombu's _put_fanout writes.
	client, err := mongo.Connect(options.Client().ApplyURI(url))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	n, err := client.Database(db).Collection("messages.broadcast").CountDocuments(context.Background(), bson.D{{Key: "queue", Value: ex}})
	if err != nil || n != 2 {
		t.Errorf("messages.broadcast holds %d documents for the exchange (%v), want 2", n, err)
	}
	if n, _ := client.Database(db).Collection("messages").CountDocuments(context.Background(), bson.D{}); n != 0 {
		t.Errorf("messages holds %d documents, want 0 (fanout goes through messages.broadcast)", n)
	}
}

// TestInteropFanoutPythonToGo: Python Kombu publishes through a fanout
// exchange (one document in messages.broadcast); two Go queues bound to it,
// on two connections, each get every message.
func TestInteropFanoutPythonToGo(t *testing.T) {
	requireKombuMongo(t)
	s := ferret(t)
	db := uniq("fanout")
	ex := uniq("interop.fx-")
	queues := []string{uniq("interop.fgo-"), uniq("interop.fgo-")}
	var conns []transport.Conn
	for _, q := range queues {
		c := s.open(t, db, "")
		defer c.Close()
		transporttest.DeclareExchange(t, c, transport.Exchange{Name: ex, Type: transport.ExchangeFanout})
		transporttest.DeclareQueue(t, c, transport.Queue{Name: q})
		transporttest.Bind(t, c, transport.Binding{Source: ex, Destination: q})
		conns = append(conns, c)
	}
	msgs, _ := json.Marshal([]map[string]any{
		{"body": map[string]any{"n": 1, "text": "héllo"}, "headers": map[string]any{"k": "v"}},
		{"body": map[string]any{"n": 2}},
	})
	peer(t, msgs, "fanout-publish", "mongodb://"+s.addr+"/"+db, ex)
	for qi, q := range queues {
		for i, want := range []string{`{"n": 1, "text": "h\u00e9llo"}`, `{"n": 2}`} {
			d := getWithin(t, conns[qi], q, 10*time.Second)
			if string(d.Body) != want || d.Properties.ContentType != "application/json" {
				t.Errorf("queue %d message %d: %s (%s), want %s", qi, i, d.Body, d.Properties.ContentType, want)
			}
			if i == 0 && d.Headers["k"] != "v" {
				t.Errorf("queue %d message %d: headers %v", qi, i, d.Headers)
			}
			if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conns[qi].Get(context.Background(), q, false); err == nil {
			t.Errorf("queue %d: a third message", qi)
		}
	}
}
