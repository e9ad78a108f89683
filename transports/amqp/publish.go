package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

// directReplyTo is RabbitMQ's pseudo-queue for direct reply-to. A request
// naming it in reply_to must be published on the channel that consumes it.
const directReplyTo = "amq.rabbitmq.reply-to"

// Sizes of the returns bookkeeping.
const (
	// returnBuffer is the capacity of the channel basic.return frames
	// arrive on. Its drain goroutine never blocks, so this only absorbs
	// bursts.
	returnBuffer = 256
	// maxUnclaimed bounds the returns kept for publishers that have not
	// asked for them yet. A publisher asks right after its confirm, so
	// entries only pile up for publishers that gave up waiting (their
	// context ended); the oldest are dropped first.
	maxUnclaimed = 4096
)

// pubSlot holds a publisher channel and replaces it when it closes.
type pubSlot struct {
	confirm bool
	// notify, when set, receives every message the channel's broker
	// returns: the slot carries only NotifyUnroutable messages, whose
	// returns nobody waits for.
	notify func(exchange, routingKey, reason string)
	cur    atomic.Pointer[pubChan]
	mu     sync.Mutex // serializes opening
}

// pubChan is a channel messages are published on. In confirm mode it also
// tracks basic.return frames so that each mandatory publish learns whether
// its message was returned; with notify set it hands every return to it
// instead.
type pubChan struct {
	ch      *amqp.Channel
	confirm bool
	notify  func(exchange, routingKey, reason string)

	// Written by amqp091-go, read only by drain.
	returns chan amqp.Return
	closes  chan *amqp.Error

	probes chan *probe   // publishers asking for their returns
	dead   chan struct{} // closed when drain has returned
	logger *slog.Logger  // where unattributable returns are reported
	closed *amqp.Error   // why the broker closed the channel; set before dead closes

	// mu guards byID and order: drain fills them, and publishers claim
	// from them through drain or, once it has returned, directly.
	mu    sync.Mutex
	byID  map[string][]string // message id → reply texts of its returns
	order []string            // ids in byID, oldest first (may hold claimed ones)
}

// probe asks the drain goroutine for the returns of some message ids. Once
// done receives, texts[i] holds the reply text of ids[i]'s return, and
// returned[i] whether there was one.
type probe struct {
	ids      []string
	texts    []string
	returned []bool
	done     chan struct{}
}

var probePool = sync.Pool{New: func() any { return &probe{done: make(chan struct{}, 1)} }}

// pub returns the slot's channel, opening a new one if there is none or the
// last was closed.
func (c *conn) pub(s *pubSlot) (*pubChan, error) {
	if pc := s.cur.Load(); pc != nil && !pc.ch.IsClosed() {
		return pc, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc := s.cur.Load(); pc != nil && !pc.ch.IsClosed() {
		return pc, nil
	}
	ch, err := c.channel("publish")
	if err != nil {
		return nil, err
	}
	pc, err := c.newPubChan(ch, s.confirm, s.notify)
	if err != nil {
		ch.Close()
		return nil, err
	}
	s.cur.Store(pc)
	return pc, nil
}

// newPubChan sets ch up for publishing; with confirm it puts it in confirm
// mode and starts tracking returns, with notify it starts handing returns to
// notify.
func (c *conn) newPubChan(ch *amqp.Channel, confirm bool, notify func(exchange, routingKey, reason string)) (*pubChan, error) {
	pc := &pubChan{ch: ch, confirm: confirm, notify: notify}
	if !confirm && notify == nil {
		return pc, nil
	}
	if confirm {
		if err := ch.Confirm(false); err != nil {
			return nil, c.fail("publish: enable publisher confirms", err)
		}
	}
	pc.returns = ch.NotifyReturn(make(chan amqp.Return, returnBuffer))
	pc.closes = ch.NotifyClose(make(chan *amqp.Error, 1))
	pc.probes = make(chan *probe)
	pc.dead = make(chan struct{})
	pc.byID = map[string][]string{}
	pc.logger = c.logger
	go pc.drain()
	return pc, nil
}

// drain is the only reader of the channel's returns and close
// notifications. It never blocks on anything but its own select, so
// amqp091-go's reader never waits for it. It answers probes after taking
// every return already queued: RabbitMQ sends a message's basic.return
// before its basic.ack, and amqp091-go hands both over in order, so once a
// publisher has its confirm, its return (if any) is queued or taken.
func (pc *pubChan) drain() {
	returns, closes := pc.returns, pc.closes
	for returns != nil || closes != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			pc.record(r)
		case e, ok := <-closes:
			if !ok {
				closes = nil
				continue
			}
			pc.closed = e
		case p := <-pc.probes:
			returns = pc.takeQueued(returns)
			pc.answer(p)
		}
	}
	close(pc.dead)
}

