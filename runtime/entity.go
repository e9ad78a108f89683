package kombu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// ExchangeType is how an exchange routes messages to queues.
type ExchangeType string

const (
	// ExchangeDirect routes to queues whose binding key equals the routing key.
	ExchangeDirect ExchangeType = transport.ExchangeDirect
	// ExchangeTopic routes on dot-separated words: "*" in a binding key
	// matches one word, "#" zero or more.
	ExchangeTopic ExchangeType = transport.ExchangeTopic
	// ExchangeFanout routes to every bound queue.
	ExchangeFanout ExchangeType = transport.ExchangeFanout
	// ExchangeHeaders routes on message headers matched against binding
	// arguments, with "x-match" "all" (the default) or "any".
	ExchangeHeaders ExchangeType = transport.ExchangeHeaders
)

// DeliveryMode says whether the broker keeps a message on disk.
type DeliveryMode uint8

const (
	// Transient messages are kept in memory only.
	Transient DeliveryMode = DeliveryMode(transport.Transient)
	// Persistent messages survive a broker restart in a durable queue. It is
	// the default, as in Kombu.
	Persistent DeliveryMode = DeliveryMode(transport.Persistent)
)

// QueueType is RabbitMQ's queue type. The zero value is a classic queue.
type QueueType string

const (
	QueueClassic QueueType = "classic"
	QueueQuorum  QueueType = "quorum"
	QueueStream  QueueType = "stream"
)

// Exchange is where producers publish. Its zero value (apart from the name)
// is Kombu's default: a durable direct exchange.
//
// The default exchange ("") and exchanges whose names start with "amq." are
// never declared: the broker owns them.
type Exchange struct {
	Name string
	Type ExchangeType // "" means direct
	// Transient makes the exchange non-durable: it does not survive a broker
	// restart. Kombu's default, and ours, is durable.
	Transient  bool
	AutoDelete bool // deleted when its last binding goes
	Internal   bool // only other exchanges may publish to it
	// DeliveryMode is the default for messages published to the exchange
	// through a Producer; 0 means persistent.
	DeliveryMode DeliveryMode
	Arguments    map[string]any
	// Bindings bind this exchange, as destination, to source exchanges
	// (exchange-to-exchange bindings, AMQP only).
	Bindings []Binding
	// NoDeclare marks an exchange that someone else declares: producers and
	// consumers never declare it.
	NoDeclare bool
}

// Binding binds a queue (or, in Exchange.Bindings, an exchange) to the named
// source exchange.
type Binding struct {
	Exchange   string
	RoutingKey string
	// Arguments are the binding's arguments. A headers exchange matches
	// message headers against them, with "x-match" set to "all" or "any".
	Arguments map[string]any
}

// Queue is where consumers read. Its zero value (apart from the name) is
// Kombu's default: a durable classic queue.
type Queue struct {
	// Name is the queue's name. Empty asks the broker for a unique name; such
	// a queue is declared by its consumer and is exclusive to it.
	Name     string
	Bindings []Binding
	// Transient makes the queue non-durable. Exclusive queues are always
	// transient.
	Transient  bool
	Exclusive  bool // owned by one connection and deleted with it
	AutoDelete bool // deleted when its last consumer goes

	MessageTTL           time.Duration // x-message-ttl
	Expires              time.Duration // x-expires: delete after this long unused
	MaxLength            int64         // x-max-length
	MaxLengthBytes       int64         // x-max-length-bytes
	MaxPriority          uint8         // x-max-priority: enables priorities 0..MaxPriority
	DeadLetterExchange   string        // x-dead-letter-exchange
	DeadLetterRoutingKey string        // x-dead-letter-routing-key
	Type                 QueueType     // x-queue-type
	DeliveryLimit        uint32        // x-delivery-limit (quorum queues)
	// Arguments are passed to the broker as given, under the typed fields
	// above (which win where both are set).
	Arguments map[string]any
}

// QueueInfo is what the broker reports about a declared queue.
type QueueInfo = transport.QueueInfo

// Topology is a set of exchanges and queues declared together: exchanges
// first, then queues and their bindings.
type Topology struct {
	Exchanges []Exchange
	Queues    []Queue
}

