// Package transport defines what a broker driver implements for kombu-go, and
// the registry that maps URL schemes to drivers.
//
// It follows the database/sql/driver pattern: a driver package (for example
// github.com/kombu-go/kombu/transports/amqp) imports this package and its
// broker's client library, and registers itself from init:
//
//	func init() { transport.Register("amqp", driver{}) }
//
// Application code never calls a driver directly; it imports the driver for
// its side effect and dials through package kombu:
//
//	import _ "github.com/kombu-go/kombu/transports/amqp"
//	conn, err := kombu.Dial(ctx, "amqp://guest:guest@localhost//")
//
// Drivers see encoded bytes and AMQP-style properties only. Serialization,
// compression, accept lists, handler dispatch and retry policies live in the
// runtime, once, for every transport. A driver must not import package kombu
// or another driver.
//
// Entities are described with AMQP 0-9-1 vocabulary because that is the model
// Kombu presents on every broker. Queue options that RabbitMQ takes as x-
// arguments (message TTL, max length, dead-lettering, ...) reach the driver as
// those same arguments in Queue.Arguments; a driver either honours them or
// reports ErrNotSupported. It never ignores them silently.
//
// Kombu builds every broker but AMQP as a virtual transport: exchanges live
// in the memory of the connections that declare them, with the bindings in
// the broker, and a queue exists as the messages stored under its name.
// Where that leaves such a transport unable to tell what an AMQP broker
// knows (whether an exchange or an empty queue exists, who consumes a
// queue), the contract below says what it does instead. Every driver is
// checked against this contract by package transporttest.
package transport

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"
)

// Driver opens connections for the schemes it was registered under.
type Driver interface {
	// Open connects to the broker described by u. It returns once the
	// connection is usable or ctx ends.
	Open(ctx context.Context, u *URL, cfg Config) (Conn, error)
}

// Config holds what the runtime passes to every driver besides the URL.
type Config struct {
	Logger         *slog.Logger  // never nil
	Heartbeat      time.Duration // 0: the driver's default
	ConnectTimeout time.Duration // 0: bounded by ctx only
	TLS            *tls.Config   // nil: the driver derives one from the URL when the scheme needs TLS
	ConnectionName string        // shown in the broker's management UI where it has one
	// Unroutable is called for a message published with NotifyUnroutable
	// that reached no queue, with the broker's reason. It must return
	// quickly and must not call the connection. It may be nil (the runtime
	// always sets it).
	Unroutable func(exchange, routingKey, reason string)
}