// takeQueued records the returns already queued on returns, without
// waiting, and returns nil if it found returns closed.
func (pc *pubChan) takeQueued(returns chan amqp.Return) chan amqp.Return {
	for returns != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				return nil
			}
			pc.record(r)
		default:
			return returns
		}
	}
	return nil
}

func (pc *pubChan) record(r amqp.Return) {
	if pc.notify != nil {
		pc.notify(r.Exchange, r.RoutingKey, returnText(r))
		return
	}
	if r.MessageId == "" {
		pc.logger.Warn("amqp: message returned by the broker without a message id, so not attributable to a publish",
			"exchange", r.Exchange, "routing_key", r.RoutingKey, "reply", r.ReplyText)
		return
	}
	text := returnText(r)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.byID[r.MessageId] = append(pc.byID[r.MessageId], text)
	pc.order = append(pc.order, r.MessageId)
	for len(pc.byID) > maxUnclaimed {
		old := pc.order[0]
		pc.order = pc.order[1:]
		delete(pc.byID, old)
	}
	if len(pc.order) > 2*maxUnclaimed {
		kept := pc.order[:0]
		for _, id := range pc.order {
			if _, ok := pc.byID[id]; ok {
				kept = append(kept, id)
			}
		}
		pc.order = kept
	}
}

func returnText(r amqp.Return) string {
	return r.ReplyText + " (" + strconv.Itoa(int(r.ReplyCode)) + ")"
}

// answer fills in p from the returns recorded so far and claims them.
func (pc *pubChan) answer(p *probe) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for i, id := range p.ids {
		texts := pc.byID[id]
		if len(texts) == 0 {
			continue
		}
		p.returned[i], p.texts[i] = true, texts[0]
		if len(texts) == 1 {
			delete(pc.byID, id)
		} else {
			pc.byID[id] = texts[1:]
		}
	}
	p.done <- struct{}{}
}

// claim reports which of ids were returned, with the broker's reply text.
// The caller has its confirms for all of them.
func (pc *pubChan) claim(p *probe) {
	p.texts = p.texts[:0]
	p.returned = p.returned[:0]
	for range p.ids {
		p.texts = append(p.texts, "")
		p.returned = append(p.returned, false)
	}
	select {
	case pc.probes <- p:
		<-p.done
	case <-pc.dead:
		// drain took every return before it quit; its map is ours now.
		pc.answer(p)
		<-p.done
	}
}

// closedReason waits for drain to record why the channel closed. The
// channel is closed: amqp091-go closes the notification channels before it
// fails the outstanding confirms, so drain is about to return.
func (pc *pubChan) closedReason(ctx context.Context) *amqp.Error {
	if pc.dead == nil {
		return nil
	}
	select {
	case <-pc.dead:
		return pc.closed
	case <-ctx.Done():
		return nil
	}
}

