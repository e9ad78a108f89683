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

// A driver without publisher confirms refuses Publishing.Confirm with
// ErrNotSupported, as the driver contract says. noConfirmsDriver is the
// in-process broker made such a driver; the runtime must publish on it all
// the same, asking for confirms only where the transport has them.
type noConfirmsDriver struct{}

func (noConfirmsDriver) Open(ctx context.Context, u *transport.URL, cfg transport.Config) (transport.Conn, error) {
	memory, _ := transport.Lookup("memory")
	c, err := memory.Open(ctx, u, cfg)
	if err != nil {
		return nil, err
	}
	return noConfirmsConn{c}, nil
}

type noConfirmsConn struct{ transport.Conn }

func (c noConfirmsConn) Features() transport.Features {
	return c.Conn.Features() &^ transport.FeatureConfirms
}

func (c noConfirmsConn) Publish(ctx context.Context, p *transport.Publishing) error {
	if p.Confirm {
		return fmt.Errorf("publisher confirms: %w", transport.ErrNotSupported)
	}
	return c.Conn.Publish(ctx, p)
}

func init() { transport.Register("memory-noconfirms", noConfirmsDriver{}) }

var noConfirmsBrokers atomic.Int64

func TestPublishAndRetryWithoutConfirms(t *testing.T) {
	conn := dialURL(t, fmt.Sprintf("memory-noconfirms:///%s-%d", t.Name(), noConfirmsBrokers.Add(1)))
	var attempts atomic.Int32
	handled := make(chan struct{})
	c, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "work"},
		Handler: kombu.HandlerFunc(func(context.Context, *kombu.Message) error {
			if attempts.Add(1) == 1 {
				return errors.New("fails once") // retried: republished by the runtime
			}
			close(handled)
			return nil
		}),
	}}, kombu.WithMessageRetry(kombu.RetryPolicy{MaxRetries: 1, IntervalStart: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	// The default producer asks for confirms; this transport has none.
	mustPublish(t, kombu.NewProducer(conn, kombu.WithRoutingKey("work")).Publish(ctxT(t), []byte("m")))
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatalf("the retry never came: %d attempts", attempts.Load())
	}
}
