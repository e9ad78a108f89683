// Package transporttest checks that a transport driver keeps the contract of
// package transport, in the manner of testing/fstest.TestFS and
// golang.org/x/net/nettest.TestConn. A driver's tests call Run with a
// function that opens a fresh connection to a real broker:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transport.Conn {
//			u, _ := transport.Parse("memory:///conformance")
//			c, err := memory.Driver{}.Open(context.Background(), u, transport.Config{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return c
//		})
//	}
//
// Run runs the whole contract as subtests: declaring (named, server-named,
// passive and exclusive queues; exchanges), binding, publishing, Get,
// consuming, acknowledging, rejecting and requeueing, redelivery flags,
// prefetch bounds, closing with unsettled messages, purging, deleting,
// concurrent use and PublishBatch where the driver has it. The sections for
// optional features (topic, fanout and headers exchanges,
// exchange-to-exchange bindings, priority, TTL, dead-lettering, max length,
// confirms, mandatory publishing, queue types, direct reply-to, delayed
// delivery, a prefetch changed while consuming) run where Features claims
// them; for each feature it does not claim, the suite checks
// that the driver refuses it with transport.ErrNotSupported rather than
// ignoring it. The BadInput section holds what every driver must survive: a
// publish to a deleted exchange or queue, settling twice or after Close, a
// consumer whose queue is deleted under it, an empty body, nested and
// unsupported header values.
//
// Every check declares its entities under names of its own, so that runs
// against a shared broker, several at once, never meet, and deletes them
// when it ends (through a connection of its own, after closing the others).
// The connections it opens are closed when the check ends.
//
// The package also exports the few helpers every driver's own tests need
// (DeclareQueue, Publish, Eventually, ...). It imports only the standard
// library and package transport, so that any driver, in this module or a
// nested one, can use it.
package transporttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// DefaultTimeout bounds every step that waits for the broker: a call, a
// delivery, a message expiring or coming back. A step that takes this long
// has failed; no check waits this long when the driver is right.
const DefaultTimeout = 10 * time.Second

// quietPeriod is how long a check waits to conclude that nothing more
// arrives (prefetch bounds, refused routes). A slow machine can only make
// such a check pass wrongly, never fail wrongly.
const quietPeriod = 250 * time.Millisecond

// Option adjusts Run for a broker.
type Option func(*options)

type options struct {
	timeout             time.Duration
	lowestPriorityFirst bool
	unordered           bool
	features            transport.Features
}

// WithTimeout replaces DefaultTimeout. A driver whose broker returns the
// unsettled messages of a closed connection only after a visibility timeout
// (rather than at Close) sets it above that timeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithLowestPriorityFirst says that the driver serves lower priority numbers
// first, as Kombu's virtual transports do on Redis, rather than higher ones
// first as AMQP does. It matters only with FeaturePriority.
func WithLowestPriorityFirst() Option {
	return func(o *options) { o.lowestPriorityFirst = true }
}

// WithUnordered says that the broker does not keep a queue's order, as
// Google Pub/Sub without ordering keys does not: the checks of order then
// check that every message arrived once, in any order.
func WithUnordered() Option {
	return func(o *options) { o.unordered = true }
}

// WithFeatures names features the driver is known to support: Run fails if
// Features does not claim each of them, so that a claim dropped by mistake
// cannot turn its section into a skip.
func WithFeatures(f transport.Features) Option {
	return func(o *options) { o.features |= f }
}