// message converts p to amqp091's form. id is the message id to use.
func message(p *transport.Publishing, id string) (amqp.Publishing, error) {
	headers, err := toTable(p.Headers)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("headers: %w", err)
	}
	mode := p.DeliveryMode
	if mode == 0 {
		mode = transport.Persistent
	}
	m := amqp.Publishing{
		Headers:         headers,
		ContentType:     p.ContentType,
		ContentEncoding: p.ContentEncoding,
		DeliveryMode:    mode,
		Priority:        p.Priority,
		CorrelationId:   p.CorrelationID,
		ReplyTo:         p.ReplyTo,
		MessageId:       id,
		Timestamp:       p.Timestamp,
		Type:            p.Type,
		UserId:          p.UserID,
		AppId:           p.AppID,
		Body:            p.Body,
	}
	if p.Expiration > 0 {
		ms := p.Expiration.Milliseconds()
		if ms == 0 {
			ms = 1 // a sub-millisecond expiration still expires; "0" would mean "now"
		}
		m.Expiration = strconv.FormatInt(ms, 10)
	} else if p.Expiration < 0 {
		return amqp.Publishing{}, fmt.Errorf("negative expiration %v", p.Expiration)
	}
	return m, nil
}

// messageID returns the id p is published with: its own, or for a mandatory
// message without one a new id unique to this connection, so that a return
// can be matched to its publish.
func (c *conn) messageID(p *transport.Publishing) string {
	if p.MessageID != "" || !p.Mandatory {
		return p.MessageID
	}
	return c.idPrefix + strconv.FormatUint(c.idSeq.Add(1), 10)
}

// describePublish names a publish in errors.
func describePublish(p *transport.Publishing) string {
	if p.Exchange == "" {
		return fmt.Sprintf("publish to queue %q through the default exchange", p.RoutingKey)
	}
	return fmt.Sprintf("publish to exchange %q with routing key %q", p.Exchange, p.RoutingKey)
}

// sent is a message handed to the broker whose confirm is awaited.
type sent struct {
	pc *pubChan
	dc *amqp.DeferredConfirmation // nil: nothing to wait for
	id string                     // message id, for mandatory messages
}

// send publishes one message on the channel it belongs on. A channel found
// closed before the message was written is replaced and the message sent
// again: amqp091-go refuses to write on a closed channel, so nothing was
// sent.
func (c *conn) send(ctx context.Context, p *transport.Publishing) (sent, error) {
	id := c.messageID(p)
	m, err := message(p, id)
	if err != nil {
		return sent{}, fmt.Errorf("amqp: %s: %w", describePublish(p), err)
	}
	wait := p.Confirm || p.Mandatory
	// A message that only wants its return reported goes on a channel of
	// its own kind (see pubSlot.notify), published as mandatory so that
	// the broker returns it when it reaches no queue.
	notify := p.NotifyUnroutable && !p.Mandatory && c.onUnroutable != nil
	for attempt := 0; ; attempt++ {
		if err := c.check(ctx); err != nil {
			return sent{}, fmt.Errorf("amqp: %s: %w", describePublish(p), err)
		}
		var pc *pubChan
		switch {
		case p.ReplyTo == directReplyTo:
			// RabbitMQ only accepts the request on the channel consuming
			// the replies.
			if pc = c.replyChan(); pc == nil {
				return sent{}, fmt.Errorf("amqp: %s: reply_to %s needs a consumer of %s on this connection: call Consume on it first",
					describePublish(p), directReplyTo, directReplyTo)
			}
		case notify && wait:
			pc, err = c.pub(&c.notifyConfirm)
		case notify:
			pc, err = c.pub(&c.notifyPlain)
		case wait:
			pc, err = c.pub(&c.confirm)
		default:
			pc, err = c.pub(&c.plain)
		}
		if err != nil {
			return sent{}, err
		}
		mandatory := p.Mandatory || pc.notify != nil
		dc, err := pc.ch.PublishWithDeferredConfirm(p.Exchange, p.RoutingKey, mandatory, false, m)
		if err == nil {
			s := sent{pc: pc, id: id}
			if wait {
				s.dc = dc
			}
			return s, nil
		}
		if errors.Is(err, amqp.ErrClosed) && attempt == 0 && !c.shut.Load() && p.ReplyTo != directReplyTo {
			continue
		}
		return sent{}, c.fail(describePublish(p), err)
	}
}

