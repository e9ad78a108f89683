package sqs_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// recorder sits between a client and goaws and keeps the form of every
// SendMessage and SendMessageBatch request (the query protocol is a form
// in the request body), then forwards the request unchanged.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	sent []url.Values
}

func newRecorder(t *testing.T, g *goaws) *recorder {
	t.Helper()
	r := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: g.addr})
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil {
			switch form.Get("Action") {
			case "SendMessage", "SendMessageBatch":
				r.mu.Lock()
				r.sent = append(r.sent, form)
				r.mu.Unlock()
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// take returns the forms recorded so far and forgets them.
func (r *recorder) take() []url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sent
	r.sent = nil
	return s
}

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// fifoFields is what a SendMessage form says beyond the body: every field
// but Action, Version, QueueUrl and MessageBody (the body differs between
// Go and Python by its envelope's ids), with a uuid4 written "<uuid4>".
func fifoFields(form url.Values) map[string]string {
	out := map[string]string{}
	for k, v := range form {
		switch k {
		case "Action", "Version", "QueueUrl", "MessageBody":
			continue
		}
		out[k] = v[0]
		if uuid4.MatchString(v[0]) {
			out[k] = "<uuid4>"
		}
	}
	return out
}

// A ".fifo" queue's messages carry Kombu's MessageGroupId and
// MessageDeduplicationId. Python Kombu 5.2's _put sends, for a queue
// whose name ends in ".fifo", MessageGroupId = the message's
// properties["MessageGroupId"], else "default", and MessageDeduplicationId
// = properties["MessageDeduplicationId"], else str(uuid.uuid4()). goaws
// keeps both (it dedupes on the id and locks a group while one of its
// messages is in flight) but does not return them on ReceiveMessage, so
// the test checks them in two ways: the requests (a recording proxy in
// front of goaws) from Python Kombu and from Go, field by field, and
// goaws's behaviour (a repeated deduplication id is dropped).
func TestFIFOGroupAndDeduplicationIDs(t *testing.T) {
	requireKombuSQS(t)
	g := startGoaws(t)
	rec := newRecorder(t, g)
	q := uniq("fifo-") + ".fifo"

	// Python Kombu: one message naming both ids in its properties, one
	// naming none.
	pyMsgs := []map[string]any{
		{"body": "py-named", "properties": map[string]any{"MessageGroupId": "g-py", "MessageDeduplicationId": "d-py"}},
		{"body": "py-default"},
	}
	peer(t, g, mustJSON(t, pyMsgs), "publish", "sqs://AKIDTEST:s3cr3t%2Fkey@"+rec.addr(), q)
	py := rec.take()
	if len(py) != 2 {
		t.Fatalf("Python sent %d SendMessage requests, want 2", len(py))
	}

	// Go: the same two, the ids in the headers (transport.Properties has
	// no field for them; the transport reads both places).
	c := g.open(t, "")
	defer c.Close()
	rc, err := openURL(t, strings.Replace(g.URL(""), g.addr, rec.addr(), 1))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, p := range []*transport.Publishing{
		{RoutingKey: q, Body: []byte("go-named"), Confirm: true, Headers: map[string]any{"MessageGroupId": "g-go", "MessageDeduplicationId": "d-go"}},
		{RoutingKey: q, Body: []byte("go-default"), Confirm: true},
	} {
		if err := rc.Publish(ctx(t), p); err != nil {
			t.Fatal(err)
		}
	}
	gos := rec.take()
	if len(gos) != 2 {
		t.Fatalf("Go sent %d SendMessage requests, want 2", len(gos))
	}
	for i, want := range []map[string]string{
		{"MessageGroupId": "g-%s", "MessageDeduplicationId": "d-%s"},
		{"MessageGroupId": "default", "MessageDeduplicationId": "<uuid4>"},
	} {
		pf, gf := fifoFields(py[i]), fifoFields(gos[i])
		for k, v := range want {
			if pf[k] != strings.ReplaceAll(v, "%s", "py") {
				t.Errorf("message %d: Python sent %s=%q, want %q (Kombu's _put)", i, k, pf[k], strings.ReplaceAll(v, "%s", "py"))
			}
			if gf[k] != strings.ReplaceAll(v, "%s", "go") {
				t.Errorf("message %d: Go sent %s=%q, want %q", i, k, gf[k], strings.ReplaceAll(v, "%s", "go"))
			}
		}
		// Beyond the ids' values, the same fields.
		for k := range pf {
			if _, ok := gf[k]; !ok {
				t.Errorf("message %d: Python sent %s=%q, Go did not", i, k, pf[k])
			}
		}
		for k := range gf {
			if _, ok := pf[k]; !ok {
				t.Errorf("message %d: Go sent %s=%q, Python did not", i, k, gf[k])
			}
		}
		t.Logf("message %d: Python %v, Go %v", i, pf, gf)
	}
	if a, b := gos[1].Get("MessageDeduplicationId"), py[1].Get("MessageDeduplicationId"); a == b {
		t.Errorf("Go reused a deduplication id: %s", a)
	}

	// A batch (SendMessageBatch, which Python Kombu never sends): each
	// entry has both ids.
	batcher, ok := rc.(transport.BatchPublisher)
	if !ok {
		t.Fatal("the connection has no PublishBatch")
	}
	if err := batcher.PublishBatch(ctx(t), []*transport.Publishing{
		{RoutingKey: q, Body: []byte("batch-0"), Confirm: true, Headers: map[string]any{"MessageGroupId": "g-batch", "MessageDeduplicationId": "d-batch"}},
		{RoutingKey: q, Body: []byte("batch-1"), Confirm: true},
	}); err != nil {
		t.Fatal(err)
	}
	batch := rec.take()
	if len(batch) != 1 || batch[0].Get("Action") != "SendMessageBatch" {
		t.Fatalf("the batch went as %d requests (%v), want one SendMessageBatch", len(batch), batch)
	}
	for i, want := range [][2]string{{"g-batch", "d-batch"}, {"default", "<uuid4>"}} {
		e := "SendMessageBatchRequestEntry." + string(rune('1'+i)) + "."
		gid, did := batch[0].Get(e+"MessageGroupId"), batch[0].Get(e+"MessageDeduplicationId")
		if uuid4.MatchString(did) {
			did = "<uuid4>"
		}
		if gid != want[0] || did != want[1] {
			t.Errorf("batch entry %d: MessageGroupId=%q MessageDeduplicationId=%q, want %q %q", i, gid, did, want[0], want[1])
		}
	}

	// goaws dedupes: a message repeating "d-go" is dropped.
	if err := c.Publish(ctx(t), &transport.Publishing{RoutingKey: q, Body: []byte("go-duplicate"), Confirm: true,
		Headers: map[string]any{"MessageGroupId": "g-go", "MessageDeduplicationId": "d-go"}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for range 6 {
		d := getWithin(t, c, q, 10*time.Second)
		got[string(d.Body)]++
		if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{`"py-named"`: 1, `"py-default"`: 1, "go-named": 1, "go-default": 1, "batch-0": 1, "batch-1": 1}
	for b, n := range want {
		if got[b] != n {
			t.Errorf("%s arrived %d times, want %d (all: %v)", b, got[b], n, got)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if m, err := c.Get(ctx(t), q, false); err == nil {
		t.Errorf("the duplicate arrived too: %q", m.Body)
	}
}
