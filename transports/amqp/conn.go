package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

const features = transport.FeatureDirect | transport.FeatureTopic | transport.FeatureFanout |
	transport.FeatureHeaders | transport.FeatureExchangeBindings | transport.FeaturePriority |
	transport.FeatureTTL | transport.FeatureDeadLetter | transport.FeatureMaxLength |
	transport.FeatureConfirms | transport.FeatureMandatory | transport.FeatureQueueTypes |
	transport.FeatureDirectReplyTo | transport.FeatureDelay | transport.FeatureLivePrefetch

// closeTimeout bounds the connection.close handshake in Close.
// A healthy broker answers in milliseconds; a blocked one (memory alarm)
// never does, and Close must not hang on it.
const closeTimeout = 3 * time.Second

// conn is one AMQP connection. It is the one place that owns the
// *amqp.Connection and the channels opened on it, so that reconnecting can
// later be added here without touching the rest.
type conn struct {
	ac     *amqp.Connection
	url    string // masked
	logger *slog.Logger

	done    chan struct{} // closed once the connection is closed or lost
	shut    atomic.Bool   // Close was called or the connection was lost
	mu      sync.Mutex
	closing bool  // Close was called
	lost    error // why the connection was lost (*closedError); nil after Close

	admin rpcSlot // declarations, bindings, purges, deletions
	get   rpcSlot // basic.get and its acknowledgements
	gets  *getScope

	confirm pubSlot // publisher channel in confirm mode; carries mandatory publishes
	plain   pubSlot // publisher channel without confirms, opened on first use
	// Messages published with NotifyUnroutable go on channels of their
	// own, so that every return on them is one to report (on the confirm
	// channel a return belongs to the mandatory publish awaiting it).
	notifyConfirm pubSlot
	notifyPlain   pubSlot
	onUnroutable  func(exchange, routingKey, reason string) // transport.Config.Unroutable

	replyMu   sync.Mutex
	replySubs []*subscription // consuming amq.rabbitmq.reply-to, newest last

	idPrefix string        // makes generated message ids unique to this connection
	idSeq    atomic.Uint64 // and this counter unique within it

	sharedIDs idLocks // mandatory publishes with the application's message ids

	delay delayState // delay.go
}

var (
	_ transport.Conn           = (*conn)(nil)
	_ transport.BatchPublisher = (*conn)(nil)
)

func newConn(ac *amqp.Connection, url string, cfg transport.Config) *conn {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	c := &conn{
		ac:       ac,
		url:      url,
		logger:   logger,
		done:     make(chan struct{}),
		admin:    newRPCSlot(),
		get:      newRPCSlot(),
		idPrefix: "kombu-go-" + hex.EncodeToString(rnd[:]) + "-",
	}
	c.confirm.confirm = true
	c.onUnroutable = cfg.Unroutable
	c.notifyConfirm.confirm, c.notifyConfirm.notify = true, cfg.Unroutable
	c.notifyPlain.notify = cfg.Unroutable
	closes := ac.NotifyClose(make(chan *amqp.Error, 1))
	go c.watch(closes)
	// Drained for as long as the connection lives (amqp091-go closes it on
	// shutdown), so the library's reader never waits on us.
	blocks := ac.NotifyBlocked(make(chan amqp.Blocking, 4))
	go c.watchBlocked(blocks)
	return c
}

// watchBlocked reports RabbitMQ's flow control: while the broker blocks a
// connection (a memory or disk alarm), its publishes wait, bounded by their
// contexts.
func (c *conn) watchBlocked(blocks chan amqp.Blocking) {
	for b := range blocks {
		if b.Active {
			c.logger.Warn("amqp: connection blocked by the broker: publishes wait until it unblocks", "url", c.url, "reason", b.Reason)
		} else {
			c.logger.Info("amqp: connection unblocked", "url", c.url)
		}
	}
}