// Run checks the connections open returns against the whole driver
// contract. open is called with the running subtest and must return a new,
// open connection to the same broker every time (several are open at once);
// it fails the test itself when it cannot. Run closes every connection it
// gets.
func Run(t *testing.T, open func(t *testing.T) transport.Conn, opts ...Option) {
	t.Helper()
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	s := &suite{open: open, o: o}
	c := open(t)
	s.features = c.Features()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if missing := o.features &^ s.features; missing != 0 {
		t.Errorf("Features() = %s, which lacks %s", featureNames(s.features), featureNames(missing))
	}
	t.Logf("features: %s", featureNames(s.features))

	s.section(t, "Declare", declareChecks)
	s.section(t, "Bind", bindChecks)
	s.section(t, "Publish", publishChecks)
	s.section(t, "Get", getChecks)
	s.section(t, "Consume", consumeChecks)
	s.section(t, "Settle", settleChecks)
	s.section(t, "Close", closeChecks)
	s.section(t, "Purge", purgeChecks)
	s.section(t, "Delete", deleteChecks)
	s.section(t, "Concurrency", concurrencyChecks)
	s.section(t, "PublishBatch", batchChecks)
	s.section(t, "Features", featureChecks)
	s.section(t, "Delay", delayChecks)
	s.section(t, "NotSupported", notSupportedChecks)
	s.section(t, "BadInput", badInputChecks)
	s.section(t, "Inspect", inspectChecks)
}

// suite is one Run.
type suite struct {
	open     func(*testing.T) transport.Conn
	o        options
	features transport.Features
}

// check is one subtest of a section. need lists the features it requires;
// without them it is skipped (and the NotSupported section checks the
// refusal instead).
type check struct {
	name string
	need transport.Features
	run  func(e *env)
}

func (s *suite) section(t *testing.T, name string, checks []check) {
	t.Run(name, func(t *testing.T) {
		for _, ch := range checks {
			t.Run(ch.name, func(t *testing.T) {
				if !s.features.Has(ch.need) {
					t.Skipf("the driver does not claim %s", featureNames(ch.need&^s.features))
				}
				ch.run(s.env(t))
			})
		}
	})
}

// env is one check's view of the broker.
type env struct {
	t *testing.T
	s *suite

	mu        sync.Mutex
	queues    []string // to delete when the check ends
	exchanges []string
}

func (s *suite) env(t *testing.T) *env {
	e := &env{t: t, s: s}
	// Registered first, so it runs last: after the connections the check
	// opened are closed and have returned their unsettled messages.
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) has(f transport.Features) bool { return e.s.features.Has(f) }

