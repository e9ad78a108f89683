// Package consumertest checks, against a real transport, what the runtime's
// consumer promises whatever the broker: each transport's tests call its
// functions with a URL of that transport, so that memory, RabbitMQ and
// Redis are held to the same contract by the same code.
package consumertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// wait bounds each step of a check.
const wait = 10 * time.Second

// shutdownTimeout is the consumers' WithShutdownTimeout: short, since every
// check waits for it once.
const shutdownTimeout = 100 * time.Millisecond

// Shutdown checks that a consumer's shutdown never dead-letters, drops or
// strands a message whose handler it interrupted (issue 11, point 1):
//
//   - a handler that returns an error once the shutdown cancelled its
//     context (ctx.Err(), another error, a panic) has its message put back
//     in its queue, not rejected into the dead-letter queue;
//   - one that returns nil has it acked;
//   - with the connection closed as soon as Run returns, racing the
//     handler's settlement, the message is back in its queue once Close
//     has returned, on every run (the old behaviour was a race);
//   - a handler that ignores its context and outlives the shutdown does
//     not keep its message from the queue once the connection is closed.
//
// url names the transport; every queue and exchange the checks declare
// has a name of its own, and is deleted afterwards.
func Shutdown(t *testing.T, url string) {
	interrupted := map[string]func(ctx context.Context) error{
		"ctx.Err()":     func(ctx context.Context) error { return ctx.Err() },
		"wrapped":       func(ctx context.Context) error { return fmt.Errorf("charge card: %w", ctx.Err()) },
		"another error": func(context.Context) error { return errors.New("payment gateway unreachable") },
		"panic":         func(context.Context) error { panic("interrupted") },
	}
	for name, ret := range interrupted {
		t.Run("requeued after "+name, func(t *testing.T) {
			s := newScene(t, url)
			msg := s.interrupt(func(ctx context.Context) error {
				<-ctx.Done()
				return ret(ctx)
			})
			s.settled(msg)
			if got := msg.State(); got != kombu.StateRequeued {
				t.Fatalf("message %s, want %s: an interrupted handler's error must put it back in its queue", got, kombu.StateRequeued)
			}
			s.conn.Close()
			s.expect(1, 0)
		})
	}

	t.Run("acked after nil", func(t *testing.T) {
		s := newScene(t, url)
		msg := s.interrupt(func(ctx context.Context) error {
			<-ctx.Done()
			return nil // the work was done: ack
		})
		s.settled(msg)
		if got := msg.State(); got != kombu.StateAcked {
			t.Fatalf("message %s, want %s", got, kombu.StateAcked)
		}
		ranOut := s.ranOut()
		s.conn.Close()
		if ranOut {
			// The handler returned after Run did: its ack raced the
			// Close, which may have put the message back first. Only
			// that nothing was lost or dead-lettered can be checked.
			t.Log("the shutdown timeout ran out before the handler returned (a loaded machine)")
			if w, d := s.ready(context.Background(), s.work), s.ready(context.Background(), s.dead); w > 1 || d != 0 {
				t.Fatalf("%d ready in the work queue and %d in the dead-letter queue, want at most 1 and 0", w, d)
			}
			return
		}
		// Run returned once the handler had returned and its message was
		// acked: nothing comes back when the connection closes.
		s.expect(0, 0)
	})

	t.Run("back before Close returns", func(t *testing.T) {
		s := newScene(t, url)
		s.interrupt(func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		// No wait for the settlement: Close races it, as in a program
		// that closes its connection as soon as Run returns.
		if err := s.conn.Close(); err != nil {
			t.Fatal(err)
		}
		s.expect(1, 0)
	})

	t.Run("handler outliving the shutdown", func(t *testing.T) {
		s := newScene(t, url)
		release := make(chan struct{})
		returned := make(chan struct{})
		s.interrupt(func(context.Context) error {
			defer close(returned)
			<-release // ignores its context
			return nil
		})
		if err := s.conn.Close(); err != nil {
			t.Fatal(err)
		}
		s.expect(1, 0)
		close(release)
		<-returned
	})
}

// scene is one check's queues, consumer connection and admin connection:
// a work queue whose rejected messages go to a dead-letter queue through a
// fanout exchange, and one message published to it.
type scene struct {
	t           *testing.T
	conn, admin *kombu.Connection
	log         *brokertest.LogBuffer // the consumer connection's
	work, dead  kombu.Queue
	dlx         kombu.Exchange
}

// ranOut reports whether Run returned at the end of the shutdown timeout
// with a handler still running, as it logs.
func (s *scene) ranOut() bool {
	return strings.Contains(s.log.String(), "handlers still running after the shutdown timeout")
}

func newScene(t *testing.T, url string) *scene {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "kgt-shutdown-" + hex.EncodeToString(b[:])
	log := &brokertest.LogBuffer{}
	s := &scene{
		t:    t,
		log:  log,
		conn: dial(t, url, kombu.WithLogger(log.Logger())),
		// The admin connection outlives the consumer's, to look at the
		// queues once it is closed.
		admin: dial(t, url),
		dlx:   kombu.Exchange{Name: id + ".dlx", Type: kombu.ExchangeFanout},
	}
	s.work = kombu.Queue{Name: id + ".work", DeadLetterExchange: s.dlx.Name}
	s.dead = kombu.Queue{Name: id + ".dead", Bindings: []kombu.Binding{{Exchange: s.dlx.Name}}}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// Declared on the admin connection too: on Redis a connection knows
	// the queues it declared, and an empty one only by that.
	topology := kombu.Topology{Exchanges: []kombu.Exchange{s.dlx}, Queues: []kombu.Queue{s.work, s.dead}}
	if err := topology.Declare(ctx, s.admin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, _ = s.work.Delete(ctx, s.admin)
		_, _ = kombu.Queue{Name: s.work.Name + ".retry"}.Delete(ctx, s.admin) // WithMessageRetry's holding queue
		_, _ = s.dead.Delete(ctx, s.admin)
		_ = s.dlx.Delete(ctx, s.admin)
	})
	return s
}

