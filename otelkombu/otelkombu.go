// Package otelkombu traces and measures kombu-go's messaging with
// OpenTelemetry, following its messaging semantic conventions. It is a
// kombu.Interceptor, given to Dial, and so covers everything made from the
// connection: generated and hand-written producers and consumers,
// request/reply (Producer.Call, Message.Reply) and WithMessageRetry's
// republishing. The kombu runtime itself imports no telemetry library:
// this module is the only part of kombu-go that does.
//
//	ic, err := otelkombu.NewInterceptor() // the global providers and propagator
//	conn, err := kombu.Dial(ctx, url, kombu.WithInterceptors(ic))
//
// # Traces
//
// Each publish gets a PRODUCER span, "publish <destination>", a child of
// the span in the publish's context. Its context travels in the message's
// headers as W3C Trace Context ("traceparent", "tracestate"), which
// Celery's and pika's instrumentations read and write too, so a trace
// crosses between Go and Python. A publish whose context holds no span
// (WithMessageRetry republishing a failed message, say) continues the
// trace that the message's headers already carry.
//
// Each handled message gets a CONSUMER span, "process <queue>", started
// when its handler is called and ended when it returns. Its parent is the
// publisher's span, read from the message's headers, so that a message's
// publish and its handling are one trace (a request, its handling and its
// reply too: Message.Reply publishes inside the handler's span), and it
// carries a link to that span as the conventions recommend
// (WithLinkedProcessSpans keeps the link alone, the conventions' default).
// A message without trace headers starts a trace of its own.
//
// Span attributes (semantic conventions v1.43, status Development):
// messaging.system ("rabbitmq", "redis", "kombu_memory", ..., see System),
// messaging.operation.name ("publish", "process"), messaging.operation.type
// ("send", "process"), messaging.destination.name, the routing key
// (messaging.rabbitmq.destination.routing_key), messaging.message.id,
// messaging.message.conversation_id (the correlation id),
// messaging.rabbitmq.message.delivery_tag on a process span, and
// messaging.message.body.size. The routing key and the delivery tag keep
// their RabbitMQ names on every transport: the conventions name them for
// RabbitMQ alone, and every Kombu transport routes by exchange and routing
// key as AMQP does. A failure sets the span's status to Error,
// records the error as an event, and sets error.type.
//
// # Metrics
//
// messaging.client.sent.messages (counter, publishes),
// messaging.client.operation.duration (histogram, seconds, publishes),
// messaging.client.consumed.messages (counter, handled messages) and
// messaging.process.duration (histogram, seconds, handler calls), each with
// messaging.system (the transport), messaging.operation.name,
// messaging.destination.name (a publish's exchange, or its routing key on
// the default exchange, where that is the queue; a handled message's
// queue), kombu.exchange (the exchange, "" for the default one) and, on
// failure, error.type. Routing keys are left out of metrics: they can be
// as many as messages.
package otelkombu

import (
	"context"
	"errors"
	"strconv"
	"time"

	kombu "github.com/kombu-go/kombu/runtime"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of otelkombu's tracer and meter.
const ScopeName = "github.com/kombu-go/kombu/otelkombu"

// ExchangeKey is the attribute of the exchange a message was published to
// or delivered through, on metrics ("" for the default exchange).
const ExchangeKey = attribute.Key("kombu.exchange")

// Option configures NewInterceptor.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	prop       propagation.TextMapPropagator
	linkedOnly bool
}

// WithTracerProvider sets where spans go. The default is otel's global
// TracerProvider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets where metrics go. The default is otel's global
// MeterProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithPropagator sets how span contexts travel in message headers. The
// default is otel's global TextMapPropagator if one was set, and W3C
// Trace Context with Baggage otherwise (otel's global default propagates
// nothing, which would cut every trace at the broker).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.prop = p })
}

// WithLinkedProcessSpans makes each process span the root of a trace of
// its own, linked to the publisher's span but not its child: the messaging
// conventions' default, for consumers whose handling should not lengthen
// the publisher's trace (a message fanned out to many queues, a backlog
// handled hours later). Without it a process span is the publisher's
// span's child (and linked to it too), so that a publish, its handling and
// a reply read as one trace.
func WithLinkedProcessSpans() Option {
	return optionFunc(func(c *config) { c.linkedOnly = true })
}

// Interceptor traces and measures publishes and handler calls. Make it
// with NewInterceptor and give it to kombu.Dial with kombu.WithInterceptors.
type Interceptor struct {
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	linkedOnly bool

	sent         metric.Int64Counter
	consumed     metric.Int64Counter
	opDuration   metric.Float64Histogram
	procDuration metric.Float64Histogram
}

