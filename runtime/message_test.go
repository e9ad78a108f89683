package kombu

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
)

// recordingAcker records settlements, standing in for a broker channel in
// tests of Message's own state rules (no broker behaviour is claimed).
type recordingAcker struct {
	mu    sync.Mutex
	calls []string
}

func (a *recordingAcker) Ack(tag uint64, multiple bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("ack %d", tag))
	return nil
}

func (a *recordingAcker) Reject(tag uint64, requeue bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("reject %d requeue=%v", tag, requeue))
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testConnection is a Connection with codecs and no broker, for tests of
// message decoding.
func testConnection(c *codecs) *Connection {
	conn := &Connection{codecs: c}
	conn.state.Store(&session{url: "test://"})
	return conn
}

func testMessage(t *testing.T, d *transport.Delivery, accept []string) (*Message, error) {
	t.Helper()
	conn := testConnection(defaultCodecs)
	a, err := defaultCodecs.accept(accept)
	if err != nil {
		t.Fatal(err)
	}
	return conn.newMessage(d, a, 0)
}

func TestMessageSettlesOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  func(*Message) error
		state  MessageState
		record string
	}{
		{"ack", (*Message).Ack, StateAcked, "ack 7"},
		{"reject", func(m *Message) error { return m.Reject(false) }, StateRejected, "reject 7 requeue=false"},
		{"requeue", (*Message).Requeue, StateRequeued, "reject 7 requeue=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acker := &recordingAcker{}
			m, err := testMessage(t, &transport.Delivery{Tag: 7, Acknowledger: acker}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.first(m); err != nil {
				t.Fatal(err)
			}
			if m.State() != tc.state {
				t.Fatalf("state %v, want %v", m.State(), tc.state)
			}
			for _, again := range []func() error{m.Ack, m.Requeue, func() error { return m.Reject(false) }} {
				if err := again(); !errors.Is(err, ErrMessageState) {
					t.Fatalf("second settle: got %v, want ErrMessageState", err)
				}
			}
			if len(acker.calls) != 1 || acker.calls[0] != tc.record {
				t.Fatalf("broker saw %v, want [%s]", acker.calls, tc.record)
			}
		})
	}
}

func TestConcurrentSettleReachesBrokerOnce(t *testing.T) {
	acker := &recordingAcker{}
	m, _ := testMessage(t, &transport.Delivery{Tag: 1, Acknowledger: acker}, nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.Ack() }()
	}
	wg.Wait()
	if len(acker.calls) != 1 {
		t.Fatalf("broker saw %d settlements, want 1", len(acker.calls))
	}
}

func TestAutoAckedMessage(t *testing.T) {
	m, _ := testMessage(t, &transport.Delivery{Tag: 1}, nil)
	if err := m.Ack(); err != nil {
		t.Fatalf("Ack of an auto-acked message: %v (Kombu makes it a no-op)", err)
	}
	if err := m.Requeue(); !errors.Is(err, ErrMessageState) {
		t.Fatalf("Requeue of an auto-acked message: got %v, want ErrMessageState", err)
	}
}

func TestMessageDecodeErrors(t *testing.T) {
	m, err := testMessage(t, &transport.Delivery{
		Body: []byte(`{"id":`), Properties: Properties{ContentType: ContentTypeJSON},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := m.Decode(&v); !errors.Is(err, ErrDecode) {
		t.Errorf("truncated JSON: got %v, want ErrDecode", err)
	}

	m, _ = testMessage(t, &transport.Delivery{Body: []byte("x"), Properties: Properties{ContentType: "application/x-unknown"}}, nil)
	if err := m.Decode(&v); !errors.Is(err, ErrDecode) {
		t.Errorf("unknown content type: got %v, want ErrDecode", err)
	}

	_, err = testMessage(t, &transport.Delivery{Body: []byte("hi"), Properties: Properties{ContentType: ContentTypeText}}, []string{"json"})
	if !errors.Is(err, ErrContentDisallowed) || !errorContains(err, `"text/plain"`) {
		t.Errorf("text/plain with accept [json]: got %v, want ErrContentDisallowed naming the type", err)
	}

	// No content type means raw bytes (Kombu's rule), always accepted.
	m, err = testMessage(t, &transport.Delivery{Body: []byte{1, 2}}, []string{"json"})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := m.Decode(&b); err != nil || len(b) != 2 {
		t.Errorf("raw decode: %v %v", b, err)
	}
}

func TestMessageDecompression(t *testing.T) {
	z := compressorFor(t, "zlib")
	body, _ := z.Compress([]byte(`{"id":1}`))
	m, err := testMessage(t, &transport.Delivery{
		Body:       body,
		Headers:    map[string]any{"compression": "application/x-gzip"},
		Properties: Properties{ContentType: ContentTypeJSON},
	}, nil)
	if err != nil || string(m.Body) != `{"id":1}` {
		t.Fatalf("body %q, %v", m.Body, err)
	}

	_, err = testMessage(t, &transport.Delivery{
		Body: body, Headers: map[string]any{"compression": "application/x-snappy"},
	}, nil)
	if !errors.Is(err, ErrDecode) || !errors.Is(err, ErrUnknownCompression) {
		t.Fatalf("unknown compression: got %v", err)
	}

	// A connection's body limit (WithMaxBodySize) bounds decompression.
	limited, _ := newCodecs(nil, nil, 1<<20)
	conn := testConnection(limited)
	bomb, _ := z.Compress(make([]byte, 4<<20))
	m, err = conn.newMessage(&transport.Delivery{Body: bomb, Headers: map[string]any{"compression": "zlib"}}, nil, 0)
	if !errors.Is(err, ErrLimitExceeded) || m == nil {
		t.Fatalf("bomb: got %v, want ErrLimitExceeded and the message back to reject", err)
	}
}

func errorContains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