// watch waits for the connection to end and records why.
func (c *conn) watch(closes chan *amqp.Error) {
	e, ok := <-closes
	c.mu.Lock()
	if ok && e != nil && !c.closing {
		c.lost = &closedError{reason: e}
		c.logger.Warn("amqp: connection lost", "url", c.url, "error", e.Error())
	} else if !c.closing {
		c.lost = &closedError{reason: errors.New("closed without a reason")}
	}
	c.shut.Store(true)
	c.mu.Unlock()
	for range closes {
	}
	close(c.done)
}

// closedErr returns what calls on a closed or lost connection return. It
// wraps transport.ErrClosed.
func (c *conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost != nil {
		return c.lost
	}
	return errConnClosed
}

// check fails fast when ctx has ended or the connection is closed.
func (c *conn) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.shut.Load() {
		return c.closedErr()
	}
	return nil
}

// channel opens a new channel.
func (c *conn) channel(op string) (*amqp.Channel, error) {
	if c.shut.Load() {
		return nil, fmt.Errorf("amqp: %s: %w", op, c.closedErr())
	}
	ch, err := c.ac.Channel()
	if err != nil {
		return nil, c.fail(op+": open channel", err)
	}
	return ch, nil
}

func (c *conn) Features() transport.Features { return features }

func (c *conn) Done() <-chan struct{} { return c.done }

// Err says why the connection was lost; it is nil while it is open and after
// Close.
func (c *conn) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost == nil {
		return nil
	}
	return c.lost
}

// Close closes every channel and the connection, waiting for the broker to
// acknowledge (bounded by closeTimeout). The broker requeues messages
// delivered to this connection and not yet settled. Closing again returns
// nil.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closing || c.shut.Load() {
		c.closing = true
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	c.shut.Store(true)
	c.mu.Unlock()
	err := c.ac.CloseDeadline(time.Now().Add(closeTimeout))
	<-c.done
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("amqp: close: %w", err)
	}
	return nil
}

// rpcSlot is a channel for synchronous methods, one call at a time:
// amqp091-go matches replies to calls by arrival, so two calls in flight on
// one channel could take each other's replies.
type rpcSlot struct {
	sem chan struct{} // holds a token while a call runs
	ch  *amqp.Channel // guarded by sem; nil or closed: open a new one
}

func newRPCSlot() rpcSlot { return rpcSlot{sem: make(chan struct{}, 1)} }

// acquire takes the slot, waiting for ctx or the connection to end.
func (c *conn) acquire(ctx context.Context, s *rpcSlot) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.closedErr()
	}
}

func (s *rpcSlot) release() { <-s.sem }

// withAdmin runs fn on the declaration channel, opening a new one when the
// broker closed the last (as it does on PRECONDITION_FAILED or NOT_FOUND).
// amqp091-go's synchronous methods take no context: ctx bounds the wait for
// the channel, and the broker's answer (or a lost connection, which
// heartbeats detect) bounds the call itself.
func (c *conn) withAdmin(ctx context.Context, op string, fn func(ch *amqp.Channel) error) error {
	if err := c.check(ctx); err != nil {
		return fmt.Errorf("amqp: %s: %w", op, err)
	}
	if err := c.acquire(ctx, &c.admin); err != nil {
		return fmt.Errorf("amqp: %s: %w", op, err)
	}
	defer c.admin.release()
	if c.admin.ch == nil || c.admin.ch.IsClosed() {
		ch, err := c.channel(op)
		if err != nil {
			return err
		}
		c.admin.ch = ch
	}
	return c.fail(op, fn(c.admin.ch))
}

// DeclareExchange declares ex, or with ex.Passive checks that it exists. An
// empty type means direct, Kombu's default; other types than the four AMQP
// ones (plugin exchanges such as x-delayed-message) go to the broker as
// given.
func (c *conn) DeclareExchange(ctx context.Context, ex transport.Exchange) error {
	op := fmt.Sprintf("declare exchange %q", ex.Name)
	if ex.Passive {
		op = fmt.Sprintf("check exchange %q exists", ex.Name)
	}
	args, err := toTable(ex.Arguments)
	if err != nil {
		return fmt.Errorf("amqp: %s: arguments: %w", op, err)
	}
	kind := ex.Type
	if kind == "" {
		kind = transport.ExchangeDirect
	}
	return c.withAdmin(ctx, op, func(ch *amqp.Channel) error {
		if ex.Passive {
			return ch.ExchangeDeclarePassive(ex.Name, kind, ex.Durable, ex.AutoDelete, ex.Internal, false, args)
		}
		return ch.ExchangeDeclare(ex.Name, kind, ex.Durable, ex.AutoDelete, ex.Internal, false, args)
	})
}