// Merge returns a topology with the exchanges and queues of t followed by
// those of o that t does not already name.
func (t Topology) Merge(o Topology) Topology {
	out := Topology{
		Exchanges: append([]Exchange(nil), t.Exchanges...),
		Queues:    append([]Queue(nil), t.Queues...),
	}
	for _, ex := range o.Exchanges {
		if _, ok := out.Exchange(ex.Name); !ok {
			out.Exchanges = append(out.Exchanges, ex)
		}
	}
	for _, q := range o.Queues {
		if _, ok := out.Queue(q.Name); !ok || q.Name == "" {
			out.Queues = append(out.Queues, q)
		}
	}
	return out
}

// Exchange returns the exchange of t with the given name.
func (t Topology) Exchange(name string) (Exchange, bool) {
	for _, ex := range t.Exchanges {
		if ex.Name == name {
			return ex, true
		}
	}
	return Exchange{}, false
}

// Queue returns the queue of t with the given name.
func (t Topology) Queue(name string) (Queue, bool) {
	for _, q := range t.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

// Entity is what WithDeclare declares before a producer publishes: an
// Exchange, a Queue or a Topology.
type Entity interface {
	declareOn(ctx context.Context, conn *Connection) error
}

func (ex Exchange) declareOn(ctx context.Context, conn *Connection) error {
	return ex.Declare(ctx, conn)
}

// declareOn declares the queue for a producer, which must not own it: a
// server-named or exclusive queue is its consumer's, and declared by a
// producer it would be the producer's connection's instead.
func (q Queue) declareOn(ctx context.Context, conn *Connection) error {
	if q.Name == "" || q.Exclusive {
		return fmt.Errorf("%w: WithDeclare: queue %s is server-named or exclusive, so it belongs to the consumer that declares it, not to a producer",
			ErrNotSupported, q.describe())
	}
	_, err := q.Declare(ctx, conn)
	return err
}

// declareOn declares the topology for a producer: as Declare does, less its
// exclusive queues, which belong to their consumers.
func (t Topology) declareOn(ctx context.Context, conn *Connection) error {
	shared := Topology{Exchanges: t.Exchanges}
	for _, q := range t.Queues {
		if !q.Exclusive {
			shared.Queues = append(shared.Queues, q)
		}
	}
	return shared.Declare(ctx, conn)
}

// Declare declares every exchange of t, then every named queue with its
// bindings, then the exchange-to-exchange bindings. Server-named queues are
// skipped: each consumer declares its own.
func (t Topology) Declare(ctx context.Context, conn *Connection) error {
	for _, ex := range t.Exchanges {
		if err := conn.declareExchange(ctx, ex); err != nil {
			return err
		}
	}
	for _, q := range t.Queues {
		if q.Name == "" {
			continue
		}
		if _, err := q.Declare(ctx, conn); err != nil {
			return err
		}
	}
	for _, ex := range t.Exchanges {
		if err := ex.declareBindings(ctx, conn); err != nil {
			return err
		}
	}
	return nil
}

// Declare declares the exchange, unless it is one the broker owns or
// NoDeclare is set, and binds it to the sources in ex.Bindings.
func (ex Exchange) Declare(ctx context.Context, conn *Connection) error {
	if err := conn.declareExchange(ctx, ex); err != nil {
		return err
	}
	return ex.declareBindings(ctx, conn)
}

func (ex Exchange) declareBindings(ctx context.Context, conn *Connection) error {
	for _, b := range ex.Bindings {
		if err := conn.bind(ctx, ex.Name, true, b); err != nil {
			return err
		}
	}
	return nil
}

// Inspect checks that the exchange exists (a passive declare) and returns
// an error wrapping ErrNotFound if it does not.
func (ex Exchange) Inspect(ctx context.Context, conn *Connection) error {
	te := ex.toTransport()
	te.Passive = true
	return conn.op("inspect exchange "+ex.Name, conn.transport().DeclareExchange(ctx, te))
}

// Delete deletes the exchange. With IfUnused it fails with ErrInUse while
// the exchange has bindings; IfEmpty, which only queues can honour, fails
// with ErrNotSupported before anything is deleted.
func (ex Exchange) Delete(ctx context.Context, conn *Connection, opts ...DeleteOption) error {
	c := deleteOptions(opts)
	if c.ifEmpty {
		return fmt.Errorf("kombu: delete exchange %s: IfEmpty applies to queues, which hold messages: %w", ex.Name, ErrNotSupported)
	}
	conn.forget(ex.Name)
	return conn.op("delete exchange "+ex.Name, conn.transport().DeleteExchange(ctx, ex.Name, c.ifUnused))
}

// Bind binds the exchange, as destination, to the source exchange in b.
func (ex Exchange) Bind(ctx context.Context, conn *Connection, b Binding) error {
	return conn.bind(ctx, ex.Name, true, b)
}

// Unbind removes a binding made with Bind.
func (ex Exchange) Unbind(ctx context.Context, conn *Connection, b Binding) error {
	return conn.unbind(ctx, ex.Name, true, b)
}

func (ex Exchange) isBuiltin() bool {
	return ex.Name == "" || strings.HasPrefix(ex.Name, "amq.")
}

func (ex Exchange) kind() ExchangeType {
	if ex.Type == "" {
		return ExchangeDirect
	}
	return ex.Type
}

func (ex Exchange) toTransport() transport.Exchange {
	return transport.Exchange{
		Name:       ex.Name,
		Type:       string(ex.kind()),
		Durable:    !ex.Transient,
		AutoDelete: ex.AutoDelete,
		Internal:   ex.Internal,
		Arguments:  ex.Arguments,
	}
}

// Declare declares the queue and its bindings and returns what the broker
// reports, including the name it chose when q.Name is empty.
func (q Queue) Declare(ctx context.Context, conn *Connection) (QueueInfo, error) {
	tq, err := q.toTransport()
	if err != nil {
		return QueueInfo{}, err
	}
	if err := conn.checkQueueFeatures(q); err != nil {
		return QueueInfo{}, err
	}
	info, err := conn.transport().DeclareQueue(ctx, tq)
	if err != nil {
		return QueueInfo{}, conn.op("declare queue "+q.describe(), err)
	}
	for _, b := range q.Bindings {
		if err := conn.bind(ctx, info.Name, false, b); err != nil {
			return QueueInfo{}, err
		}
	}
	return info, nil
}

// Inspect checks that the queue exists (a passive declare) and returns its
// message and consumer counts, or an error wrapping ErrNotFound.
func (q Queue) Inspect(ctx context.Context, conn *Connection) (QueueInfo, error) {
	info, err := conn.transport().DeclareQueue(ctx, transport.Queue{Name: q.Name, Passive: true})
	return info, conn.op("inspect queue "+q.Name, err)
}

// Bind adds a binding of the queue to an exchange.
func (q Queue) Bind(ctx context.Context, conn *Connection, b Binding) error {
	return conn.bind(ctx, q.Name, false, b)
}

// Unbind removes a binding of the queue.
func (q Queue) Unbind(ctx context.Context, conn *Connection, b Binding) error {
	return conn.unbind(ctx, q.Name, false, b)
}

// Purge removes every ready message from the queue and returns how many.
func (q Queue) Purge(ctx context.Context, conn *Connection) (int, error) {
	n, err := conn.transport().PurgeQueue(ctx, q.Name)
	return n, conn.op("purge queue "+q.Name, err)
}

type deleteConfig struct{ ifUnused, ifEmpty bool }

// IfUnused makes Delete fail with ErrInUse while a queue has consumers, or
// an exchange has bindings.
func IfUnused() DeleteOption { return deleteOption(func(c *deleteConfig) { c.ifUnused = true }) }

// IfEmpty makes Queue.Delete fail with ErrInUse while the queue has
// messages. Exchanges hold no messages: Exchange.Delete refuses it.
func IfEmpty() DeleteOption { return deleteOption(func(c *deleteConfig) { c.ifEmpty = true }) }

func deleteOptions(opts []DeleteOption) deleteConfig {
	var c deleteConfig
	for _, o := range opts {
		o.applyDelete(&c)
	}
	return c
}

// Delete deletes the queue and returns how many messages it held.
func (q Queue) Delete(ctx context.Context, conn *Connection, opts ...DeleteOption) (int, error) {
	c := deleteOptions(opts)
	n, err := conn.transport().DeleteQueue(ctx, q.Name, c.ifUnused, c.ifEmpty)
	return n, conn.op("delete queue "+q.Name, err)
}

// Get fetches one message from the queue (AMQP basic.get) and returns
// ErrEmpty when there is none. The message must be settled unless
// WithAutoAck is given. A message that cannot be decompressed or whose
// content type WithAccept refuses is rejected, and returned with the error.
func (q Queue) Get(ctx context.Context, conn *Connection, opts ...GetOption) (*Message, error) {
	var c getConfig
	for _, o := range opts {
		o.applyGet(&c)
	}
	accept, err := conn.codecs.accept(c.accept)
	if err != nil {
		return nil, err
	}
	s := conn.session()
	d, err := s.tc.Get(ctx, q.Name, c.autoAck)
	if err != nil {
		return nil, conn.op("get from queue "+q.Name, err)
	}
	msg, err := conn.newMessage(d, accept, s.gen)
	if err != nil && msg.State() == StateUnsettled {
		// Nobody else will see this message: reject it (dead-lettering it
		// where the queue has a dead-letter exchange) rather than leave it
		// unsettled.
		if rerr := msg.Reject(false); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return msg, err
}

type getConfig struct {
	receiveConfig
}

func (q Queue) describe() string {
	if q.Name == "" {
		return "(server-named)"
	}
	return q.Name
}

// toTransport maps the typed fields to RabbitMQ's x- arguments, which every
// driver understands, in integer milliseconds as Kombu sends them.
func (q Queue) toTransport() (transport.Queue, error) {
	args := make(map[string]any, len(q.Arguments)+4)
	for k, v := range q.Arguments {
		args[k] = v
	}
	setMillis := func(key string, d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("kombu: queue %s: %s must not be negative, got %v", q.describe(), key, d)
		}
		if d > 0 {
			args[key] = d.Milliseconds()
		}
		return nil
	}
	if err := setMillis("x-message-ttl", q.MessageTTL); err != nil {
		return transport.Queue{}, err
	}
	if err := setMillis("x-expires", q.Expires); err != nil {
		return transport.Queue{}, err
	}
	if q.MaxLength > 0 {
		args["x-max-length"] = q.MaxLength
	}
	if q.MaxLengthBytes > 0 {
		args["x-max-length-bytes"] = q.MaxLengthBytes
	}
	if q.MaxPriority > 0 {
		args["x-max-priority"] = int64(q.MaxPriority)
	}
	if q.DeadLetterExchange != "" {
		args["x-dead-letter-exchange"] = q.DeadLetterExchange
	}
	if q.DeadLetterRoutingKey != "" {
		args["x-dead-letter-routing-key"] = q.DeadLetterRoutingKey
	}
	switch q.Type {
	case "", QueueClassic:
	case QueueQuorum, QueueStream:
		if q.Exclusive || q.Transient {
			return transport.Queue{}, fmt.Errorf("kombu: queue %s: a %s queue must be durable and not exclusive", q.describe(), q.Type)
		}
		args["x-queue-type"] = string(q.Type)
	default:
		return transport.Queue{}, fmt.Errorf("kombu: queue %s: unknown queue type %q (want classic, quorum or stream)", q.describe(), q.Type)
	}
	if q.Type == QueueClassic {
		args["x-queue-type"] = string(QueueClassic)
	}
	if q.DeliveryLimit > 0 {
		args["x-delivery-limit"] = int64(q.DeliveryLimit)
	}
	if len(args) == 0 {
		args = nil
	}
	// A server-named queue belongs to the consumer that declared it, as in
	// Kombu's Broadcast: exclusive, auto-delete and transient.
	exclusive := q.Exclusive || q.Name == ""
	return transport.Queue{
		Name:       q.Name,
		Durable:    !q.Transient && !exclusive,
		Exclusive:  exclusive,
		AutoDelete: q.AutoDelete || exclusive,
		Arguments:  args,
	}, nil
}
