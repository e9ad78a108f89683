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
}

// Conn is one connection to a broker. Its methods are safe for concurrent use.
type Conn interface {
	// Features reports what this connection supports. The runtime checks it
	// before calling a method that needs a feature and returns ErrNotSupported
	// itself, so a driver only has to be truthful here.
	Features() Features

	DeclareExchange(ctx context.Context, ex Exchange) error
	DeleteExchange(ctx context.Context, name string, ifUnused bool) error
	// DeclareQueue creates q, or checks it exists when q.Passive is set. An
	// empty q.Name asks the broker for a fresh name, returned in the info.
	DeclareQueue(ctx context.Context, q Queue) (QueueInfo, error)
	// DeleteQueue deletes the queue and returns how many messages it held.
	DeleteQueue(ctx context.Context, name string, ifUnused, ifEmpty bool) (int, error)
	// PurgeQueue removes every ready message and returns how many it removed.
	PurgeQueue(ctx context.Context, name string) (int, error)
	// Bind and Unbind route messages from b.Source to b.Destination.
	// Exchange-to-exchange bindings need FeatureExchangeBindings.
	Bind(ctx context.Context, b Binding) error
	Unbind(ctx context.Context, b Binding) error

	// Publish sends one message. With p.Confirm set it returns nil only once
	// the broker has taken responsibility for the message, ErrNacked if the
	// broker refused it and ErrUnroutable if it was mandatory and no queue
	// was bound. The driver does not keep p, or anything it points to but
	// the body, once Publish has returned: the runtime reuses it.
	Publish(ctx context.Context, p *Publishing) error

	// Get fetches one message (AMQP basic.get). It returns ErrEmpty when the
	// queue has no ready message.
	Get(ctx context.Context, queue string, autoAck bool) (*Delivery, error)

	// Consume starts delivering messages from the queues in spec. Deliveries
	// arrive on the subscription's channel until it is cancelled, the broker
	// cancels it, or the connection is lost.
	Consume(ctx context.Context, spec ConsumeSpec) (Subscription, error)

	// Done is closed when the connection is closed or lost; Err then says why
	// (nil after Close). A lost connection fails its operations with errors
	// that are ErrClosed, so that the runtime makes them again on the next
	// connection.
	Done() <-chan struct{}
	Err() error
	// Close closes the connection. Messages delivered to its consumers and
	// not yet settled go back to their queues. The runtime also closes a
	// lost connection, once a new one has replaced it: a driver that keeps
	// state past a loss (settlements it could not send yet) finishes with
	// it there.
	Close() error
}

// BatchPublisher is implemented by drivers that can pipeline several messages
// and their confirmations. Without it the runtime publishes one at a time.
type BatchPublisher interface {
	// PublishBatch sends every message and returns once all are confirmed
	// (those with Confirm set) or the first error. On error, some messages may
	// have been delivered; the error says which did not.
	PublishBatch(ctx context.Context, ps []*Publishing) error
}

// Features is a set of capabilities a connection has.
type Features uint32

const (
	FeatureDirect Features = 1 << iota
	FeatureTopic
	FeatureFanout
	FeatureHeaders
	FeatureExchangeBindings // exchange-to-exchange bindings
	FeaturePriority         // x-max-priority queues and message priority
	FeatureTTL              // x-message-ttl, per-message expiration, x-expires
	FeatureDeadLetter       // x-dead-letter-exchange on reject and expiry
	FeatureMaxLength        // x-max-length, x-max-length-bytes
	FeatureConfirms         // publisher confirms
	FeatureMandatory        // mandatory publishing with returns
	FeatureQueueTypes       // x-queue-type quorum and stream
	FeatureDirectReplyTo    // amq.rabbitmq.reply-to
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
	Mandatory  bool
	// Confirm waits for the broker's publisher confirm (where the transport
	// has them) before Publish returns.
	Confirm bool
	Body    []byte
	Headers map[string]any
	Properties
}

// Delivery is one message handed to a consumer or returned by Get.
type Delivery struct {
	Body        []byte
	Headers     map[string]any
	Properties  Properties
	Exchange    string
	RoutingKey  string
	Queue       string // the queue it was taken from
	ConsumerTag string
	Redelivered bool
	// Tag identifies the delivery to its Acknowledger. It is only meaningful
	// on the connection (and, on AMQP, the channel) that delivered it.
	Tag          uint64
	Acknowledger Acknowledger // nil when the delivery was auto-acked
}

// Acknowledger settles deliveries.
type Acknowledger interface {
	// Ack acknowledges the delivery with the given tag, and with multiple
	// every earlier unsettled delivery of the same subscription too.
	Ack(tag uint64, multiple bool) error
	// Reject refuses the delivery. With requeue it goes back to its queue;
	// without, it is dead-lettered where the queue has a dead-letter
	// exchange and dropped otherwise.
	Reject(tag uint64, requeue bool) error
}

// ErrorHeader is the header in which a failed message carries the text of
// the error that failed it: on the copy the runtime republishes for another
// attempt (kombu.WithRetry), and on the dead-lettered copy where the
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
	Queues    []string
	Tag       string // consumer tag prefix; the driver makes it unique per queue
	AutoAck   bool   // the broker considers a message settled once sent
	Prefetch  int    // unsettled deliveries allowed at once; 0: unlimited
	Exclusive bool
	Arguments map[string]any
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
	// Err is nil while the subscription runs and after Cancel; otherwise it
	// says why the broker or connection ended it (queue deleted, connection
	// lost).
	Err() error
	// Cancel stops deliveries. Messages already delivered stay unsettled
	// until acked or rejected, or until the connection closes.
	Cancel(ctx context.Context) error
}