var _ kombu.Interceptor = (*Interceptor)(nil)

// NewInterceptor returns an Interceptor. It fails only when the
// MeterProvider refuses to create an instrument.
func NewInterceptor(opts ...Option) (*Interceptor, error) {
	c := config{}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = otel.GetTextMapPropagator()
		if len(c.prop.Fields()) == 0 {
			c.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		}
	}
	meter := c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(kombu.Version))
	i := &Interceptor{tracer: c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(kombu.Version)), prop: c.prop, linkedOnly: c.linkedOnly}
	var errs []error
	var err error
	i.sent, err = meter.Int64Counter("messaging.client.sent.messages",
		metric.WithDescription("Number of messages producers attempted to send to the broker."), metric.WithUnit("{message}"))
	errs = append(errs, err)
	i.consumed, err = meter.Int64Counter("messaging.client.consumed.messages",
		metric.WithDescription("Number of messages that were delivered to the application."), metric.WithUnit("{message}"))
	errs = append(errs, err)
	buckets := metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
	i.opDuration, err = meter.Float64Histogram("messaging.client.operation.duration",
		metric.WithDescription("Duration of messaging operation initiated by a producer or consumer client."), metric.WithUnit("s"), buckets)
	errs = append(errs, err)
	i.procDuration, err = meter.Float64Histogram("messaging.process.duration",
		metric.WithDescription("Duration of processing operation."), metric.WithUnit("s"), buckets)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return i, nil
}

// System returns the messaging.system value of a kombu transport scheme:
// "rabbitmq" for amqp and amqps, "redis" for redis, rediss and sentinel,
// "aws_sqs", "gcp_pubsub", "kafka" and "servicebus" for those drivers,
// "kombu_memory" for the in-process broker, and the scheme itself for any
// other.
func System(scheme string) string {
	switch scheme {
	case "amqp", "amqps", "pyamqp", "librabbitmq":
		return "rabbitmq"
	case "redis", "rediss", "sentinel":
		return "redis"
	case "sqs":
		return "aws_sqs"
	case "gcpubsub", "gcppubsub":
		return "gcp_pubsub"
	case "kafka", "confluentkafka":
		return "kafka"
	case "azureservicebus":
		return "servicebus"
	case "memory":
		return "kombu_memory"
	}
	return scheme
}

// WrapPublish traces and measures a publish, and writes the span's context
// into the message's headers.
func (i *Interceptor) WrapPublish(next kombu.PublishFunc) kombu.PublishFunc {
	return func(ctx context.Context, pub *kombu.Publishing) error {
		parent := ctx
		if !trace.SpanContextFromContext(ctx).IsValid() {
			// No caller's span: a retry of a delivered message, or a
			// publish from code that is not traced. Continue what the
			// headers carry, if anything.
			parent = i.prop.Extract(ctx, publishingCarrier{pub})
		}
		props := pub.Properties()
		system := System(pub.Transport())
		dest := publishDestination(pub.Exchange(), pub.RoutingKey())
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String(system),
			semconv.MessagingOperationName("publish"),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(dest),
			semconv.MessagingMessageBodySize(len(pub.Body())),
		}
		if pub.RoutingKey() != "" {
			attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(pub.RoutingKey()))
		}
		if props.MessageID != "" {
			attrs = append(attrs, semconv.MessagingMessageID(props.MessageID))
		}
		if props.CorrelationID != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(props.CorrelationID))
		}
		ctx, span := i.tracer.Start(parent, "publish "+dest, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		defer span.End()
		i.prop.Inject(ctx, publishingCarrier{pub})

		start := time.Now()
		err := next(ctx, pub)
		elapsed := time.Since(start).Seconds()
		metricAttrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String(system),
			semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(metricDestination(pub.Exchange(), pub.RoutingKey())),
			ExchangeKey.String(pub.Exchange()),
		}
		if err != nil {
			metricAttrs = append(metricAttrs, failed(span, err))
		}
		set := metric.WithAttributeSet(attribute.NewSet(metricAttrs...))
		i.sent.Add(ctx, 1, set)
		i.opDuration.Record(ctx, elapsed, set)
		return err
	}
}