// settle waits for s's confirm and, for a mandatory message, its return.
func (c *conn) settle(ctx context.Context, p *transport.Publishing, s sent) error {
	if s.dc == nil {
		return nil
	}
	ack, err := s.dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("amqp: %s: waiting for the broker's confirm (the message may or may not have been taken): %w",
			describePublish(p), err)
	}
	if !ack {
		return c.nacked(ctx, p, s.pc)
	}
	if !p.Mandatory {
		return nil
	}
	pr := probePool.Get().(*probe)
	pr.ids = append(pr.ids[:0], s.id)
	s.pc.claim(pr)
	returned, text := pr.returned[0], pr.texts[0]
	pr.ids = pr.ids[:0]
	probePool.Put(pr)
	if returned {
		return fmt.Errorf("amqp: %s: returned by the broker: %s: %w", describePublish(p), text, transport.ErrUnroutable)
	}
	return nil
}

// nacked explains a negative confirm: amqp091-go also fails the confirms
// outstanding on a channel that closes, so check that first.
func (c *conn) nacked(ctx context.Context, p *transport.Publishing, pc *pubChan) error {
	if !pc.ch.IsClosed() {
		return fmt.Errorf("amqp: %s: %w", describePublish(p), transport.ErrNacked)
	}
	if c.shut.Load() {
		return fmt.Errorf("amqp: %s: the connection closed before the broker confirmed the message: %w",
			describePublish(p), c.closedErr())
	}
	ae := pc.closedReason(ctx)
	if ae != nil && ae.Code == amqp.NotFound && p.Exchange != "" &&
		strings.Contains(ae.Reason, "exchange '"+p.Exchange+"'") {
		return &brokerError{op: describePublish(p), err: ae, kind: transport.ErrNotFound}
	}
	return channelClosed(describePublish(p), ae)
}

// idLocks keeps mandatory messages that share a message id from being
// unconfirmed at the same time. A basic.return names its message only by
// its properties, which is why a mandatory message is published with a
// message id (a generated one when the application gives none): while two
// messages with one id await their confirms, the return of one could be
// claimed by the other, and an unroutable message reported routed. Ids the
// connection generates are unique and never wait here. (A publish that gave
// up waiting for its confirm frees its id; its return, if it comes later,
// waits to be claimed and could be by the next publish with that id.)
type idLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the id is free again
}

// lock takes the ids, waiting while another publish holds any of them. It
// takes them in sorted order, so that two batches cannot each hold an id
// the other waits for.
func (l *idLocks) lock(ctx context.Context, ids []string) error {
	slices.Sort(ids)
	for i, id := range ids {
		if err := l.lock1(ctx, id); err != nil {
			l.unlock(ids[:i])
			return err
		}
	}
	return nil
}

func (l *idLocks) lock1(ctx context.Context, id string) error {
	for {
		l.mu.Lock()
		free, busy := l.held[id]
		if !busy {
			if l.held == nil {
				l.held = map[string]chan struct{}{}
			}
			l.held[id] = make(chan struct{})
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		select {
		case <-free:
		case <-ctx.Done():
			return fmt.Errorf("waiting for an earlier mandatory publish with message id %q to be confirmed: %w", id, ctx.Err())
		}
	}
}

func (l *idLocks) unlock(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		close(l.held[id])
		delete(l.held, id)
	}
}

// sharedID returns the id a mandatory message must hold while it is
// unconfirmed, or "" when it needs none.
func sharedID(p *transport.Publishing) string {
	if p.Mandatory && p.MessageID != "" {
		return p.MessageID
	}
	return ""
}