func (c *conn) DeleteExchange(ctx context.Context, name string, ifUnused bool) error {
	return c.withAdmin(ctx, fmt.Sprintf("delete exchange %q", name), func(ch *amqp.Channel) error {
		return ch.ExchangeDelete(name, ifUnused, false)
	})
}

func (c *conn) DeclareQueue(ctx context.Context, q transport.Queue) (transport.QueueInfo, error) {
	op := fmt.Sprintf("declare queue %q", q.Name)
	if q.Passive {
		op = fmt.Sprintf("check queue %q exists", q.Name)
	}
	args, err := toTable(q.Arguments)
	if err != nil {
		return transport.QueueInfo{}, fmt.Errorf("amqp: %s: arguments: %w", op, err)
	}
	var info amqp.Queue
	err = c.withAdmin(ctx, op, func(ch *amqp.Channel) error {
		var err error
		if q.Passive {
			info, err = ch.QueueDeclarePassive(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, args)
		} else {
			info, err = ch.QueueDeclare(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, args)
		}
		return err
	})
	if err != nil {
		return transport.QueueInfo{}, err
	}
	return transport.QueueInfo{Name: info.Name, Messages: info.Messages, Consumers: info.Consumers}, nil
}

// DeleteQueue deletes a queue and returns how many messages it held.
// Deleting a queue that does not exist succeeds with 0, as RabbitMQ answers.
func (c *conn) DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error) {
	var n int
	err := c.withAdmin(ctx, fmt.Sprintf("delete queue %q", name), func(ch *amqp.Channel) error {
		var err error
		n, err = ch.QueueDelete(name, ifUnused, ifEmpty, false)
		return err
	})
	return n, err
}

func (c *conn) PurgeQueue(ctx context.Context, name string) (int, error) {
	var n int
	err := c.withAdmin(ctx, fmt.Sprintf("purge queue %q", name), func(ch *amqp.Channel) error {
		var err error
		n, err = ch.QueuePurge(name, false)
		return err
	})
	return n, err
}

func (c *conn) Bind(ctx context.Context, b transport.Binding) error {
	return c.bind(ctx, b, true)
}

func (c *conn) Unbind(ctx context.Context, b transport.Binding) error {
	return c.bind(ctx, b, false)
}

func (c *conn) bind(ctx context.Context, b transport.Binding, bind bool) error {
	verb, what := "bind", "queue"
	if !bind {
		verb = "unbind"
	}
	if b.DestinationIsExchange {
		what = "exchange"
	}
	op := fmt.Sprintf("%s %s %q to exchange %q with routing key %q", verb, what, b.Destination, b.Source, b.RoutingKey)
	if !bind {
		op = fmt.Sprintf("%s %s %q from exchange %q with routing key %q", verb, what, b.Destination, b.Source, b.RoutingKey)
	}
	args, err := toTable(b.Arguments)
	if err != nil {
		return fmt.Errorf("amqp: %s: arguments: %w", op, err)
	}
	return c.withAdmin(ctx, op, func(ch *amqp.Channel) error {
		switch {
		case b.DestinationIsExchange && bind:
			return ch.ExchangeBind(b.Destination, b.RoutingKey, b.Source, false, args)
		case b.DestinationIsExchange:
			return ch.ExchangeUnbind(b.Destination, b.RoutingKey, b.Source, false, args)
		case bind:
			return ch.QueueBind(b.Destination, b.RoutingKey, b.Source, false, args)
		default:
			return ch.QueueUnbind(b.Destination, b.RoutingKey, b.Source, args)
		}
	})
}
