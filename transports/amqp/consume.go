package amqp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

// consumerSeq makes consumer tags unique within the process.
var consumerSeq atomic.Uint64

// maxTag is the longest consumer tag AMQP carries (a short string).
const maxTag = 255

// consumerTag returns a tag unique to this process for consuming queue:
// prefix.queue.n, with the queue name cut short if the tag would be too long.
func consumerTag(prefix, queue string) string {
	if prefix == "" {
		prefix = "kombu-go"
	}
	n := "." + strconv.FormatUint(consumerSeq.Add(1), 10)
	if room := maxTag - len(prefix) - 1 - len(n); len(queue) > room {
		queue = queue[:max(room, 0)]
	}
	tag := prefix + "." + queue + n
	if len(tag) > maxTag {
		tag = tag[len(tag)-maxTag:]
	}
	return tag
}

// Consume starts one consumer per queue on a channel of its own, with
// spec.Prefetch applied per consumer (basic.qos with global=false): RabbitMQ
// counts a non-global prefetch per consumer, and quorum queues refuse a
// global one, so a subscription to several queues may hold up to Prefetch
// unsettled messages from each. A Prefetch above 65535, which AMQP cannot
// carry, means no limit, as in Kombu.
func (c *conn) Consume(ctx context.Context, spec transport.ConsumeSpec) (transport.Subscription, error) {
	if len(spec.Queues) == 0 {
		return nil, errors.New("amqp: consume: no queue given")
	}
	if spec.Prefetch < 0 {
		return nil, fmt.Errorf("amqp: consume: negative prefetch %d", spec.Prefetch)
	}
	args, err := toTable(spec.Arguments)
	if err != nil {
		return nil, fmt.Errorf("amqp: consume: arguments: %w", err)
	}
	if err := c.check(ctx); err != nil {
		return nil, fmt.Errorf("amqp: consume: %w", err)
	}
	ch, err := c.channel("consume")
	if err != nil {
		return nil, err
	}
	n := len(spec.Queues)
	s := &subscription{
		c:         c,
		ch:        ch,
		queues:    slices.Clone(spec.Queues),
		autoAck:   spec.AutoAck,
		exclusive: spec.Exclusive,
		tagPrefix: spec.Tag,
		args:      args,
		prefetch:  spec.Prefetch,
		out:       make(chan *transport.Delivery),
		over:      make(chan struct{}),
		stop:      make(chan struct{}),
		finished:  make(chan struct{}, n),
		added:     make(chan struct{}),
		pumpDone:  make([]chan struct{}, n),
		cancels:   ch.NotifyCancel(make(chan string, n+1)),
		closes:    ch.NotifyClose(make(chan *amqp.Error, 1)),
		active:    make(map[string]int, n),
		unsettled: map[uint64]struct{}{},
	}
	fail := func(err error) (transport.Subscription, error) {
		_ = ch.Close()
		return nil, err
	}
	if p := spec.Prefetch; p > 0 && p <= 0xFFFF {
		if err := ch.Qos(p, 0, false); err != nil {
			return fail(c.fail(fmt.Sprintf("consume: set prefetch %d", p), err))
		}
	}
	if slices.Contains(spec.Queues, directReplyTo) {
		// Requests naming amq.rabbitmq.reply-to must be published on this
		// channel: Publish finds it through replyChan.
		if s.reply, err = c.newPubChan(ch, true, nil); err != nil {
			return fail(err)
		}
	}
	dchs := make([]<-chan amqp.Delivery, n)
	for i, q := range spec.Queues {
		tag := consumerTag(spec.Tag, q)
		dch, err := ch.Consume(q, tag, spec.AutoAck, spec.Exclusive, false, false, args)
		if err != nil {
			return fail(c.fail(fmt.Sprintf("consume from queue %q", q), err))
		}
		s.active[tag] = i
		dchs[i] = dch
	}
	for i, dch := range dchs {
		s.pumpDone[i] = make(chan struct{})
		go s.pump(i, dch, nil, s.pumpDone[i])
	}
	go s.supervise(n)
	if s.reply != nil {
		c.replyMu.Lock()
		c.replySubs = append(c.replySubs, s)
		c.replyMu.Unlock()
	}
	return s, nil
}