// Publish sends one message. With p.Confirm or p.Mandatory set it waits for
// the broker's publisher confirm and returns nil only once the broker has
// taken the message. A nack fails with transport.ErrNacked, a returned
// mandatory message with transport.ErrUnroutable, and a publish to a missing
// exchange with transport.ErrNotFound. When ctx ends before the confirm, the
// outcome is unknown and the error says so.
func (c *conn) Publish(ctx context.Context, p *transport.Publishing) error {
	if p.Delay > 0 {
		return c.publishDelayed(ctx, p) // delay.go
	}
	if id := sharedID(p); id != "" {
		ids := []string{id}
		if err := c.sharedIDs.lock(ctx, ids); err != nil {
			return fmt.Errorf("amqp: %s: %w", describePublish(p), err)
		}
		defer c.sharedIDs.unlock(ids)
	}
	s, err := c.send(ctx, p)
	if err != nil {
		return err
	}
	return c.settle(ctx, p, s)
}

// PublishBatch sends every message before waiting for any confirm, so the
// broker confirms them as a pipeline. It returns nil once all are confirmed,
// or a *transport.BatchError with one error per failed message, each named
// by its index in ps (from 0). Messages not named were confirmed (or,
// with neither Confirm nor Mandatory set, written to the network).
func (c *conn) PublishBatch(ctx context.Context, ps []*transport.Publishing) error {
	if slices.ContainsFunc(ps, func(p *transport.Publishing) bool { return p.Delay > 0 }) {
		return c.publishBatchDelayed(ctx, ps) // delay.go
	}
	errs := make([]error, len(ps))
	// A batch whose mandatory messages share a message id goes in parts,
	// each with every id once (see idLocks).
	for start := 0; start < len(ps); {
		end, ids, seen := start, []string{}, map[string]bool{}
		for ; end < len(ps); end++ {
			id := sharedID(ps[end])
			if id == "" {
				continue
			}
			if seen[id] {
				break
			}
			seen[id] = true
			ids = append(ids, id)
		}
		if err := c.sharedIDs.lock(ctx, ids); err != nil {
			for i := start; i < len(ps); i++ {
				errs[i] = fmt.Errorf("amqp: %s: %w", describePublish(ps[i]), err)
			}
			break
		}
		c.publishPart(ctx, ps[start:end], errs[start:end])
		c.sharedIDs.unlock(ids)
		start = end
	}
	if err := transport.NewBatchError(errs); err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	return nil
}

// publishPart sends every message of ps before waiting for any confirm,
// and sets errs[i] for each message that failed.
func (c *conn) publishPart(ctx context.Context, ps []*transport.Publishing, errs []error) {
	sents := make([]sent, len(ps))
	for i, p := range ps {
		sents[i], errs[i] = c.send(ctx, p)
	}
	// Returns are claimed per channel in one probe, after every confirm.
	var mandatory map[*pubChan][]int
	for i, p := range ps {
		s := sents[i]
		if errs[i] != nil || s.dc == nil {
			continue
		}
		ack, err := s.dc.WaitContext(ctx)
		switch {
		case err != nil:
			errs[i] = fmt.Errorf("amqp: %s: waiting for the broker's confirm (the message may or may not have been taken): %w",
				describePublish(p), err)
		case !ack:
			errs[i] = c.nacked(ctx, p, s.pc)
		case p.Mandatory:
			if mandatory == nil {
				mandatory = map[*pubChan][]int{}
			}
			mandatory[s.pc] = append(mandatory[s.pc], i)
		}
	}
	for pc, idx := range mandatory {
		pr := &probe{done: make(chan struct{}, 1)}
		for _, i := range idx {
			pr.ids = append(pr.ids, sents[i].id)
		}
		pc.claim(pr)
		for j, i := range idx {
			if pr.returned[j] {
				errs[i] = fmt.Errorf("amqp: %s: returned by the broker: %s: %w", describePublish(ps[i]), pr.texts[j], transport.ErrUnroutable)
			}
		}
	}
}