// Conn is one connection to a broker. Its methods are safe for concurrent use.
type Conn interface {
	// Features reports what this connection supports. The runtime checks it
	// before calling a method that needs a feature and returns ErrNotSupported
	// itself. The driver refuses, with an error wrapping ErrNotSupported,
	// every use of a feature it does not claim that reaches it anyway (an
	// exchange type, an x- argument, a Publishing field, consuming
	// amq.rabbitmq.reply-to): it never ignores one.
	Features() Features

	// DeclareExchange creates ex, or with ex.Passive checks that it exists
	// (ErrNotFound if not). Declaring an existing exchange again with
	// another type fails with ErrPrecondition, as do other flags or
	// arguments where the broker keeps them. A virtual transport knows, on a
	// passive declaration, the exchanges this connection declared and those
	// with bindings.
	DeclareExchange(ctx context.Context, ex Exchange) error
	// DeleteExchange deletes an exchange with its bindings. Deleting one that
	// does not exist succeeds. With ifUnused, an exchange that has bindings
	// is kept and the error wraps ErrInUse.
	DeleteExchange(ctx context.Context, name string, ifUnused bool) error
	// DeclareQueue creates q, or checks it exists when q.Passive is set
	// (ErrNotFound if not; a virtual transport knows the queues this
	// connection declared and those holding messages). An empty q.Name asks
	// the broker for a fresh name, returned in the info. The info counts
	// ready messages, not unsettled ones.
	DeclareQueue(ctx context.Context, q Queue) (QueueInfo, error)
	// DeleteQueue deletes the queue and returns how many ready messages it
	// held; deleting a queue that does not exist returns 0 and nil. With
	// ifEmpty and ready messages, or ifUnused and consumers, the queue is
	// kept and the error wraps ErrInUse; a driver whose broker does not know
	// a queue's consumers refuses ifUnused with ErrNotSupported.
	//
	// Subscriptions consuming the queue end, their Err wrapping ErrNotFound:
	// every one where the broker knows its consumers, at least those of
	// this connection where it does not (virtual transports, whose other
	// consumers keep waiting on the name). Their delivered messages can
	// still be settled.
	DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error)
	// PurgeQueue removes every ready message and returns how many it removed.
	// Unsettled messages stay unsettled, and come back if requeued.
	PurgeQueue(ctx context.Context, name string) (int, error)
	// Bind and Unbind route messages from b.Source to b.Destination.
	// Exchange-to-exchange bindings need FeatureExchangeBindings. Binding
	// twice makes one binding; unbinding what is not bound succeeds.
	Bind(ctx context.Context, b Binding) error
	Unbind(ctx context.Context, b Binding) error

	// Publish sends one message. With p.Confirm set it returns nil only once
	// the broker has taken responsibility for the message (a Get then finds
	// it), ErrNacked if the broker refused it and ErrUnroutable if it was
	// mandatory and no queue was bound. Confirm on a connection without
	// FeatureConfirms, and Mandatory without FeatureMandatory, fail with
	// ErrNotSupported. The driver does not keep p, or anything it points to
	// (nested header tables and lists included), once Publish has returned:
	// the runtime reuses it. The body is the exception where p.BodyOwned
	// says so: a driver that keeps messages in memory may then keep it as
	// it is.
	//
	// A publish to an exchange that does not exist fails with ErrNotFound
	// (reported only with Confirm where the broker closes the channel
	// asynchronously). A virtual transport cannot tell a deleted exchange
	// from one without bindings: there the message is unroutable. Through
	// the default exchange "" the routing key names the queue, and a message
	// for a queue that does not exist is unroutable too, except on a virtual
	// transport, which keeps it for the queue of that name. An unroutable
	// message is dropped, as AMQP drops it, unless it is mandatory.
	//
	// Header values are nil, bool, string, []byte, Go integers (within
	// int64), floats, time.Time, and []any and map[string]any of these,
	// nested to any depth. Any other type fails with an error wrapping
	// ErrNotSupported, and nothing is published. Values arrive equal, in
	// the types the transport's encoding gives: an integer as some Go
	// integer type, a time.Time to the second, as a time.Time or, where the
	// envelope is Kombu's JSON, as ISO 8601 text.
	Publish(ctx context.Context, p *Publishing) error

	// Get fetches one message (AMQP basic.get). It returns ErrEmpty when the
	// queue has no ready message, and ErrNotFound when it does not exist (a
	// virtual transport, which cannot tell, returns ErrEmpty). The delivery
	// has no ConsumerTag.
	Get(ctx context.Context, queue string, autoAck bool) (*Delivery, error)

	// Consume starts delivering messages from the queues in spec. Deliveries
	// arrive on the subscription's channel until it is cancelled, the broker
	// cancels it (its queue was deleted), or the connection is lost.
	Consume(ctx context.Context, spec ConsumeSpec) (Subscription, error)

	// Done is closed when the connection is closed or lost; Err then says why
	// (nil after Close). A lost connection fails its operations with errors
	// that are ErrClosed, so that the runtime makes them again on the next
	// connection.
	Done() <-chan struct{}
	Err() error
	// Close closes the connection and ends its subscriptions, whose Err then
	// wraps ErrClosed. Messages delivered on it, to consumers or by Get, and
	// not yet settled go back to their queues marked redelivered: by the
	// time Close returns, or, on a broker that restores them after a
	// visibility timeout, then. Every later call fails with ErrClosed,
	// settling included; Close again returns nil. The runtime also closes a
	// lost connection, once a new one has replaced it: a driver that keeps
	// state past a loss (settlements it could not send yet) finishes with
	// it there.
	Close() error
}

// BatchPublisher is implemented by drivers that can pipeline several messages
// and their confirmations. Without it the runtime publishes one at a time.
type BatchPublisher interface {
	// PublishBatch sends every message, in order, and returns once all are
	// confirmed (those with Confirm set) or with an error. An unroutable
	// mandatory message fails alone: the others are delivered. An empty
	// batch does nothing.
	//
	// When some messages failed and others were delivered, the error is (or
	// wraps) a *BatchError saying which failed. Any other error fails the
	// batch as a whole: the caller takes none of its messages as
	// delivered (some may have been, and are then sent twice if it sends
	// them again: at least once, never lost).
	PublishBatch(ctx context.Context, ps []*Publishing) error
}

// Features is a set of capabilities a connection has.
type Features uint32