// replyChan returns the channel of the newest running subscription to
// amq.rabbitmq.reply-to, or nil.
func (c *conn) replyChan() *pubChan {
	c.replyMu.Lock()
	defer c.replyMu.Unlock()
	for i := len(c.replySubs) - 1; i >= 0; i-- {
		if pc := c.replySubs[i].reply; !pc.ch.IsClosed() {
			return pc
		}
	}
	return nil
}

func (c *conn) forgetReplySub(s *subscription) {
	c.replyMu.Lock()
	defer c.replyMu.Unlock()
	c.replySubs = slices.DeleteFunc(c.replySubs, func(x *subscription) bool { return x == s })
}

// subscription is a running set of consumers on one channel. Each consumer
// has a pump goroutine moving its deliveries from amqp091-go to out; the
// supervise goroutine drains the channel's notifications and closes out once
// every pump has finished. The subscription is its deliveries'
// Acknowledger.
type subscription struct {
	c         *conn
	ch        *amqp.Channel
	queues    []string
	autoAck   bool
	exclusive bool
	tagPrefix string     // ConsumeSpec.Tag
	args      amqp.Table // ConsumeSpec.Arguments
	reply     *pubChan   // set when consuming amq.rabbitmq.reply-to

	prefetchMu sync.Mutex      // one SetPrefetch at a time
	prefetch   int             // guarded by prefetchMu
	added      chan struct{}   // a pump started by SetPrefetch, for supervise to count
	pumpDone   []chan struct{} // per queue, closed when its latest pump returns; guarded by mu

	out      chan *transport.Delivery
	over     chan struct{} // closed with out
	stop     chan struct{} // closed when the channel is gone: pumps drop what they hold
	stopOnce sync.Once
	finished chan struct{} // one value per pump that has returned
	cancels  chan string   // server-sent basic.cancel
	closes   chan *amqp.Error
	rpcMu    sync.Mutex // one synchronous call at a time on ch

	mu          sync.Mutex
	active      map[string]int      // consumer tag → queue index, until cancelled
	unsettled   map[uint64]struct{} // delivery tags handed out and not settled
	cancelled   bool                // Cancel was called
	brokerErr   error               // set when the broker cancelled a consumer
	closeReason *amqp.Error         // why the broker closed the channel
	chanDead    bool                // the channel is closed
	closingChan bool                // we are closing the channel
	ended       bool                // out is closed
	err         error               // what Err returns once ended
}

var (
	_ transport.Subscription = (*subscription)(nil)
	_ transport.Acknowledger = (*subscription)(nil)
)

// pump forwards one consumer's deliveries. amqp091-go buffers them without
// bound, but the broker sends no more than the prefetch allows, so a slow
// reader holds up only its own subscription. A pump that replaces another
// on the same queue (SetPrefetch) starts once that one has handed over its
// last delivery (after is closed), so that the queue's order holds.
func (s *subscription) pump(i int, dch <-chan amqp.Delivery, after <-chan struct{}, done chan struct{}) {
	defer func() {
		close(done)
		select {
		case s.finished <- struct{}{}:
		case <-s.over: // ended already: nobody counts
		}
	}()
	if after != nil {
		select {
		case <-after:
		case <-s.stop:
		}
	}
	queue := s.queues[i]
	for d := range dch {
		td := toDelivery(&d, queue)
		if !s.autoAck {
			s.mu.Lock()
			dead := s.chanDead
			if !dead {
				s.unsettled[d.DeliveryTag] = struct{}{}
			}
			s.mu.Unlock()
			if dead {
				continue // the broker requeues it
			}
			td.Acknowledger = s
		}
		select {
		case s.out <- td:
		case <-s.stop:
			// The channel is gone, so the delivery can no longer be
			// settled: the broker requeues it. Keep reading until
			// amqp091-go closes dch.
		}
	}
}

// notifications are the channel's notification channels a supervisor still
// reads; each is set to nil once amqp091-go closes it.
type notifications struct {
	cancels chan string
	closes  chan *amqp.Error
}