// conn opens a connection that is closed when the check ends.
func (e *env) conn() transport.Conn {
	e.t.Helper()
	c := e.s.open(e.t)
	if c == nil {
		e.t.Fatal("open returned a nil connection")
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// ctx bounds one call.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e.s.o.timeout)
	e.t.Cleanup(cancel)
	return ctx
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// name returns an entity name no other check, run or process uses.
func (e *env) name(kind string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	n := unsafeName.ReplaceAllString(e.t.Name(), "_")
	if len(n) > 100 {
		n = n[len(n)-100:]
	}
	return "kombu-go-conformance." + n + "." + kind + "." + hex.EncodeToString(b[:])
}

func (e *env) forgetLater(queue, exchange string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if queue != "" {
		e.queues = append(e.queues, queue)
	}
	if exchange != "" {
		e.exchanges = append(e.exchanges, exchange)
	}
}

// cleanup deletes what the check declared, through a fresh connection.
func (e *env) cleanup() {
	e.mu.Lock()
	queues, exchanges := slices.Clone(e.queues), slices.Clone(e.exchanges)
	e.mu.Unlock()
	if len(queues)+len(exchanges) == 0 {
		return
	}
	c := e.s.open(e.t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), e.s.o.timeout)
	defer cancel()
	for _, q := range queues {
		if _, err := c.DeleteQueue(ctx, q, false, false); err != nil {
			e.t.Errorf("cleanup: delete queue %q: %v", q, err)
		}
	}
	for _, x := range exchanges {
		if err := c.DeleteExchange(ctx, x, false); err != nil {
			e.t.Errorf("cleanup: delete exchange %q: %v", x, err)
		}
	}
}

// declare declares q, named by the check when q.Name is "new", and deletes
// it when the check ends.
func (e *env) declare(c transport.Conn, q transport.Queue) string {
	e.t.Helper()
	if q.Name == "new" {
		q.Name = e.name("q")
	}
	info, err := c.DeclareQueue(e.ctx(), q)
	if err != nil {
		e.t.Fatalf("declare queue %q (arguments %v): %v", q.Name, q.Arguments, err)
	}
	if info.Name == "" {
		e.t.Fatalf("declare queue %q: the broker returned no name", q.Name)
	}
	e.forgetLater(info.Name, "")
	return info.Name
}

// queue declares a plain queue of the check's own, with args.
func (e *env) queue(c transport.Conn, args map[string]any) string {
	e.t.Helper()
	return e.declare(c, transport.Queue{Name: "new", Arguments: args})
}

// exchange declares an exchange of the given type of the check's own.
func (e *env) exchange(c transport.Conn, typ string) string {
	e.t.Helper()
	x := transport.Exchange{Name: e.name(typ), Type: typ}
	if err := c.DeclareExchange(e.ctx(), x); err != nil {
		e.t.Fatalf("declare %s exchange %q: %v", typ, x.Name, err)
	}
	e.forgetLater("", x.Name)
	return x.Name
}

func (e *env) bind(c transport.Conn, b transport.Binding) {
	e.t.Helper()
	if err := c.Bind(e.ctx(), b); err != nil {
		e.t.Fatalf("bind %q to %q with key %q: %v", b.Destination, b.Source, b.RoutingKey, err)
	}
}

// publish publishes p, confirmed where the driver has confirms.
func (e *env) publish(c transport.Conn, p *transport.Publishing) {
	e.t.Helper()
	p.Confirm = p.Confirm || e.has(transport.FeatureConfirms)
	if err := c.Publish(e.ctx(), p); err != nil {
		e.t.Fatalf("publish to exchange %q with routing key %q: %v", p.Exchange, p.RoutingKey, err)
	}
}

// send publishes each body to queue through the default exchange.
func (e *env) send(c transport.Conn, queue string, bodies ...string) {
	e.t.Helper()
	for _, b := range bodies {
		e.publish(c, &transport.Publishing{RoutingKey: queue, Body: []byte(b)})
	}
}

// get takes one message that must be there.
func (e *env) get(c transport.Conn, queue string, autoAck bool) *transport.Delivery {
	e.t.Helper()
	d, err := c.Get(e.ctx(), queue, autoAck)
	if err != nil {
		e.t.Fatalf("get from %q: %v", queue, err)
	}
	e.checkDelivery(d, queue, autoAck)
	return d
}

// checkDelivery checks what every delivery from queue must carry.
func (e *env) checkDelivery(d *transport.Delivery, queue string, autoAck bool) {
	e.t.Helper()
	switch {
	case d == nil:
		e.t.Fatalf("a nil delivery from %q", queue)
	case d.Queue != queue:
		e.t.Errorf("delivery %q: Queue = %q, want %q", d.Body, d.Queue, queue)
	case autoAck && d.Acknowledger != nil:
		e.t.Errorf("delivery %q: auto-acked, yet it has an Acknowledger", d.Body)
	case !autoAck && d.Acknowledger == nil:
		e.t.Fatalf("delivery %q: not auto-acked, yet it has no Acknowledger", d.Body)
	}
}

// empty checks that queue has no ready message.
func (e *env) empty(c transport.Conn, queue string) {
	e.t.Helper()
	d, err := c.Get(e.ctx(), queue, true)
	switch {
	case err == nil:
		e.t.Fatalf("queue %q holds %q, want it empty", queue, d.Body)
	case !errors.Is(err, transport.ErrEmpty):
		e.t.Fatalf("get from empty queue %q: %v, want ErrEmpty", queue, err)
	}
}

// drainDeliveries takes every ready message with auto-ack.
func (e *env) drainDeliveries(c transport.Conn, queue string) []*transport.Delivery {
	e.t.Helper()
	var out []*transport.Delivery
	for {
		d, err := c.Get(e.ctx(), queue, true)
		if errors.Is(err, transport.ErrEmpty) {
			return out
		}
		if err != nil {
			e.t.Fatalf("get from %q: %v", queue, err)
		}
		out = append(out, d)
	}
}

// drain takes every ready message with auto-ack and returns the bodies.
func (e *env) drain(c transport.Conn, queue string) []string {
	e.t.Helper()
	return bodiesOf(e.drainDeliveries(c, queue))
}

// collect takes n messages from queue with auto-ack, waiting for those
// routed there asynchronously (broadcasts on Redis, dead letters on
// RabbitMQ), and then checks that nothing more is there.
func (e *env) collect(c transport.Conn, queue string, n int) []*transport.Delivery {
	e.t.Helper()
	var out []*transport.Delivery
	e.eventually(fmt.Sprintf("%d messages in %q", n, queue), func() bool {
		for len(out) < n {
			d, err := c.Get(e.ctx(), queue, true)
			if errors.Is(err, transport.ErrEmpty) {
				return false
			}
			if err != nil {
				e.t.Fatalf("get from %q: %v", queue, err)
			}
			out = append(out, d)
		}
		return true
	})
	e.empty(c, queue)
	return out
}

// ready returns the queue's ready count from a passive declaration.
func (e *env) ready(c transport.Conn, queue string) int {
	e.t.Helper()
	info, err := c.DeclareQueue(e.ctx(), transport.Queue{Name: queue, Passive: true})
	if err != nil {
		e.t.Fatalf("passive declare of %q: %v", queue, err)
	}
	return info.Messages
}

func (e *env) consume(c transport.Conn, spec transport.ConsumeSpec) transport.Subscription {
	e.t.Helper()
	sub, err := c.Consume(e.ctx(), spec)
	if err != nil {
		e.t.Fatalf("consume %q: %v", spec.Queues, err)
	}
	if sub == nil {
		e.t.Fatal("Consume returned a nil subscription")
	}
	return sub
}

// recv waits for the next delivery.
func (e *env) recv(sub transport.Subscription) *transport.Delivery {
	e.t.Helper()
	select {
	case d, ok := <-sub.Deliveries():
		if !ok {
			e.t.Fatalf("deliveries closed early: %v", sub.Err())
		}
		if d == nil {
			e.t.Fatal("a nil delivery")
		}
		return d
	case <-time.After(e.s.o.timeout):
		e.t.Fatalf("no delivery within %v", e.s.o.timeout)
	}
	return nil
}

// recvBodies receives n deliveries.
func (e *env) recvBodies(sub transport.Subscription, n int) ([]string, []*transport.Delivery) {
	e.t.Helper()
	bodies := make([]string, 0, n)
	ds := make([]*transport.Delivery, 0, n)
	for range n {
		d := e.recv(sub)
		bodies = append(bodies, string(d.Body))
		ds = append(ds, d)
	}
	return bodies, ds
}

// quiet checks that nothing arrives for a while.
func (e *env) quiet(sub transport.Subscription) {
	e.t.Helper()
	select {
	case d, ok := <-sub.Deliveries():
		if ok {
			e.t.Fatalf("unexpected delivery %q", d.Body)
		}
		e.t.Fatalf("deliveries closed: %v", sub.Err())
	case <-time.After(quietPeriod):
	}
}

// ended waits for the subscription to end, returning what it still
// delivered on the way (a driver may hand over what it had buffered).
func (e *env) ended(sub transport.Subscription) []*transport.Delivery {
	e.t.Helper()
	var out []*transport.Delivery
	timeout := time.After(e.s.o.timeout)
	for {
		select {
		case d, ok := <-sub.Deliveries():
			if !ok {
				select {
				case <-sub.Done():
				case <-timeout:
					e.t.Fatal("Deliveries closed, but Done is not")
				}
				return out
			}
			out = append(out, d)
		case <-timeout:
			e.t.Fatalf("the subscription did not end within %v", e.s.o.timeout)
		}
	}
}

func (e *env) cancel(sub transport.Subscription) {
	e.t.Helper()
	if err := sub.Cancel(e.ctx()); err != nil {
		e.t.Fatalf("Cancel: %v", err)
	}
}

func (e *env) ack(d *transport.Delivery) {
	e.t.Helper()
	if err := d.Acknowledger.Ack(d.Tag, false); err != nil {
		e.t.Fatalf("ack %q: %v", d.Body, err)
	}
}

func (e *env) reject(d *transport.Delivery, requeue bool) {
	e.t.Helper()
	if err := d.Acknowledger.Reject(d.Tag, requeue); err != nil {
		e.t.Fatalf("reject %q (requeue %t): %v", d.Body, requeue, err)
	}
}

func (e *env) close(c transport.Conn) {
	e.t.Helper()
	if err := c.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
}

// eventually polls cond until it holds or the timeout passes.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	e.eventuallyEvery(10*time.Millisecond, what, cond)
}

