package consumertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
)

// DeadLetterReason checks what a dead letter says of why its message
// failed (issue 11, point 9). brokerDeadLetters tells whether the broker
// dead-letters on its own (RabbitMQ: x-death only, no text) or the
// transport writes the dead letter itself (memory, Redis), which puts the
// error's text in kombu.ErrorHeader:
//
//   - a handler error: the text where the transport writes the dead
//     letter, none where the broker does;
//   - a message that does not decode: likewise, the decoding error;
//   - a message that used up WithMessageRetry: the final attempt's error where
//     the transport writes the dead letter, the error of the last retry
//     (the attempt before) where the broker does;
//   - a long error is cut to 1 KiB.
func DeadLetterReason(t *testing.T, url string, brokerDeadLetters bool) {
	t.Run("handler error", func(t *testing.T) {
		s := newScene(t, url)
		dead := s.deadLetter(kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			return errors.New("card declined: insufficient funds")
		}), "invoice 42")
		want := "card declined: insufficient funds"
		if brokerDeadLetters {
			want = ""
		}
		expectReason(t, dead, want)
	})

	t.Run("decoding error", func(t *testing.T) {
		s := newScene(t, url)
		dead := s.deadLetter(kombu.Typed(func(context.Context, *struct{ ID int }, *kombu.Message) error {
			t.Error("a body that does not decode reached the handler")
			return nil
		}), "not json")
		got, _ := dead.Headers[kombu.ErrorHeader].(string)
		if brokerDeadLetters != (got == "") || !brokerDeadLetters && !strings.Contains(got, "cannot decode") {
			t.Fatalf("%s = %q on a message that did not decode (broker dead-letters: %t)", kombu.ErrorHeader, got, brokerDeadLetters)
		}
	})

	t.Run("retries used up", func(t *testing.T) {
		s := newScene(t, url)
		var attempts atomic.Int32
		dead := s.deadLetter(kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			return fmt.Errorf("attempt %d failed", attempts.Add(1))
		}), "invoice 42", kombu.WithMessageRetry(kombu.RetryPolicy{
			MaxRetries: 1, IntervalStart: time.Millisecond, IntervalStep: time.Millisecond, IntervalMax: time.Millisecond,
		}))
		want := "attempt 2 failed"
		if brokerDeadLetters {
			want = "attempt 1 failed"
		}
		expectReason(t, dead, want)
	})

	t.Run("long error cut", func(t *testing.T) {
		if brokerDeadLetters {
			t.Skip("the broker writes the dead letter: no text to cut")
		}
		s := newScene(t, url)
		long := strings.Repeat("é", 3000) // 6000 bytes; a cut must not split a rune
		dead := s.deadLetter(kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			return errors.New(long)
		}), "invoice 42")
		got, _ := dead.Headers[kombu.ErrorHeader].(string)
		if len(got) > 1024+len("…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) || !strings.HasSuffix(got, "…") {
			t.Fatalf("%s of %d bytes (%.20q...), want the error cut to 1 KiB and marked", kombu.ErrorHeader, len(got), got)
		}
	})
}

// deadLetter publishes body to the work queue, consumes it with h until it
// reaches the dead-letter queue, and returns it from there.
func (s *scene) deadLetter(h kombu.Handler, body string, opts ...kombu.ConsumerOption) *kombu.Message {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	opts = append(opts, kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{s.dlx}, Queues: []kombu.Queue{s.dead}}))
	c, err := kombu.NewConsumer(s.conn, []kombu.Subscription{{Queue: s.work, Handler: h}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	// Sent as JSON: the consumer's default accept list takes it, and a body
	// that is not JSON fails to decode.
	p := kombu.NewProducer(s.conn, kombu.WithRoutingKey(s.work.Name))
	if err := p.Publish(ctx, []byte(body), kombu.WithContentType("application/json", "utf-8")); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := s.dead.Get(ctx, s.admin, kombu.WithAutoAck())
		if err == nil {
			return msg
		}
		if !errors.Is(err, kombu.ErrEmpty) {
			t.Fatalf("get from %s: %v", s.dead.Name, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nothing reached the dead-letter queue %s", s.dead.Name)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// expectReason checks the dead letter's error text ("" for none) and that
// it is a dead letter (x-death).
func expectReason(t *testing.T, dead *kombu.Message, want string) {
	t.Helper()
	if _, ok := dead.Headers["x-death"]; !ok {
		t.Errorf("the dead letter has no x-death header: %v", dead.Headers)
	}
	got, present := dead.Headers[kombu.ErrorHeader]
	switch {
	case want == "" && present:
		t.Fatalf("%s = %q, want none", kombu.ErrorHeader, got)
	case want != "" && got != want:
		t.Fatalf("%s = %#v, want %q", kombu.ErrorHeader, got, want)
	}
}