// onCancel handles a basic.cancel from the broker.
func (s *subscription) onCancel(n *notifications, tag string, ok bool) {
	if !ok {
		n.cancels = nil
		return
	}
	s.brokerCancelled(tag)
}

// onClose handles the channel's close notification.
func (s *subscription) onClose(n *notifications, e *amqp.Error, ok bool) {
	if !ok {
		n.closes = nil
		s.abort(nil)
		return
	}
	s.abort(e)
}

// supervise drains the channel's notifications, ends the subscription once
// every consumer has stopped, and then watches the channel until it closes.
func (s *subscription) supervise(pumps int) {
	n := notifications{cancels: s.cancels, closes: s.closes}
	done := s.c.done
	for pumps > 0 {
		select {
		case tag, ok := <-n.cancels:
			s.onCancel(&n, tag, ok)
		case e, ok := <-n.closes:
			s.onClose(&n, e, ok)
		case <-done:
			done = nil
			s.abort(nil)
		case <-s.finished:
			pumps--
		case <-s.added:
			pumps++
		}
	}
	// amqp091-go sends a notification before it closes the delivery
	// channels it concerns, so what explains the end is queued by now.
	for queued := true; queued; {
		select {
		case tag, ok := <-n.cancels:
			s.onCancel(&n, tag, ok)
		case e, ok := <-n.closes:
			s.onClose(&n, e, ok)
		default:
			queued = false
		}
	}
	s.end()
	// Watch the channel until it closes (once every delivery is settled,
	// or with the connection), so that settling after that fails cleanly.
	// No consumer is left to be cancelled.
	if n.closes != nil {
		for e := range n.closes {
			s.abort(e)
		}
		s.abort(nil)
	}
}

// brokerCancelled handles a basic.cancel from the broker (the queue was
// deleted, for one): the whole subscription ends, so the other consumers
// are cancelled too.
func (s *subscription) brokerCancelled(tag string) {
	s.mu.Lock()
	i, ok := s.active[tag]
	if !ok {
		s.mu.Unlock()
		return
	}
	delete(s.active, tag)
	if !s.cancelled && s.brokerErr == nil {
		s.brokerErr = fmt.Errorf("amqp: the broker cancelled the consumer of queue %q (the queue was deleted or became unavailable): %w",
			s.queues[i], transport.ErrNotFound)
	}
	rest := s.takeActive()
	s.mu.Unlock()
	s.cancelTags(rest)
}

// takeActive returns the consumer tags still running and forgets them.
// s.mu is held.
func (s *subscription) takeActive() []string {
	tags := make([]string, 0, len(s.active))
	for t := range s.active {
		tags = append(tags, t)
	}
	clear(s.active)
	return tags
}

// cancelTags sends basic.cancel for each tag. amqp091-go then closes the
// consumer's delivery channel once it has handed over what it buffered.
func (s *subscription) cancelTags(tags []string) error {
	var errs []error
	for _, t := range tags {
		s.rpcMu.Lock()
		err := s.ch.Cancel(t, false)
		s.rpcMu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// abort records that the channel is closed, with the broker's reason if it
// gave one. Deliveries not yet handed over are dropped (the broker requeues
// them) and those handed over can no longer be settled.
func (s *subscription) abort(e *amqp.Error) {
	s.mu.Lock()
	s.chanDead = true
	if e != nil && s.closeReason == nil {
		s.closeReason = e
	}
	clear(s.unsettled)
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
}

// end closes Deliveries, with Err set first.
func (s *subscription) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	switch {
	case s.brokerErr != nil:
		s.err = s.brokerErr
	case s.cancelled:
	case s.c.shut.Load():
		s.err = fmt.Errorf("amqp: consume from %s: %w", describeQueues(s.queues), s.c.closedErr())
	case s.closeReason != nil:
		s.err = &brokerError{op: "consume from " + describeQueues(s.queues), err: s.closeReason, kind: transport.ErrClosed,
			hint: "the broker closed the consumer's channel"}
	default:
		s.err = fmt.Errorf("amqp: consume from %s: channel closed: %w", describeQueues(s.queues), transport.ErrClosed)
	}
	s.ended = true
	s.maybeCloseChannel()
	s.mu.Unlock()
	close(s.out)
	close(s.over)
	if s.reply != nil {
		s.c.forgetReplySub(s)
	}
}

// maybeCloseChannel closes the channel once the subscription has ended and
// every message it delivered is settled: closing it earlier would requeue
// messages the runtime still acks after Cancel. s.mu is held.
func (s *subscription) maybeCloseChannel() {
	if !s.ended || len(s.unsettled) > 0 || s.chanDead || s.closingChan {
		return
	}
	s.closingChan = true
	go func() {
		s.rpcMu.Lock()
		defer s.rpcMu.Unlock()
		_ = s.ch.Close()
	}()
}

func describeQueues(qs []string) string {
	if len(qs) == 1 {
		return fmt.Sprintf("queue %q", qs[0])
	}
	return fmt.Sprintf("queues %q", qs)
}

func (s *subscription) Deliveries() <-chan *transport.Delivery { return s.out }

func (s *subscription) Done() <-chan struct{} { return s.over }

// Err says why the broker or the connection ended the subscription. It is
// nil while it runs and after Cancel.
func (s *subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		return nil
	}
	return s.err
}

