package memory

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// message is a published message. It never changes once created, so every
// queue it was routed to shares it; each delivery gets its own copy.
type message struct {
	exchange   string
	routingKey string
	body       []byte
	headers    map[string]any
	// props never change either: messages published with the same
	// properties, as a producer's are, share them (see propsCache).
	props *transport.Properties
}

// propsCache keeps the properties of a connection's last message, for the
// next one to share if it has the same: a producer sets the same ones on
// every message, and a queue of messages holding a pointer each instead of
// a copy is smaller by two thirds.
// Publishers of one connection may race to replace it; whichever wins, the
// properties a message gets are its own.
type propsCache struct {
	last atomic.Pointer[transport.Properties]
}

// props returns p's properties as a message keeps them: the last message's
// if they are the same.
func (pc *propsCache) props(p *transport.Publishing) *transport.Properties {
	props := p.Properties
	if props.DeliveryMode == 0 {
		props.DeliveryMode = transport.Persistent // what an AMQP client sends for 0
	}
	if last := pc.last.Load(); last != nil && *last == props {
		return last
	}
	kept := new(transport.Properties)
	*kept = props
	pc.last.Store(kept)
	return kept
}

// envelope is a published message with its entry in the first queue it
// reaches, allocated together: most messages reach one queue.
type envelope struct {
	message
	first entry
}

// newEnvelope keeps what the publisher may reuse once Publish returns as a
// copy (the body unless the publisher gave it away, see
// transport.Publishing.BodyOwned); headers is p.Headers copied already
// (see cloneHeaders), and props the properties as propsCache keeps them.
//
// With prepare, the envelope also holds the first entry's delivery, made
// ready now: the queue has a consumer, which is about to take it, and the
// publisher's goroutine makes it rather than that consumer's, which has
// the message to handle. A message for a queue nobody consumes may wait
// there for long, and is kept small instead.
func newEnvelope(p *transport.Publishing, headers map[string]any, props *transport.Properties, prepare bool) *envelope {
	body := p.Body
	if !p.BodyOwned {
		body = bytes.Clone(body)
	}
	var env *envelope
	var d *transport.Delivery
	var room []byte
	switch n := len(body); {
	case !prepare:
		env = new(envelope)
	case n <= 64:
		env, d, room = newPrepared[deliveryRoom64](n)
	case n <= 104:
		env, d, room = newPrepared[deliveryRoom104](n)
	case n <= 128:
		env, d, room = newPrepared[deliveryRoom128](n)
	case n <= 256:
		env, d, room = newPrepared[deliveryRoom256](n)
	case n <= 512:
		env, d, room = newPrepared[deliveryRoom512](n)
	default:
		env, d, room = newPrepared[deliveryNoRoom](n)
	}
	env.exchange, env.routingKey, env.body, env.headers, env.props = p.Exchange, p.RoutingKey, body, headers, props
	env.first.msg = &env.message
	if d != nil {
		fill(d, room, &env.message)
		env.first.ready = d
	}
	return env
}

// newPrepared allocates an envelope with a delivery (and room for its
// body, see roomy) in one allocation.
func newPrepared[D any, PD interface {
	*D
	roomy
}](int) (*envelope, *transport.Delivery, []byte) {
	x := new(struct {
		env envelope
		d   D
	})
	d, room := PD(&x.d).parts()
	return &x.env, d, room
}

// entry is a message's place in one queue.
type entry struct {
	msg *message
	// ready is the message's delivery made ready in advance (see
	// newEnvelope), until it is handed over; nil: made when needed.
	ready       *transport.Delivery
	seq         uint64 // order of arrival in the queue, kept across requeues
	expires     int64  // monotime deadline; 0: never
	priority    uint8
	redelivered bool
}

// delivery copies e for a consumer, who may then modify body and headers
// without affecting other queues or a later redelivery.
func (e *entry) delivery(q *queue, consumerTag string, tag uint64) *transport.Delivery {
	d := e.ready
	if d != nil {
		e.ready = nil
	} else {
		var room []byte
		switch n := len(e.msg.body); {
		case n <= 64:
			d, room = newRoomy[deliveryRoom64]()
		case n <= 104:
			d, room = newRoomy[deliveryRoom104]()
		case n <= 128:
			d, room = newRoomy[deliveryRoom128]()
		case n <= 256:
			d, room = newRoomy[deliveryRoom256]()
		case n <= 512:
			d, room = newRoomy[deliveryRoom512]()
		default:
			d = new(transport.Delivery)
		}
		fill(d, room, e.msg)
	}
	d.Queue, d.ConsumerTag, d.Redelivered, d.Tag, d.Acknowledger = q.name, consumerTag, e.redelivered, tag, nil
	return d
}