const (
	FeatureDirect Features = 1 << iota
	// FeatureTopic: topic exchanges. Kombu's Redis transport matches as
	// Kombu does, where "*" matches one or more words and "a.#" does not
	// match "a".
	FeatureTopic
	// FeatureFanout: fanout exchanges, which copy a message to every bound
	// queue. On Kombu's Redis transport (with fanout_patterns, Kombu's
	// default) a non-empty routing key is matched against the binding keys
	// as a pattern: publish with the key the queues were bound with.
	FeatureFanout
	FeatureHeaders
	FeatureExchangeBindings // exchange-to-exchange bindings
	// FeaturePriority: x-max-priority queues and message priority. A queue
	// hands out ready messages by priority: highest first on AMQP, lowest
	// first on Kombu's virtual transports (Redis), as Kombu does.
	FeaturePriority
	FeatureTTL        // x-message-ttl, per-message expiration, x-expires
	FeatureDeadLetter // x-dead-letter-exchange on reject (and on expiry and overflow, with TTL and max length), with x-death
	FeatureMaxLength  // x-max-length, x-max-length-bytes, dropping the oldest
	FeatureConfirms   // publisher confirms: Publishing.Confirm
	FeatureMandatory  // mandatory publishing with returns: Publishing.Mandatory and NotifyUnroutable
	FeatureQueueTypes // x-queue-type quorum and stream
	// FeatureDirectReplyTo: consuming amq.rabbitmq.reply-to (with auto-ack),
	// and publishing requests whose ReplyTo names it on the same connection.
	FeatureDirectReplyTo
	// FeatureDelay: delayed delivery, Publishing.Delay (see its doc and
	// delay.go).
	FeatureDelay
	// FeatureLivePrefetch: the subscriptions Consume returns implement
	// PrefetchSetter, so that the runtime can fit a consumer's prefetch to
	// how fast its handlers turn out to be.
	FeatureLivePrefetch
)

// Has reports whether every feature in want is in f.
func (f Features) Has(want Features) bool { return f&want == want }

// Exchange types, as AMQP names them.
const (
	ExchangeDirect  = "direct"
	ExchangeTopic   = "topic"
	ExchangeFanout  = "fanout"
	ExchangeHeaders = "headers"
)

// Exchange describes an exchange to declare.
type Exchange struct {
	Name       string
	Type       string // one of the Exchange* constants
	Durable    bool
	AutoDelete bool
	Internal   bool
	Passive    bool // only check that it exists
	Arguments  map[string]any
}

// Queue describes a queue to declare. RabbitMQ's queue options travel as its
// x- arguments in Arguments, with durations in integer milliseconds.
type Queue struct {
	Name       string // empty: the broker names it
	Durable    bool
	Exclusive  bool // owned by this connection, deleted when it closes
	AutoDelete bool // deleted when its last consumer goes away
	Passive    bool // only check that it exists
	Arguments  map[string]any
}

// QueueInfo is what a queue declaration reports.
type QueueInfo struct {
	Name      string
	Messages  int // ready messages
	Consumers int
}

// Binding routes messages from the Source exchange to Destination, which is a
// queue unless DestinationIsExchange is set.
type Binding struct {
	Source                string
	Destination           string
	DestinationIsExchange bool
	RoutingKey            string
	Arguments             map[string]any // headers exchanges match on these (x-match)
}

// Delivery modes.
const (
	Transient  uint8 = 1
	Persistent uint8 = 2
)

// Properties are a message's AMQP basic properties. Every transport carries
// them; Redis and the memory broker store them as Kombu's envelope does.
type Properties struct {
	ContentType     string
	ContentEncoding string
	DeliveryMode    uint8 // Transient or Persistent; 0 is sent as Persistent
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      time.Duration // 0: never; sent as integer milliseconds
	MessageID       string
	Timestamp       time.Time
	Type            string
	UserID          string
	AppID           string
}

// Publishing is one message to publish.
type Publishing struct {
	Exchange   string
	RoutingKey string
	// Mandatory makes Publish fail with ErrUnroutable when the message
	// reaches no queue.
	Mandatory bool
	// NotifyUnroutable, on a message that is not Mandatory, asks the driver
	// to call Config.Unroutable if the message reaches no queue. Unlike
	// Mandatory it never makes Publish wait or fail: a driver that routes
	// the message itself calls it at once, the AMQP driver when the broker
	// returns the message.
	NotifyUnroutable bool
	// Confirm waits for the broker's publisher confirm (where the transport
	// has them) before Publish returns.
	Confirm bool
	// Delay, when positive, holds the message back: no consumer sees it
	// before Delay has passed, and it reaches its queues within a second
	// after. It is at most MaxDelay. A driver without FeatureDelay refuses
	// a positive Delay with ErrNotSupported.
	Delay time.Duration
	Body  []byte
	// BodyOwned says that Body was made for this publish alone (the runtime
	// serialized or compressed it into a new slice) and nobody writes to it
	// afterwards, so a driver that keeps the body (the in-process broker)
	// may keep it rather than copy it. Without it Body may be the caller's
	// own slice, which the caller may reuse once Publish returns.
	BodyOwned bool
	Headers   map[string]any
	Properties
}