func dial(t *testing.T, url string, opts ...kombu.DialOption) *kombu.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := kombu.Dial(ctx, url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// interrupt publishes a message, runs a consumer whose handler starts on it
// and then calls handle, stops the consumer while the handler runs, and
// returns the message once Run has returned.
func (s *scene) interrupt(handle func(ctx context.Context) error) *kombu.Message {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	started := make(chan *kombu.Message, 1)
	c, err := kombu.NewConsumer(s.conn, []kombu.Subscription{{
		Queue: s.work,
		Handler: kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
			started <- msg
			return handle(ctx)
		}),
	}}, kombu.WithShutdownTimeout(shutdownTimeout), kombu.WithPrefetch(1),
		kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{s.dlx}, Queues: []kombu.Queue{s.dead}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := kombu.NewProducer(s.conn, kombu.WithRoutingKey(s.work.Name)).Publish(ctx, "invoice 42"); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	var msg *kombu.Message
	select {
	case msg = <-started:
	case <-ctx.Done():
		t.Fatal("the handler did not start")
	}
	stop()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	return msg
}

// settled waits until the handler's result has been applied to msg.
func (s *scene) settled(msg *kombu.Message) {
	s.t.Helper()
	deadline := time.Now().Add(wait)
	for msg.State() == kombu.StateUnsettled {
		if time.Now().After(deadline) {
			s.t.Fatal("the message was not settled after its handler returned")
		}
		time.Sleep(time.Millisecond)
	}
}

// expect waits until the work and dead-letter queues hold the given numbers
// of ready messages, failing the test if they do not. A broker puts a
// message back asynchronously after a connection closes, so the counts
// are polled; a message stranded (Redis's unacked hash) or dropped never
// shows up.
func (s *scene) expect(work, dead int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var w, d int
	for {
		w, d = s.ready(ctx, s.work), s.ready(ctx, s.dead)
		if w == work && d == dead {
			return
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("%d ready in the work queue and %d in the dead-letter queue, want %d and %d", w, d, work, dead)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (s *scene) ready(ctx context.Context, q kombu.Queue) int {
	s.t.Helper()
	info, err := q.Inspect(ctx, s.admin)
	if err != nil {
		s.t.Fatalf("inspect %s: %v", q.Name, err)
	}
	return info.Messages
}