// fill makes d a copy of m, its body in room if it fits.
func fill(d *transport.Delivery, room []byte, m *message) {
	switch {
	case m.body == nil:
	case len(m.body) <= len(room):
		d.Body = room[:copy(room, m.body):len(m.body)]
	default:
		d.Body = bytes.Clone(m.body)
	}
	d.Headers, d.Properties = copyHeaders(m.headers), *m.props
	d.Exchange, d.RoutingKey = m.exchange, m.routingKey
}

// A delivery with a copy of a small body is allocated with room for it:
// one allocation instead of two, as strings.Builder and bytes.Buffer keep
// a small first buffer. The body is a slice of the room, which keeps the
// delivery's memory alive as long as either is used; a body larger than
// the largest room gets an allocation of its own.
type (
	deliveryRoom64 struct {
		d    transport.Delivery
		room [64]byte
	}
	// 104: an envelope with its delivery and 104 bytes of room is 512
	// bytes, the largest allocation Go makes without a type header, and
	// a delivery with it alone 416; with 128 they are 576 and 448.
	deliveryRoom104 struct {
		d    transport.Delivery
		room [104]byte
	}
	deliveryRoom128 struct {
		d    transport.Delivery
		room [128]byte
	}
	deliveryRoom256 struct {
		d    transport.Delivery
		room [256]byte
	}
	deliveryRoom512 struct {
		d    transport.Delivery
		room [512]byte
	}
	deliveryNoRoom struct{ d transport.Delivery }
)

// roomy is a delivery with room for its body.
type roomy interface {
	parts() (*transport.Delivery, []byte)
}

func (x *deliveryRoom64) parts() (*transport.Delivery, []byte)  { return &x.d, x.room[:] }
func (x *deliveryRoom104) parts() (*transport.Delivery, []byte) { return &x.d, x.room[:] }
func (x *deliveryRoom128) parts() (*transport.Delivery, []byte) { return &x.d, x.room[:] }
func (x *deliveryRoom256) parts() (*transport.Delivery, []byte) { return &x.d, x.room[:] }
func (x *deliveryRoom512) parts() (*transport.Delivery, []byte) { return &x.d, x.room[:] }
func (x *deliveryNoRoom) parts() (*transport.Delivery, []byte)  { return &x.d, nil }

// newRoomy allocates a delivery with room for its body.
func newRoomy[D any, PD interface {
	*D
	roomy
}]() (*transport.Delivery, []byte) {
	return PD(new(D)).parts()
}

var epoch = time.Now()

// monotime returns monotonic nanoseconds since the package loaded. It is
// never 0, which stands for "no deadline".
func monotime() int64 { return int64(time.Since(epoch)) + 1 }

// deadline returns the monotime d from now, saturating rather than
// overflowing for TTLs of centuries.
func deadline(d time.Duration) int64 {
	now := monotime()
	if int64(d) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(d)
}

type queue struct {
	b          *broker
	name       string
	durable    bool
	exclusive  bool
	autoDelete bool
	owner      *conn // the declaring connection of an exclusive queue
	args       map[string]any
	queueArgs

	ready             readyList
	lastSeq           uint64
	consumers         []*consumer
	rr                int // where the round-robin over consumers resumes
	exclusiveConsumer bool
	deleted           bool
	dirty             bool   // in b.dirty
	seen              uint64 // the last route pass that reached this queue

	ttlTimer  *time.Timer // expires messages; armed for ttlAt
	ttlAt     int64
	idleTimer *time.Timer // x-expires
	lastUsed  int64
}

func (b *broker) declareQueue(c *conn, d transport.Queue) (transport.QueueInfo, error) {
	if d.Passive {
		q, err := b.queueFor(c, d.Name)
		if err != nil {
			return transport.QueueInfo{}, err
		}
		q.touch()
		return q.info(), nil
	}
	name := d.Name
	if name == "" {
		name = freshQueueName()
	} else if strings.HasPrefix(name, "amq.") {
		// RabbitMQ refuses this even for a server-named queue that exists:
		// redeclare those passively.
		return transport.QueueInfo{}, fmt.Errorf("memory: queue %q: the name prefix \"amq.\" is reserved for the broker: %w", name, transport.ErrAccessRefused)
	}
	qa, err := parseQueueArgs(name, d.Arguments)
	if err != nil {
		return transport.QueueInfo{}, err
	}
	if q := b.queues[name]; q != nil {
		if q.lockedTo(c) {
			return transport.QueueInfo{}, lockedError(name)
		}
		if err := q.equivalent(d); err != nil {
			return transport.QueueInfo{}, err
		}
		q.touch()
		return q.info(), nil
	}
	q := &queue{
		b: b, name: name, durable: d.Durable, exclusive: d.Exclusive, autoDelete: d.AutoDelete,
		args: maps.Clone(d.Arguments), queueArgs: qa, ready: newReadyList(qa.maxPriority),
	}
	if d.Exclusive {
		q.owner = c
		c.exclusive[q] = struct{}{}
	}
	if qa.hasExpires {
		q.lastUsed = monotime()
		q.idleTimer = time.AfterFunc(qa.expires, q.expireIfUnused)
	}
	b.queues[name] = q
	return q.info(), nil
}