// Delivery is one message handed to a consumer or returned by Get. It
// belongs to its receiver: the driver keeps nothing it points to, so
// changing it changes nothing the broker holds.
type Delivery struct {
	Body        []byte
	Headers     map[string]any
	Properties  Properties
	Exchange    string
	RoutingKey  string
	Queue       string // the queue it was taken from
	ConsumerTag string
	// Redelivered is set when the message was delivered before and not
	// settled: requeued, or returned by a closed connection.
	Redelivered bool
	// Tag identifies the delivery to its Acknowledger. It is only meaningful
	// on the connection (and, on AMQP, the channel) that delivered it.
	Tag          uint64
	Acknowledger Acknowledger // nil when the delivery was auto-acked
}

// Acknowledger settles deliveries. Settling a delivery that is settled
// already, or a tag it never delivered, fails with ErrPrecondition and
// changes nothing (an AMQP broker would close the channel, taking every
// other unsettled delivery with it: the driver refuses first). Settling
// after the connection closed fails with ErrClosed: the message went back
// to its queue. After Cancel, or after the broker ended the subscription,
// delivered messages still settle.
type Acknowledger interface {
	// Ack acknowledges the delivery with the given tag, and with multiple
	// every earlier unsettled delivery of the same subscription too (every
	// one, with tag 0).
	Ack(tag uint64, multiple bool) error
	// Reject refuses the delivery. With requeue it goes back to its queue;
	// without, it is dead-lettered where the queue has a dead-letter
	// exchange and dropped otherwise.
	Reject(tag uint64, requeue bool) error
}

// ErrorHeader is the header in which a failed message carries the text of
// the error that failed it: on the copy the runtime republishes for another
// attempt (kombu.WithMessageRetry), and on the dead-lettered copy where the
// transport writes that copy itself (see ReasonRejecter). A broker that
// dead-letters on its own (RabbitMQ) adds x-death, which says "rejected"
// and nothing of why.
const ErrorHeader = "kombu_error"

// ReasonRejecter is implemented by an Acknowledger whose transport writes
// dead-lettered copies itself instead of a broker (the memory broker,
// Redis's emulated dead-letter exchanges). RejectWithReason is
// Reject(tag, false), except that the dead-lettered copy, if the queue has
// a dead-letter exchange, carries reason in ErrorHeader. The runtime calls
// it only for a failed message, so success costs nothing.
type ReasonRejecter interface {
	RejectWithReason(tag uint64, reason string) error
}

// ConsumeSpec says what to consume.
type ConsumeSpec struct {
	Queues  []string
	Tag     string // consumer tag prefix; the driver makes it unique per queue
	AutoAck bool   // the broker considers a message settled once sent
	// Prefetch is how many unsettled deliveries each queue of the
	// subscription may have at once (a driver may bound the whole
	// subscription instead); 0: unlimited. It does not bound AutoAck.
	Prefetch  int
	Exclusive bool
	Arguments map[string]any
}

// PrefetchSetter is implemented by the subscriptions of a driver that
// claims FeatureLivePrefetch.
type PrefetchSetter interface {
	// SetPrefetch changes the subscription's prefetch (as ConsumeSpec's)
	// while it runs. A higher one lets the broker send more at once from
	// then on; a lower one takes nothing back: the broker sends no more
	// until the unsettled deliveries are fewer than it. Deliveries made
	// before the change settle as before, and the order in which a queue's
	// messages arrive is kept. Where the broker counts a prefetch per
	// consumer (RabbitMQ, whose basic.qos applies only to consumers started
	// after it, so the driver replaces its consumers), the deliveries made
	// before the change count against the old prefetch until settled, and
	// for a while up to those plus n may be unsettled. It does not bound
	// auto-acked subscriptions. After the subscription ended it does
	// nothing and returns nil.
	SetPrefetch(ctx context.Context, n int) error
}

// Subscription is a running consumer.
type Subscription interface {
	// Deliveries returns the channel messages arrive on. It is closed when the
	// subscription ends; Err then says why.
	Deliveries() <-chan *Delivery
	// Done is closed when the subscription ends, with Deliveries: a caller
	// whose readers are all busy handling deliveries learns of the end
	// without taking from Deliveries.
	Done() <-chan struct{}
	// Err is nil while the subscription runs and after a Cancel that ended
	// it; otherwise it says why the broker or connection ended it: queue
	// deleted (wrapping ErrNotFound), connection closed or lost (wrapping
	// ErrClosed). A Cancel after that keeps the error.
	Err() error
	// Cancel stops deliveries. Deliveries already on their way may still
	// arrive before Deliveries is closed; messages the driver took but did
	// not hand over go back to their queues, unmarked. Messages delivered
	// stay unsettled until acked or rejected, or until the connection
	// closes. Cancelling again returns nil.
	Cancel(ctx context.Context) error
}