// Cancel cancels every consumer. It returns once the broker has confirmed;
// the deliveries amqp091-go had already buffered still arrive on Deliveries,
// which is closed after them. Delivered messages stay unsettled until acked
// or rejected: the channel stays open until they are.
func (s *subscription) Cancel(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.cancelled {
		s.mu.Unlock()
		return nil
	}
	s.cancelled = true
	tags := s.takeActive()
	dead := s.chanDead
	s.mu.Unlock()
	if dead {
		return nil // already ended by the broker or the connection
	}
	// amqp091-go waits for basic.cancel-ok without a context: wait here,
	// so that a broker that does not answer cannot hold the caller past
	// ctx (the cancel goes on, and ends with the connection at the latest).
	done := make(chan error, 1)
	go func() { done <- s.cancelTags(tags) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("amqp: cancel consumer: waiting for the broker: %w", ctx.Err())
	}
	if err != nil {
		if s.c.shut.Load() {
			return fmt.Errorf("amqp: cancel consumer: %w", s.c.closedErr())
		}
		return s.c.fail("cancel consumer", err)
	}
	return nil
}

var _ transport.PrefetchSetter = (*subscription)(nil)

// SetPrefetch changes the prefetch of the running subscription. RabbitMQ
// applies a basic.qos (per consumer, as Consume sets it) only to consumers
// started after it, so each queue's consumer is replaced: a new one starts
// under the new prefetch, then the old one is cancelled. The old one's
// deliveries stay unsettled on the same channel, settle as before, and are
// handed over before the new one's. An exclusive consumer cannot have a
// second beside it, and is refused with ErrNotSupported; a prefetch does
// not bound an auto-acking one, which is left as it is.
func (s *subscription) SetPrefetch(ctx context.Context, n int) error {
	switch {
	case n < 0:
		return fmt.Errorf("amqp: set prefetch: negative prefetch %d", n)
	case s.autoAck:
		return nil
	case s.exclusive:
		return fmt.Errorf("amqp: set prefetch: an exclusive consumer cannot be replaced while it runs: %w", transport.ErrNotSupported)
	case n > 0xFFFF:
		n = 0 // no limit, as Consume reads it
	}
	s.prefetchMu.Lock()
	defer s.prefetchMu.Unlock()
	if n == s.prefetch {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	tags := maps.Clone(s.active)
	stale := s.cancelled || s.chanDead || s.ended || s.brokerErr != nil
	s.mu.Unlock()
	if stale {
		return nil
	}
	s.rpcMu.Lock()
	err := s.ch.Qos(n, 0, false)
	s.rpcMu.Unlock()
	if err != nil {
		return s.c.fail(fmt.Sprintf("set prefetch %d", n), err)
	}
	for tag, i := range tags {
		if err := s.replace(tag, i); err != nil {
			return err
		}
	}
	s.prefetch = n
	return nil
}

// replace starts a new consumer of the i-th queue under the channel's
// current basic.qos and cancels the one with tag. If the subscription was
// cancelled or ended meanwhile, the new one is cancelled instead.
func (s *subscription) replace(tag string, i int) error {
	q := s.queues[i]
	newTag := consumerTag(s.tagPrefix, q)
	s.rpcMu.Lock()
	dch, err := s.ch.Consume(q, newTag, false, false, false, false, s.args)
	s.rpcMu.Unlock()
	if err != nil {
		return s.c.fail(fmt.Sprintf("set prefetch: consume from queue %q", q), err)
	}
	s.mu.Lock()
	_, running := s.active[tag]
	stale := !running || s.cancelled || s.chanDead || s.ended || s.brokerErr != nil
	if !stale {
		delete(s.active, tag)
		s.active[newTag] = i
	}
	after, done := s.pumpDone[i], make(chan struct{})
	s.pumpDone[i] = done
	s.mu.Unlock()
	select {
	case s.added <- struct{}{}: // counted before the old pump can finish
	case <-s.over:
	}
	go s.pump(i, dch, after, done)
	if stale {
		tag = newTag
	}
	s.rpcMu.Lock()
	err = s.ch.Cancel(tag, false)
	s.rpcMu.Unlock()
	if err != nil {
		return s.c.fail(fmt.Sprintf("set prefetch: cancel the consumer of queue %q", q), err)
	}
	return nil
}

// Ack acknowledges a delivery, and with multiple every earlier unsettled
// one of this subscription; with multiple, tag 0 acknowledges them all.
func (s *subscription) Ack(tag uint64, multiple bool) error {
	return s.settle(tag, multiple, func() error { return s.ch.Ack(tag, multiple) }, "ack")
}

// Reject rejects a delivery, requeueing it or not.
func (s *subscription) Reject(tag uint64, requeue bool) error {
	return s.settle(tag, false, func() error { return s.ch.Reject(tag, requeue) }, "reject")
}

func (s *subscription) settle(tag uint64, multiple bool, send func() error, op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Close marks the connection shut before it closes the channels, and
	// the watcher that sets chanDead runs later: check both, so that every
	// settlement after Close says so, not only the first.
	if s.chanDead || s.c.shut.Load() {
		return s.settleClosed(op, tag)
	}
	if err := known(s.unsettled, tag, multiple); err != nil {
		return fmt.Errorf("amqp: %s delivery %d: %w", op, tag, err)
	}
	if err := send(); err != nil {
		// The tags stay: the channel is gone, the broker requeues the
		// messages, and a later settlement gets the same closed error,
		// not "unknown delivery tag".
		return s.c.fail(fmt.Sprintf("%s delivery %d", op, tag), err)
	}
	forget(s.unsettled, tag, multiple)
	s.maybeCloseChannel()
	return nil
}

func (s *subscription) settleClosed(op string, tag uint64) error {
	if s.c.shut.Load() {
		return fmt.Errorf("amqp: %s delivery %d: %w", op, tag, s.c.closedErr())
	}
	return fmt.Errorf("amqp: %s delivery %d: the consumer's channel is closed and the broker has requeued the message: %w",
		op, tag, transport.ErrClosed)
}

// known refuses a tag this scope never delivered or has settled. AMQP
// closes the channel on an unknown delivery tag, which would take every
// other unsettled delivery with it, so an unknown tag is refused here
// instead. With multiple, tag 0 means all of them.
func known(unsettled map[uint64]struct{}, tag uint64, multiple bool) error {
	if multiple && tag == 0 {
		return nil
	}
	if _, ok := unsettled[tag]; !ok {
		return fmt.Errorf("unknown delivery tag: never delivered here, or already settled: %w", transport.ErrPrecondition)
	}
	return nil
}

// forget removes settled tags from unsettled, once the broker has taken
// the settlement.
func forget(unsettled map[uint64]struct{}, tag uint64, multiple bool) {
	switch {
	case multiple && tag == 0:
		clear(unsettled)
	case !multiple:
		delete(unsettled, tag)
	default:
		for t := range unsettled {
			if t <= tag {
				delete(unsettled, t)
			}
		}
	}
}

// getScope is the get channel's Acknowledger: Get deliveries are settled on
// the channel that delivered them. When that channel closes, Get opens a new
// one with a new scope, and settling the old deliveries fails with
// transport.ErrClosed (the broker requeued them).
type getScope struct {
	c         *conn
	ch        *amqp.Channel
	mu        sync.Mutex
	unsettled map[uint64]struct{}
}

var _ transport.Acknowledger = (*getScope)(nil)

// Get fetches one message with basic.get.
func (c *conn) Get(ctx context.Context, queue string, autoAck bool) (*transport.Delivery, error) {
	if err := c.check(ctx); err != nil {
		return nil, fmt.Errorf("amqp: get from queue %q: %w", queue, err)
	}
	if err := c.acquire(ctx, &c.get); err != nil {
		return nil, fmt.Errorf("amqp: get from queue %q: %w", queue, err)
	}
	defer c.get.release()
	if c.gets == nil || c.gets.ch.IsClosed() {
		ch, err := c.channel(fmt.Sprintf("get from queue %q", queue))
		if err != nil {
			return nil, err
		}
		c.gets = &getScope{c: c, ch: ch, unsettled: map[uint64]struct{}{}}
	}
	gs := c.gets
	d, ok, err := gs.ch.Get(queue, autoAck)
	if err != nil {
		return nil, c.fail(fmt.Sprintf("get from queue %q", queue), err)
	}
	if !ok {
		return nil, fmt.Errorf("amqp: get from queue %q: %w", queue, transport.ErrEmpty)
	}
	td := toDelivery(&d, queue)
	if !autoAck {
		gs.mu.Lock()
		gs.unsettled[d.DeliveryTag] = struct{}{}
		gs.mu.Unlock()
		td.Acknowledger = gs
	}
	return td, nil
}

func (g *getScope) Ack(tag uint64, multiple bool) error {
	return g.settle(tag, multiple, func() error { return g.ch.Ack(tag, multiple) }, "ack")
}

func (g *getScope) Reject(tag uint64, requeue bool) error {
	return g.settle(tag, false, func() error { return g.ch.Reject(tag, requeue) }, "reject")
}

func (g *getScope) settle(tag uint64, multiple bool, send func() error, op string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch.IsClosed() || g.c.shut.Load() {
		if g.c.shut.Load() {
			return fmt.Errorf("amqp: %s delivery %d: %w", op, tag, g.c.closedErr())
		}
		return fmt.Errorf("amqp: %s delivery %d: the channel it came on is closed and the broker has requeued the message: %w",
			op, tag, transport.ErrClosed)
	}
	if err := known(g.unsettled, tag, multiple); err != nil {
		return fmt.Errorf("amqp: %s delivery %d: %w", op, tag, err)
	}
	if err := send(); err != nil {
		return g.c.fail(fmt.Sprintf("%s delivery %d", op, tag), err)
	}
	forget(g.unsettled, tag, multiple)
	return nil
}

// toDelivery converts a delivery from amqp091-go.
func toDelivery(d *amqp.Delivery, queue string) *transport.Delivery {
	return &transport.Delivery{
		Body:    d.Body,
		Headers: fromTable(d.Headers),
		Properties: transport.Properties{
			ContentType:     d.ContentType,
			ContentEncoding: d.ContentEncoding,
			DeliveryMode:    d.DeliveryMode,
			Priority:        d.Priority,
			CorrelationID:   d.CorrelationId,
			ReplyTo:         d.ReplyTo,
			Expiration:      parseExpiration(d.Expiration),
			MessageID:       d.MessageId,
			Timestamp:       d.Timestamp,
			Type:            d.Type,
			UserID:          d.UserId,
			AppID:           d.AppId,
		},
		Exchange:    d.Exchange,
		RoutingKey:  d.RoutingKey,
		Queue:       queue,
		ConsumerTag: d.ConsumerTag,
		Redelivered: d.Redelivered,
		Tag:         d.DeliveryTag,
	}
}

// parseExpiration reads the expiration property, a string of integer
// milliseconds. Anything else (no publisher Kombu knows sends it) reads as
// no expiration.
func parseExpiration(s string) time.Duration {
	if s == "" {
		return 0
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 || ms > int64(time.Duration(1<<63-1)/time.Millisecond) {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}