// freshQueueName names a queue as RabbitMQ names server-named queues.
func freshQueueName() string {
	var id [16]byte
	rand.Read(id[:]) // never fails: the runtime aborts instead
	return "amq.gen-" + base64.RawURLEncoding.EncodeToString(id[:])
}

// queueFor returns the named queue if it exists and c may use it.
func (b *broker) queueFor(c *conn, name string) (*queue, error) {
	q := b.queues[name]
	if q == nil {
		return nil, fmt.Errorf("memory: queue %q: %w", name, transport.ErrNotFound)
	}
	if q.lockedTo(c) {
		return nil, lockedError(name)
	}
	return q, nil
}

func (q *queue) lockedTo(c *conn) bool { return q.owner != nil && q.owner != c }

func lockedError(name string) error {
	return fmt.Errorf("memory: queue %q is exclusive to another connection: %w", name, transport.ErrResourceLocked)
}

// equivalent checks a redeclaration against q, as RabbitMQ does before
// answering PRECONDITION_FAILED.
func (q *queue) equivalent(d transport.Queue) error {
	mismatch := func(what string, have, want bool) error {
		return fmt.Errorf("memory: queue %q: %s is %v, declared as %v: %w", q.name, what, have, want, transport.ErrPrecondition)
	}
	switch {
	case q.durable != d.Durable:
		return mismatch("durable", q.durable, d.Durable)
	case q.exclusive != d.Exclusive:
		return mismatch("exclusive", q.exclusive, d.Exclusive)
	case q.autoDelete != d.AutoDelete:
		return mismatch("auto-delete", q.autoDelete, d.AutoDelete)
	}
	if diff := diffArgs(q.args, d.Arguments); diff != "" {
		return fmt.Errorf("memory: queue %q: %s: %w", q.name, diff, transport.ErrPrecondition)
	}
	return nil
}

func (q *queue) info() transport.QueueInfo {
	return transport.QueueInfo{Name: q.name, Messages: q.ready.count, Consumers: len(q.consumers)}
}

// touch records a use that postpones x-expires.
func (q *queue) touch() {
	if q.hasExpires {
		q.lastUsed = monotime()
	}
}

// publish adds a newly routed message.
func (q *queue) publish(m *message) { q.enqueue(&entry{msg: m}) }

// enqueue adds the entry of a newly routed message. As on RabbitMQ, a
// message that finds the queue empty and a consumer able to take it skips
// the queue: it is not counted against x-max-length and cannot expire on
// the way.
func (q *queue) enqueue(e *entry) {
	m := e.msg
	q.lastSeq++
	e.seq = q.lastSeq
	if q.maxPriority > 0 {
		e.priority = min(m.props.Priority, q.maxPriority)
	}
	if ttl, ok := q.ttlOf(m); ok {
		e.expires = deadline(ttl)
	}
	if q.ready.count == 0 {
		if c := q.pickConsumer(); c != nil {
			c.sub.push(c, e)
			return
		}
	}
	q.ready.push(e)
	for (q.hasMaxLen && q.ready.count > q.maxLen) || (q.hasMaxBytes && q.ready.bytes > q.maxBytes) {
		q.b.deadLetterLater(q, q.ready.pop(), reasonMaxLen) // overflow drop-head
	}
	q.armTTL(e.expires)
	q.b.markDirty(q)
}

// ttlOf returns how long m may stay in q: the lower of x-message-ttl and the
// message's own expiration.
func (q *queue) ttlOf(m *message) (time.Duration, bool) {
	ttl, ok := q.ttl, q.hasTTL
	if exp := m.props.Expiration; exp > 0 && (!ok || exp < ttl) {
		ttl, ok = exp, true
	}
	return ttl, ok
}