// WrapHandle traces and measures a handler call, as a child of the span
// whose context the message carries.
func (i *Interceptor) WrapHandle(next kombu.HandlerFunc) kombu.HandlerFunc {
	return func(ctx context.Context, msg *kombu.Message) error {
		creation := i.prop.Extract(ctx, messageCarrier{msg})
		system := System(msg.Transport())
		info := msg.DeliveryInfo
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String(system),
			semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(info.Queue),
			semconv.MessagingMessageBodySize(len(msg.Body)),
			semconv.MessagingRabbitMQMessageDeliveryTag(int(info.DeliveryTag)),
		}
		if info.RoutingKey != "" {
			attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(info.RoutingKey))
		}
		if msg.Properties.MessageID != "" {
			attrs = append(attrs, semconv.MessagingMessageID(msg.Properties.MessageID))
		}
		if msg.Properties.CorrelationID != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(msg.Properties.CorrelationID))
		}
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
		if sc := trace.SpanContextFromContext(creation); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		parent := creation
		if i.linkedOnly {
			parent, opts = ctx, append(opts, trace.WithNewRoot())
		}
		ctx, span := i.tracer.Start(parent, "process "+info.Queue, opts...)
		defer span.End()

		start := time.Now()
		err := next(ctx, msg)
		elapsed := time.Since(start).Seconds()
		metricAttrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String(system),
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(info.Queue),
			ExchangeKey.String(info.Exchange),
		}
		if err != nil {
			metricAttrs = append(metricAttrs, failed(span, err))
		}
		set := metric.WithAttributeSet(attribute.NewSet(metricAttrs...))
		i.consumed.Add(ctx, 1, set)
		i.procDuration.Record(ctx, elapsed, set)
		return err
	}
}

// publishDestination is a publish span's destination as the RabbitMQ
// conventions name it: "exchange:routing key", the non-empty one alone,
// or "amq.default" when both are empty.
func publishDestination(exchange, key string) string {
	switch {
	case exchange != "" && key != "":
		return exchange + ":" + key
	case exchange != "":
		return exchange
	case key != "":
		return key
	}
	return "amq.default"
}

// metricDestination is a publish's destination on metrics, low in
// cardinality: the exchange, or on the default exchange the routing key,
// which names the queue there.
func metricDestination(exchange, key string) string {
	if exchange != "" {
		return exchange
	}
	if key != "" {
		return key
	}
	return "amq.default"
}

// failed marks span as failed by err and returns err's error.type.
func failed(span trace.Span, err error) attribute.KeyValue {
	typ := errorType(err)
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorTypeKey.String(typ))
	return semconv.ErrorTypeKey.String(typ)
}

// errorType names err by the kombu sentinel it is, low in cardinality as
// error.type must be, or "_OTHER".
func errorType(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "_OTHER"
}

var sentinels = []struct {
	err  error
	name string
}{
	{kombu.ErrInterceptor, "interceptor"},
	{kombu.ErrUnroutable, "unroutable"},
	{kombu.ErrNacked, "nacked"},
	{kombu.ErrClosed, "closed"},
	{kombu.ErrEncode, "encode"},
	{kombu.ErrDecode, "decode"},
	{kombu.ErrContentDisallowed, "content_disallowed"},
	{kombu.ErrLimitExceeded, "limit_exceeded"},
	{kombu.ErrNotSupported, "not_supported"},
	{kombu.ErrNotFound, "not_found"},
	{kombu.ErrAccessRefused, "access_refused"},
	{kombu.ErrNoRoute, "no_route"},
	{kombu.ErrUnimplemented, "unimplemented"},
	{context.DeadlineExceeded, "deadline_exceeded"},
	{context.Canceled, "canceled"},
}

// publishingCarrier reads and writes trace headers of a message being
// published.
type publishingCarrier struct{ pub *kombu.Publishing }

func (c publishingCarrier) Get(key string) string {
	v, _ := c.pub.Header(key)
	return headerString(v)
}

func (c publishingCarrier) Set(key, value string) { c.pub.SetHeader(key, value) }

func (c publishingCarrier) Keys() []string { return c.pub.HeaderKeys() }

// messageCarrier reads trace headers of a delivered message.
type messageCarrier struct{ msg *kombu.Message }

func (c messageCarrier) Get(key string) string { return headerString(c.msg.Headers[key]) }

// Set is never called: a delivered message's headers are only read.
func (c messageCarrier) Set(string, string) {}

func (c messageCarrier) Keys() []string {
	keys := make([]string, 0, len(c.msg.Headers))
	for k := range c.msg.Headers {
		keys = append(keys, k)
	}
	return keys
}

// headerString is a header's value as text: a string as it is, bytes (an
// AMQP long string some clients send as bytes) decoded, anything else
// nothing.
func headerString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}
