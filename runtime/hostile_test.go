package kombu_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// hostile is a message a peer could send to break a consumer, and the
// errors it must end in.
type hostile struct {
	name        string
	body        []byte
	contentType string
	encoding    string
	compression string
	want        []error
}

func hostileMessages(t *testing.T) []hostile {
	var bomb bytes.Buffer // 64 MiB of zeros in 64 KiB of zlib
	w, _ := zlib.NewWriterLevel(&bomb, zlib.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 {
		w.Write(zeros)
	}
	w.Close()
	var small bytes.Buffer
	w = zlib.NewWriter(&small)
	w.Write([]byte(strings.Repeat(`{"a": 1}`, 100)))
	w.Close()
	zstdGiB := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0} // frame declaring 1 GiB of content
	zstdGiB = binary.LittleEndian.AppendUint64(zstdGiB, 1<<30)
	zstdGiB = append(zstdGiB, 16<<3|1<<1|1, 0, 0, 'A')
	laughs := "a: &a [x,x,x,x,x,x,x,x,x]\n"
	for i, c := range "bcdefghi" {
		prev := string("abcdefgh"[i])
		laughs += string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n"
	}
	return []hostile{
		{"zip bomb", bomb.Bytes(), "application/json", "utf-8", "application/x-gzip",
			[]error{kombu.ErrDecode, kombu.ErrLimitExceeded}},
		{"1 GiB declared length", zstdGiB, "application/json", "utf-8", "application/zstd",
			[]error{kombu.ErrDecode, kombu.ErrLimitExceeded}},
		{"truncated frame", small.Bytes()[:small.Len()/2], "application/json", "utf-8", "zlib",
			[]error{kombu.ErrDecode}},
		{"invalid UTF-8 text", []byte("caf\xe9"), "text/plain", "utf-8", "", []error{kombu.ErrDecode}},
		{"deeply nested JSON", bytes.Repeat([]byte("["), 8<<20), "application/json", "utf-8", "", []error{kombu.ErrDecode}},
		{"msgpack extension type", []byte{0x81, 0xa1, 'a', 0xd4, 0x05, 0x01}, "application/x-msgpack", "binary", "",
			[]error{kombu.ErrDecode}},
		{"YAML alias bomb", []byte(laughs), "application/x-yaml", "utf-8", "", []error{kombu.ErrDecode}},
		{"unknown compression", small.Bytes(), "application/json", "utf-8", "application/x-snappy",
			[]error{kombu.ErrDecode, kombu.ErrUnknownCompression}},
		{"pickle", []byte("cos\nsystem\n(S'true'\ntR."), "application/x-python-serialize", "binary", "",
			[]error{kombu.ErrContentDisallowed}},
	}
}

// TestHostileMessagesAreRejectedAndTheConsumerGoesOn publishes each hostile
// message between good ones: each must reach the decode-error hook with a
// typed error, be dead-lettered (not acked and lost), and the consumer must
// handle the next good message, all within bounded time and memory.
func TestHostileMessagesAreRejectedAndTheConsumerGoesOn(t *testing.T) {
	conn, err := kombu.Dial(context.Background(), brokerURL(t), kombu.WithMaxBodySize(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := hostileMessages(t)
	ctx := ctxT(t)
	type failure struct {
		name string
		err  error
	}
	failures := make(chan failure, 32)
	var mu sync.Mutex
	var handled []float64
	c, err := kombu.NewConsumer(conn,
		[]kombu.Subscription{{
			Queue: kombu.Queue{Name: "events", DeadLetterExchange: "dlx"},
			Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
				var v map[string]any
				if m.Properties.ContentType == "text/plain" {
					var s string
					return m.Decode(&s)
				}
				if err := m.Decode(&v); err != nil {
					return err
				}
				mu.Lock()
				handled = append(handled, v["n"].(float64))
				mu.Unlock()
				return nil
			}),
		}},
		kombu.WithTopology(workAndDeadLetter),
		kombu.WithAccept("json", "msgpack", "yaml", "text"),
		kombu.WithDecodeErrorHandler(func(m *kombu.Message, err error) {
			failures <- failure{m.Properties.MessageID, err}
		}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("events"))
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i, h := range msgs {
		mustPublish(t, p.Publish(ctx, map[string]int{"n": i}))
		opts := []kombu.PublishOption{kombu.WithContentType(h.contentType, h.encoding), kombu.WithMessageID(h.name)}
		if h.compression != "" {
			opts = append(opts, kombu.WithHeaders(map[string]any{"compression": h.compression}))
		}
		mustPublish(t, p.Publish(ctx, h.body, opts...))
	}
	mustPublish(t, p.Publish(ctx, map[string]int{"n": len(msgs)}))

	for range msgs {
		select {
		case f := <-failures:
			var h hostile
			for _, m := range msgs {
				if m.name == f.name {
					h = m
				}
			}
			for _, want := range h.want {
				if !errors.Is(f.err, want) {
					t.Errorf("%s: hook got %v, want %v", f.name, f.err, want)
				}
			}
			t.Logf("%s: %.160v", f.name, f.err)
		case <-time.After(10 * time.Second):
			t.Fatalf("decode-error hook not called for every hostile message")
		}
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == len(msgs)+1 })
	// Every hostile message was dead-lettered, none acked and lost.
	waitFor(t, func() bool { return ready(t, conn, "dead") == len(msgs) })
	if n := ready(t, conn, "events"); n != 0 {
		t.Fatalf("%d messages left on the queue", n)
	}
	elapsed := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("%d hostile messages in %v; heap in use %d MiB → %d MiB, %d MiB allocated in all",
		len(msgs), elapsed, before.HeapInuse>>20, after.HeapInuse>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	if elapsed > 20*time.Second {
		t.Fatalf("took %v", elapsed)
	}
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 256<<20 {
		t.Fatalf("heap grew by %d MiB", grown>>20)
	}
}

// TestDefaultAcceptRefusesYAMLAndMsgpack: a consumer without WithAccept
// refuses what Kombu refuses by default, and the message is dead-lettered.
func TestDefaultAcceptRefusesYAMLAndMsgpack(t *testing.T) {
	conn := dial(t)
	ctx := ctxT(t)
	errs := make(chan error, 4)
	handled := make(chan string, 4)
	c, err := kombu.NewConsumer(conn,
		[]kombu.Subscription{{
			Queue: kombu.Queue{Name: "events", DeadLetterExchange: "dlx"},
			Handler: kombu.HandlerFunc(func(_ context.Context, m *kombu.Message) error {
				var v any
				if err := m.Decode(&v); err != nil {
					return err
				}
				handled <- m.Properties.ContentType
				return nil
			}),
		}},
		kombu.WithTopology(workAndDeadLetter),
		kombu.WithDecodeErrorHandler(func(m *kombu.Message, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	p := kombu.NewProducer(conn, kombu.WithRoutingKey("events"))
	mustPublish(t, p.Publish(ctx, map[string]int{"n": 1}, kombu.WithSerializer("yaml")))
	mustPublish(t, p.Publish(ctx, map[string]int{"n": 1}, kombu.WithSerializer("msgpack")))
	mustPublish(t, p.Publish(ctx, map[string]int{"n": 1}, kombu.WithSerializer("json")))
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, kombu.ErrContentDisallowed) {
				t.Fatalf("got %v, want ErrContentDisallowed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("decode-error hook not called")
		}
	}
	if ct := <-handled; ct != "application/json" {
		t.Fatalf("handled %s", ct)
	}
	waitFor(t, func() bool { return ready(t, conn, "dead") == 2 })
}
