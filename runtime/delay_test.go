package kombu_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

// noDelayDriver is the in-process broker without delayed delivery, as a
// transport that cannot delay is.
type noDelayDriver struct{}

func (noDelayDriver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	memory, _ := transport.Lookup("memory")
	c, err := memory.Open(ctx, u, cfg)
	if err != nil {
		return nil, err
	}
	return noDelayConn{c}, nil
}

type noDelayConn struct{ transport.Conn }

func (c noDelayConn) Features() transport.Features {
	return c.Conn.Features() &^ transport.FeatureDelay
}

func (c noDelayConn) Publish(ctx context.Context, p *transport.Publishing) error {
	if p.Delay > 0 {
		return fmt.Errorf("delay: %w", transport.ErrNotSupported)
	}
	return c.Conn.Publish(ctx, p)
}

func init() { transport.Register("memory-nodelay", noDelayDriver{}) }

var delayBrokers atomic.Int64

func delayConn(t *testing.T, scheme string) (*kombu.Connection, kombu.Queue) {
	t.Helper()
	conn := dialURL(t, fmt.Sprintf("%s:///delay-%d", scheme, delayBrokers.Add(1)))
	q := kombu.Queue{Name: "reminders"}
	if _, err := q.Declare(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	return conn, q
}

// arrival waits for the message and returns how long after start it came.
func arrival(t *testing.T, conn *kombu.Connection, q kombu.Queue, start time.Time) (time.Duration, string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		m, err := q.Get(ctxT(t), conn, kombu.WithAutoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var body string
		if err := m.Decode(&body); err != nil {
			t.Fatal(err)
		}
		return time.Since(start), body
	}
	t.Fatal("nothing arrived")
	return 0, ""
}

func TestWithDelayAndETA(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  func() kombu.PublishOption
		want time.Duration
	}{
		{"WithDelay", func() kombu.PublishOption { return kombu.WithDelay(300 * time.Millisecond) }, 300 * time.Millisecond},
		{"WithETA", func() kombu.PublishOption { return kombu.WithETA(time.Now().Add(300 * time.Millisecond)) }, 300 * time.Millisecond},
		{"ETAInThePast", func() kombu.PublishOption { return kombu.WithETA(time.Now().Add(-time.Hour)) }, 0},
		{"ZeroDelay", func() kombu.PublishOption { return kombu.WithDelay(0) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, q := delayConn(t, "memory")
			start := time.Now()
			if err := kombu.NewProducer(conn).Publish(ctxT(t), "tea", kombu.WithRoutingKey(q.Name), tc.opt()); err != nil {
				t.Fatal(err)
			}
			took, body := arrival(t, conn, q, start)
			if body != "tea" || took < tc.want || took > tc.want+200*time.Millisecond {
				t.Errorf("%q arrived after %v, want %v", body, took, tc.want)
			}
		})
	}
	t.Run("ProducerDefault", func(t *testing.T) {
		conn, q := delayConn(t, "memory")
		p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name), kombu.WithDelay(200*time.Millisecond))
		start := time.Now()
		if err := p.Publish(ctxT(t), "tea"); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Get(ctxT(t), conn); !errors.Is(err, kombu.ErrEmpty) {
			t.Fatalf("right after a delayed publish: %v, want ErrEmpty", err)
		}
		if took, _ := arrival(t, conn, q, start); took < 200*time.Millisecond {
			t.Errorf("arrived after %v, want 200ms", took)
		}
		// A later option wins: WithETA in the past undoes the default.
		start = time.Now()
		if err := p.Publish(ctxT(t), "now", kombu.WithETA(time.Now().Add(-time.Second))); err != nil {
			t.Fatal(err)
		}
		if took, body := arrival(t, conn, q, start); body != "now" || took > 100*time.Millisecond {
			t.Errorf("%q arrived after %v, want at once", body, took)
		}
	})
	t.Run("Batch", func(t *testing.T) {
		conn, q := delayConn(t, "memory")
		var b kombu.Batch
		p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name))
		start := time.Now()
		if err := p.Publish(ctxT(t), "later", kombu.InBatch(&b), kombu.WithDelay(200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if took, body := arrival(t, conn, q, start); body != "later" || took < 200*time.Millisecond {
			t.Errorf("%q arrived after %v, want 200ms", body, took)
		}
	})
}

func TestDelayBadInput(t *testing.T) {
	conn, q := delayConn(t, "memory")
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name))
	for _, tc := range []struct {
		name string
		opts []kombu.PublishOption
		want []error
	}{
		{"Negative", []kombu.PublishOption{kombu.WithDelay(-time.Second)}, []error{kombu.ErrInvalidDelay, kombu.ErrInvalidArgument}},
		{"TooLong", []kombu.PublishOption{kombu.WithDelay(kombu.MaxDelay + time.Second)}, []error{kombu.ErrInvalidDelay, kombu.ErrInvalidArgument}},
		{"ETATooFar", []kombu.PublishOption{kombu.WithETA(time.Now().Add(kombu.MaxDelay + time.Hour))}, []error{kombu.ErrInvalidDelay}},
		{"Mandatory", []kombu.PublishOption{kombu.WithDelay(time.Second), kombu.WithMandatory()}, []error{kombu.ErrNotSupported}},
		{"Expiration", []kombu.PublishOption{kombu.WithDelay(time.Second), kombu.WithExpiration(time.Minute)}, []error{kombu.ErrNotSupported}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Publish(ctxT(t), "x", tc.opts...)
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			t.Log(err)
		})
	}
	// The longest delay itself is accepted.
	if err := p.Publish(ctxT(t), "in 8.5 years", kombu.WithDelay(kombu.MaxDelay)); err != nil {
		t.Errorf("MaxDelay: %v", err)
	}
	if n, err := q.Purge(ctxT(t), conn); err != nil || n != 0 {
		t.Errorf("the queue held %d messages (%v), want none: nothing refused may be published", n, err)
	}
}

func TestDelayNotSupported(t *testing.T) {
	conn, q := delayConn(t, "memory-nodelay")
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(q.Name))
	err := p.Publish(ctxT(t), "x", kombu.WithDelay(time.Second))
	if !errors.Is(err, kombu.ErrNotSupported) {
		t.Fatalf("a delay on a transport without FeatureDelay: %v, want ErrNotSupported", err)
	}
	t.Log(err)
	// No delay, or an ETA already past, needs no feature.
	if err := p.Publish(ctxT(t), "x", kombu.WithDelay(0)); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctxT(t), "x", kombu.WithETA(time.Now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
}