// take removes the next ready message, dead-lettering the expired ones it
// finds at the head on the way.
func (q *queue) take() *entry {
	var now int64
	for {
		e := q.ready.pop()
		if e == nil {
			return nil
		}
		if e.expires != 0 {
			if now == 0 {
				now = monotime()
			}
			if e.expires <= now {
				q.b.deadLetterLater(q, e, reasonExpired)
				continue
			}
		}
		if q.ttlAt == 0 && q.ready.expiring > 0 {
			// The new head may expire and needs the timer to do so.
			if h := q.ready.peek(); h != nil {
				q.armTTL(h.expires)
			}
		}
		return e
	}
}

// requeue returns a message that was taken, at its original position.
func (q *queue) requeue(e *entry) {
	if q.deleted {
		return
	}
	q.ready.insert(e)
	q.armTTL(e.expires)
	q.b.markDirty(q)
}

// dispatch hands ready messages to consumers that can take them.
func (q *queue) dispatch() {
	for q.ready.count > 0 {
		c := q.pickConsumer()
		if c == nil {
			return
		}
		e := q.take()
		if e == nil {
			return
		}
		c.sub.push(c, e)
	}
}

// pickConsumer returns the next consumer in round-robin order that can take
// a message, skipping those at their prefetch limit or still busy.
func (q *queue) pickConsumer() *consumer {
	n := len(q.consumers)
	for i := range n {
		k := (q.rr + i) % n
		if c := q.consumers[k]; c.sub.canTake() {
			q.rr = (k + 1) % n
			return c
		}
	}
	return nil
}

func (q *queue) addConsumer(c *consumer) {
	q.consumers = append(q.consumers, c)
	q.exclusiveConsumer = q.exclusiveConsumer || c.exclusive
	q.b.markDirty(q)
}

func (q *queue) removeConsumer(c *consumer) {
	i := slices.Index(q.consumers, c)
	if i < 0 {
		return
	}
	q.consumers = slices.Delete(q.consumers, i, i+1)
	if i < q.rr {
		q.rr--
	}
	if c.exclusive {
		q.exclusiveConsumer = false
	}
	switch {
	case len(q.consumers) > 0:
	case q.autoDelete:
		q.b.deleteQueue(q)
	case q.hasExpires:
		q.touch()
		q.idleTimer.Reset(q.expires)
	}
}

// armTTL makes sure the expiry timer fires by deadline at.
func (q *queue) armTTL(at int64) {
	if at == 0 || (q.ttlAt != 0 && q.ttlAt <= at) {
		return
	}
	q.ttlAt = at
	d := time.Duration(at - monotime())
	if q.ttlTimer == nil {
		q.ttlTimer = time.AfterFunc(d, q.expireMessages)
	} else {
		q.ttlTimer.Reset(d)
	}
}

// expireMessages runs on the expiry timer: RabbitMQ expires messages once
// they reach the head of the queue even when nobody consumes.
func (q *queue) expireMessages() {
	b := q.b
	b.mu.Lock()
	defer b.unlock()
	q.ttlAt = 0
	if q.deleted {
		return
	}
	next := q.ready.dropExpired(monotime(), func(e *entry) { b.deadLetterLater(q, e, reasonExpired) })
	q.armTTL(next)
}

// expireIfUnused runs on the x-expires timer and deletes the queue if it
// has had no consumer, Get or redeclaration for that long.
func (q *queue) expireIfUnused() {
	b := q.b
	b.mu.Lock()
	defer b.unlock()
	if q.deleted || len(q.consumers) > 0 {
		return
	}
	if left := q.expires - time.Duration(monotime()-q.lastUsed); left > 0 {
		q.idleTimer.Reset(left)
		return
	}
	b.deleteQueue(q)
}

// deleteQueue removes q with its ready messages and bindings, and cancels
// its consumers as RabbitMQ does with basic.cancel. Its unsettled messages
// can still be acked; requeued or rejected, they are dropped.
func (b *broker) deleteQueue(q *queue) {
	q.deleted = true
	delete(b.queues, q.name)
	if q.owner != nil {
		delete(q.owner.exclusive, q)
	}
	if q.ttlTimer != nil {
		q.ttlTimer.Stop()
	}
	if q.idleTimer != nil {
		q.idleTimer.Stop()
	}
	q.ready.clear()
	consumers := q.consumers
	q.consumers = nil
	if len(consumers) > 0 {
		err := fmt.Errorf("memory: queue %q was deleted: %w", q.name, transport.ErrNotFound)
		for _, c := range consumers {
			c.sub.end(err)
		}
	}
	b.dropBindingsTo(func(bd *binding) bool { return bd.queue == q })
}
