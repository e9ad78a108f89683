package kombu

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Worker keeps a set of consumers running, as Kombu's ConsumerMixin and
// ConsumerProducerMixin do. Its consumers share one connection; what their
// handlers publish goes through a second one (ProducerConnection), so that
// a broker pushing back on publishers (RabbitMQ's flow control blocks a
// whole connection) never stalls consuming.
//
// The connection itself reconnects after a loss and the consumers resume
// on it (see Dial and Consumer.Run); the worker adds what is left: it
// recreates a consumer the broker ended (its queue was deleted, say), no
// faster than its restart policy allows, and reports connection and
// consumer events through WorkerHooks.
//
//	w := kombu.NewWorker(conn, kombu.WithProducerConnection(pubConn))
//	w.Consume(func(c *kombu.Connection) (*kombu.Consumer, error) {
//		return ordersv1.NewOrdersConsumer(c, handler)
//	})
//	err := w.Run(ctx) // until ctx ends; then a graceful stop
type Worker struct {
	conn, producerConn *Connection
	factories          []ConsumerFactory
	hooks              WorkerHooks
	restart            RetryPolicy
}

// ConsumerFactory makes one of a worker's consumers on the connection it is
// given. A generated NewXConsumer fits in a closure.
type ConsumerFactory func(conn *Connection) (*Consumer, error)

// WorkerHooks are called, if set, from the worker's goroutines.
type WorkerHooks struct {
	// ConnectionLost: the consuming connection was lost; recovery is on it.
	ConnectionLost func()
	// ConnectionRevived: a new broker connection replaced the lost one.
	ConnectionRevived func()
	// ConsumeReady: a consumer was made (or made again) and starts running.
	ConsumeReady func(c *Consumer)
	// ConsumerFailed: a consumer ended with err and will be made again.
	ConsumerFailed func(err error)
}

// WithProducerConnection sets the connection ProducerConnection returns.
// Without it, the worker's producers share the consuming connection.
func WithProducerConnection(conn *Connection) WorkerOption {
	return workerOption(func(w *Worker) { w.producerConn = conn })
}

// WithWorkerHooks sets the worker's hooks.
func WithWorkerHooks(h WorkerHooks) WorkerOption {
	return workerOption(func(w *Worker) { w.hooks = h })
}

// WithRestartBackoff throttles the recreation of a consumer that failed:
// the n-th restart in a row waits policy.Interval(n). The default waits
// 1s, 2s, 3s, then 3s; a consumer that ran for a minute starts over.
// MaxRetries bounds the restarts in a row; past it, Run returns the error.
func WithRestartBackoff(p RetryPolicy) WorkerOption {
	return workerOption(func(w *Worker) { w.restart = p })
}

// NewWorker returns a worker whose consumers use conn.
func NewWorker(conn *Connection, opts ...WorkerOption) *Worker {
	w := &Worker{
		conn:         conn,
		producerConn: conn,
		restart:      RetryPolicy{IntervalStart: time.Second, IntervalStep: time.Second, IntervalMax: 2 * time.Second},
	}
	for _, o := range opts {
		o.applyWorker(w)
	}
	return w
}

// Consume adds a consumer to the worker. Call it before Run.
func (w *Worker) Consume(f ConsumerFactory) { w.factories = append(w.factories, f) }

// ProducerConnection is the connection for what the worker's handlers
// publish (Kombu's ConsumerProducerMixin.producer_connection).
func (w *Worker) ProducerConnection() *Connection { return w.producerConn }

// Run runs every consumer until ctx ends, then stops them gracefully (each
// lets its running handlers finish and returns what it held to its queue)
// and returns nil. It returns an error when the connection is closed for
// good, or when a consumer keeps failing past the restart policy's
// MaxRetries.
func (w *Worker) Run(ctx context.Context) error {
	if len(w.factories) == 0 {
		return errors.New("kombu: Worker.Run with no consumers")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.watchConnection(ctx)

	errs := make(chan error, len(w.factories))
	var wg sync.WaitGroup
	for _, f := range w.factories {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.keepRunning(ctx, f); err != nil {
				errs <- err
				cancel() // one consumer failed for good: stop the others too
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

// keepRunning makes and runs one consumer, and makes it again when it
// fails, until ctx ends.
func (w *Worker) keepRunning(ctx context.Context, f ConsumerFactory) error {
	restarts := 0
	for {
		started := time.Now()
		c, err := f(w.conn)
		if err == nil {
			if w.hooks.ConsumeReady != nil {
				w.hooks.ConsumeReady(c)
			}
			err = c.Run(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-w.conn.Done():
			return w.conn.Err()
		default:
		}
		if err == nil {
			return nil // stopped by its own Close
		}
		if time.Since(started) > time.Minute {
			restarts = 0 // it ran well for a while: this is a new failure
		}
		if !w.restart.allows(restarts) {
			return err
		}
		if w.hooks.ConsumerFailed != nil {
			w.hooks.ConsumerFailed(err)
		}
		wait := w.restart.Interval(restarts)
		restarts++
		w.conn.logger.Warn("kombu: consumer failed; making it again", "error", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// watchConnection reports the consuming connection's losses and revivals.
func (w *Worker) watchConnection(ctx context.Context) {
	for {
		revived := w.conn.Revived() // before Lost: a revival in between is not missed
		select {
		case <-w.conn.Lost():
		case <-ctx.Done():
			return
		case <-w.conn.Done():
			return
		}
		select {
		case <-w.conn.Done():
			return // closed, not lost
		default:
		}
		if w.hooks.ConnectionLost != nil {
			w.hooks.ConnectionLost()
		}
		select {
		case <-revived:
		case <-ctx.Done():
			return
		case <-w.conn.Done():
			return
		}
		if w.hooks.ConnectionRevived != nil {
			w.hooks.ConnectionRevived()
		}
	}
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}
