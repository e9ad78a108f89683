// Package kombu is the runtime of kombu-go: Kombu's messaging model for Go,
// over RabbitMQ, Redis and an in-process broker, speaking Kombu's wire
// formats so that Go and Python services can share a broker.
//
// Import it as
//
//	import kombu "github.com/kombu-go/kombu/runtime"
//
// # The model
//
// Kombu, like AMQP 0-9-1, separates where messages are sent from where they
// are read, and lets the broker connect the two:
//
//   - A Connection is one connection to a broker, made with Dial from a URL
//     such as "amqp://guest:guest@localhost//", "redis://localhost:6379/0" or
//     "memory://". Everything else is made from a connection.
//
//   - An Exchange is where producers publish. It never stores messages; it
//     routes each one, by its routing key, to the queues bound to it. Its type
//     says how: a direct exchange matches the routing key exactly, a topic
//     exchange matches dot-separated words with "*" (one word) and "#" (zero
//     or more), a fanout exchange sends to every bound queue, and a headers
//     exchange matches message headers.
//
//   - A Queue is where messages wait until a consumer takes them. Several
//     consumers on one queue share its messages (a work queue); each message
//     goes to one of them.
//
//   - A Binding connects a queue to an exchange with a binding key: "send me
//     the messages whose routing key matches this".
//
//   - A Producer publishes messages to an exchange with a routing key. It
//     serializes the body (JSON by default, or protobuf, raw bytes, text, or
//     a serializer of your own), compresses it if asked, and, on brokers with
//     publisher confirms, returns only once the broker has the message. A
//     message that matches no binding is dropped by the broker, as AMQP
//     does: WithDeclare has the producer declare its queues first, so what it
//     publishes before any consumer starts waits for one; WithMandatory makes
//     a message that reaches no queue an error, WithUnroutableWarning a
//     logged warning.
//
//   - A Consumer reads from one or more queues and hands each Message to a
//     Handler. The handler's result settles the message: nil acknowledges it
//     (the broker forgets it), an error rejects it (it goes to the queue's
//     dead-letter exchange, if any), and Requeue(err) puts it back for another
//     try. Until a message is settled, the broker keeps it: if the consumer
//     dies, the message is delivered again, marked redelivered.
//
//   - A Message carries a Body, Headers, Properties (content type, priority,
//     correlation id, ...) and DeliveryInfo (exchange, routing key, queue,
//     redelivered). Decode deserializes the body by its content type.
//
// A Topology groups exchanges and queues so that they can be declared
// together. Declaring is idempotent: it creates what is missing and checks
// that what exists has the same settings. Zero values are Kombu's defaults:
// durable exchanges and queues, direct exchanges, persistent messages.
//
// # A first program
//
//	conn, err := kombu.Dial(ctx, "memory://")
//	if err != nil { ... }
//	defer conn.Close()
//
//	shop := kombu.Exchange{Name: "shop", Type: kombu.ExchangeTopic}
//	orders := kombu.Queue{Name: "orders", Bindings: []kombu.Binding{{Exchange: "shop", RoutingKey: "order.*"}}}
//
//	consumer, err := kombu.NewConsumer(conn,
//		[]kombu.Subscription{{Queue: orders, Handler: kombu.HandlerFunc(
//			func(ctx context.Context, msg *kombu.Message) error {
//				var order map[string]any
//				if err := msg.Decode(&order); err != nil {
//					return err
//				}
//				fmt.Println("order", order["id"])
//				return nil // ack
//			})}},
//		kombu.WithTopology(kombu.Topology{Exchanges: []kombu.Exchange{shop}}))
//	if err != nil { ... }
//	go consumer.Run(ctx)
//
//	producer := kombu.NewProducer(conn, kombu.WithExchange(shop))
//	err = producer.Publish(ctx, map[string]any{"id": 42}, kombu.WithRoutingKey("order.placed"))
//
// Most programs do not write this by hand: protoc-gen-kombu generates typed
// producers, handlers and consumers from exchanges and routes declared in
// .proto files (see the repository's README).
//
// # Simple queues and pools
//
// Two parts of Kombu's API are here for programs that want them.
// NewSimpleQueue and NewSimpleBuffer are Kombu's SimpleQueue and
// SimpleBuffer, typed: a queue used like a channel between programs (Put,
// Get with a context, GetNowait, Len, Clear, Close), declared as Kombu
// declares it, so that a Python conn.SimpleQueue("jobs") shares it. Pools
// is Kombu's kombu.pools: connection and producer pools per broker URL,
// with a limit, where Kombu has module globals. A Connection already
// serves many goroutines, so a pool is for bounding connections, not for
// speed (see Pools for the figures).
//
// # Delayed delivery
//
// WithDelay and WithETA hold a message back at the broker: RabbitMQ keeps
// it in Kombu 5.5's native delayed-delivery queues, which Celery 5.5
// workers share; memory:// on a timer; Redis and the filesystem in a
// layout of kombu-go's that Python consumers do not read, so that they see
// the message only when it is due. Delays run from a millisecond to
// MaxDelay (2^28 − 1 seconds); a transport that cannot delay refuses with
// ErrNotSupported.
//
// # Shovels
//
// NewShovel is RabbitMQ's shovel plugin as a library, over any
// transports: it moves the messages of a queue on one connection to an
// exchange on another (or the same), as they are, and acknowledges each at
// the source only once the destination has confirmed its copy, so that
// nothing is lost when either end, or the shovel, dies; a message may then
// arrive twice. It replays a dead-letter queue into the exchange its
// messages failed from, relays a database outbox to RabbitMQ or Redis, or
// moves a queue from one broker to another. It publishes in batches of
// what the source has ready, and stops, dead-letters or returns a message
// the destination routes nowhere, never dropping it (see Shovel).
//
// # Request and reply
//
// Producer.Call publishes a request and waits for its reply, which a
// Replying handler sends (generated request/reply handlers are such). The
// caller's context deadline goes with the request: as its expiration on
// transports with TTL (RabbitMQ, memory://), so that the broker drops a
// request no consumer took in time, and on every transport in its
// "expires" header (ExpiresHeader), so that a consumer drops a request
// already past it without calling the handler, gives the handler a context
// that ends at it, and sends no reply after it. The deadline is wall-clock
// time: the hosts' clocks must agree, as Kombu and Celery assume.
//
// # Serializers and compression
//
// A producer serializes a body with the serializer WithSerializer names
// (json unless the body is bytes or text, as in Kombu) and compresses it if
// WithCompression asks; a consumer picks the decoder by the message's
// content type and "compression" header, within its accept list
// (WithAccept) and its body limit (WithMaxBodySize). Every connection has
// Kombu's serializers (json, msgpack, yaml, raw, text, plus protobuf and
// protojson) and compressions (zlib, bzip2, lzma, brotli, zstd), whose
// implementations are in package github.com/kombu-go/kombu/runtime/codec;
// add your own per connection with WithCustomSerializers and WithCustomCompressors.
// The Python values Kombu's json envelopes carry (date, time, Decimal,
// UUID, naive datetimes) are the types of package
// github.com/kombu-go/kombu/runtime/pytypes.
//
// # Transports
//
// A transport is a driver registered under URL schemes, as database/sql
// drivers are. The in-process broker (memory://) is always available; the
// others are imported for their side effect:
//
//	import _ "github.com/kombu-go/kombu/transports/amqp"  // amqp://, amqps://
//	import _ "github.com/kombu-go/kombu/transports/redis" // redis://, rediss://, sentinel://
//
// Dialing a scheme whose transport is not imported fails with
// ErrUnknownScheme and names the package to import; a scheme no transport
// has names the nearest one ("rabbitmq": did you mean "amqp"?). A malformed
// URL fails with ErrInvalidURL and a *URLError that says what is wrong and
// shows the URL with its password masked. A transport that cannot
// do something asked of it (priorities on a broker without them, say) fails
// with ErrNotSupported; nothing is silently ignored.
//
// # Interceptors, tracing and logging
//
// WithInterceptors on Dial wraps every publish and every handler call made
// through the connection (see Interceptor): the place for tracing, metrics
// and header policies, which apply to generated and hand-written code
// alike. The first interceptor given is the outermost. The runtime imports
// no telemetry library; the otelkombu module is the OpenTelemetry
// interceptor. The runtime logs through the *slog.Logger given with
// WithLogger, never prints, and a line about a message carries its queue,
// exchange, routing key, message id and delivery tag as attributes.
//
// # Errors
//
// Every error can be tested with errors.Is against the sentinels of this
// package (ErrClosed, ErrNotFound, ErrPrecondition, ErrUnroutable,
// ErrNacked, ErrContentDisallowed, ErrDecode, ErrMessageState, ...), and
// broker failures are *OperationalError values that say what was being done,
// on which broker (password masked). A message that cannot be decoded never
// stops a consumer: it goes to the decode-error handler and is rejected,
// never acknowledged and lost. A generated Unimplemented…Handler method
// returns an error wrapping ErrUnimplemented, which the consumer treats as
// any handler error: the message is rejected (dead-lettered where its queue
// has a dead-letter exchange), as Celery rejects a task it does not know.
//
// # Dead letters
//
// A message whose handler fails (returns an error, panics) or that cannot
// be decoded is rejected without requeue, and dead-lettered where its
// queue has a dead-letter exchange. Whether the dead letter says why
// depends on who writes it:
//
//   - the memory broker and Redis (which emulates dead-letter exchanges)
//     write the dead-lettered copy themselves, and put the error's text
//     (up to 1 KiB) in its ErrorHeader ("kombu_error"), beside x-death;
//   - RabbitMQ dead-letters in the broker, whose x-death records the death
//     (reason "rejected", queue, time, count) but can be given no text:
//     there the error is only logged, unless the message went through
//     WithMessageRetry;
//   - WithMessageRetry puts the failed attempt's error in ErrorHeader of every
//     retry copy it publishes, so a message that used up its retries
//     carries, on RabbitMQ, the error of its last retry (the final
//     attempt's error is logged), and on memory and Redis the final one.
//
// A message the application rejects itself (msg.Reject) carries no text.
// The header costs nothing on the success path.
//
// # Prefetch: speed and fairness
//
// A consumer takes messages ahead of its handlers (its prefetch), so that
// the next one is at hand when a handler finishes, rather than a round
// trip to the broker away. What it takes ahead, though, another consumer
// of the same queue cannot have, even idle. By default a consumer fits
// its prefetch to its handlers: one message per handler goroutine, and at
// most 100 ms (and 100 messages) of their handling more. Quick handlers
// then run as fast as a client tuned for throughput (0.94 of amqp091-go
// at basic.qos 100 on RabbitMQ in make bench, where Celery's four per
// handler reached 0.39 to 0.53), and slow ones hold little more than they
// work on, so that consumers sharing a queue share its work.
// WithPrefetch pins a prefetch instead: the concurrency for the fairest,
// 100 or more for the fastest. See WithPrefetch for the details.
//
// # Contexts and shutdown
//
// Every call that may block takes a context first. Consumer.Run consumes
// until its context ends or Close is called, then stops taking messages,
// lets running handlers finish within a bound (WithShutdownTimeout), and
// returns every message it held but did not handle to its queue.
//
// A handler's context is not Run's: it ends only when that bound is
// running out (a tenth of it, at most a second, before its end) with the
// handler still running. A handler passes it to what it waits on
// and, when it ends, returns ctx.Err() (or the error of the call it
// interrupted), the ordinary thing in Go:
//
//	func (h *billing) Charge(ctx context.Context, inv *Invoice, msg *kombu.Message) error {
//		if err := h.gateway.Charge(ctx, inv); err != nil {
//			return err // after a shutdown cancelled ctx: back in the queue
//		}
//		return nil
//	}
//
// An error returned once the shutdown has cancelled the context is not the
// message's failure: the message goes back to its queue for the next
// consumer, never to the dead-letter exchange. nil still acks it. A handler
// that ignores its context keeps its message until it returns or the
// connection is closed, which puts the message back in its queue (on
// Redis, at once; were the process killed instead, after the visibility
// timeout).
package kombu