func (e *env) eventuallyEvery(every time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(e.s.o.timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", e.s.o.timeout, what)
		}
		time.Sleep(every)
	}
}

// wantErr checks that err matches target.
func (e *env) wantErr(err, target error, what string) {
	e.t.Helper()
	if !errors.Is(err, target) {
		e.t.Fatalf("%s: err = %v, want %v", what, err, target)
	}
}

// wantEither checks that err matches one of targets.
func (e *env) wantEither(err error, what string, targets ...error) {
	e.t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	e.t.Fatalf("%s: err = %v, want one of %v", what, err, targets)
}

// wantInOrder is wantBodies where the order is the point: a broker run
// WithUnordered may deliver them in any order.
func (e *env) wantInOrder(what string, got []string, want ...string) {
	e.t.Helper()
	if e.s.o.unordered {
		got, want = slices.Clone(got), slices.Clone(want)
		slices.Sort(got)
		slices.Sort(want)
	}
	e.wantBodies(what, got, want...)
}

// wantFirst checks that got holds the first len(got) of want, or, WithUnordered,
// len(got) distinct messages of want.
func (e *env) wantFirst(what string, got []string, want ...string) {
	e.t.Helper()
	if !e.s.o.unordered {
		e.wantBodies(what, got, want[:min(len(got), len(want))]...)
		return
	}
	seen := map[string]bool{}
	for _, b := range got {
		if seen[b] || !slices.Contains(want, b) {
			e.t.Fatalf("%s: got %q, want distinct messages of %q", what, got, want)
		}
		seen[b] = true
	}
}

func (e *env) wantBodies(what string, got []string, want ...string) {
	e.t.Helper()
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		e.t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// featureNames names a set of features, for messages.
func featureNames(f transport.Features) string {
	var names []string
	for _, n := range allFeatures {
		if f.Has(n.f) {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

var allFeatures = []struct {
	f    transport.Features
	name string
}{
	{transport.FeatureDirect, "Direct"},
	{transport.FeatureTopic, "Topic"},
	{transport.FeatureFanout, "Fanout"},
	{transport.FeatureHeaders, "Headers"},
	{transport.FeatureExchangeBindings, "ExchangeBindings"},
	{transport.FeaturePriority, "Priority"},
	{transport.FeatureTTL, "TTL"},
	{transport.FeatureDeadLetter, "DeadLetter"},
	{transport.FeatureMaxLength, "MaxLength"},
	{transport.FeatureConfirms, "Confirms"},
	{transport.FeatureMandatory, "Mandatory"},
	{transport.FeatureQueueTypes, "QueueTypes"},
	{transport.FeatureDirectReplyTo, "DirectReplyTo"},
	{transport.FeatureDelay, "Delay"},
	{transport.FeatureLivePrefetch, "LivePrefetch"},
}
