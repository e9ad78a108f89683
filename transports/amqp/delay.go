package amqp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Delayed delivery (transport.FeatureDelay) uses Kombu 5.5's native
// delayed-delivery topology (kombu/transport/native_delayed_delivery.py),
// which Celery 5.5 workers declare and publish their countdown and ETA
// tasks through, so that Go and Python share one set of queues on a
// broker:
//
//   - 28 levels, 27 down to 0. Level L is a durable topic exchange and a
//     durable queue, both named celery_delayed_L, the queue with the
//     arguments x-queue-type (quorum, Celery's default, or classic),
//     x-overflow=reject-publish, x-message-ttl=2^L × 1000 and
//     x-dead-letter-exchange naming level L−1's exchange (level 0's:
//     celery_delayed_delivery), and for quorum queues
//     x-dead-letter-strategy=at-least-once;
//   - the queue of level L is bound to its exchange with "*." repeated
//     27−L times then "1.#", and the exchange of level L−1 to level L's
//     with "*." × (27−L) then "0.#" (level 0's to the durable topic exchange
//     celery_delayed_delivery with "*." × 27 then "0.#");
//   - a message delayed by N seconds is published to celery_delayed_27
//     with the routing key made of N's 28 binary digits joined by dots,
//     then a dot and the message's routing key. Each level whose bit is
//     set holds it for 2^L seconds; the others pass it on at once. It
//     reaches celery_delayed_delivery N seconds after it was published.
//
// The topology is declared, exactly so, once per connection before its
// first delayed publish; redeclaring what a Celery worker declared changes
// nothing. A level queue of the other type (classic where quorum is asked,
// or the reverse) makes the declaration fail with transport.ErrPrecondition:
// set the native_delayed_delivery_queue_type URL option to what the broker
// has.
//
// The last hop is kombu-go's. Kombu leaves it to consumers: Celery's
// worker binds each of its queues' exchanges to celery_delayed_delivery
// with "#.<routing key>", and the queue to its exchange with the same key,
// so that a delayed message arrives with the digits still in its routing
// key, and a direct exchange (the default exchange included, and Kombu's
// default exchange type) cannot deliver it at all. kombu-go instead gives
// every exchange and routing key it delays messages to a relay: a durable
// queue named kombu_delayed_relay_<hash of exchange and key>, bound to
// celery_delayed_delivery with "#.kombu_delayed_relay_<hash>", with
// x-message-ttl=0, x-dead-letter-exchange=<exchange> and
// x-dead-letter-routing-key=<routing key> (and the level queues' type and
// overflow and dead-letter strategy). kombu-go publishes with the relay's
// name in place of the routing key, so the message leaves the relay at once
// for its own exchange with its own routing key, and is routed there when
// it is due exactly as a publish made then would be: any exchange type,
// any binding, Celery's queues included. Relays are never deleted by
// kombu-go (a message may be on its way to one for years); there is one
// per exchange and routing key that messages were delayed to.
//
// RabbitMQ records each hop in the message's x-death header (reason
// "expired"), as it does for Celery's delayed tasks. Delays are whole
// seconds: kombu-go rounds a delay up to the next second, so a message
// never arrives early (Celery truncates). Messages wait in durable queues
// and keep their delivery mode, so a persistent delayed message survives a
// broker restart as any persistent message in a durable queue does.

// Names and limits of Kombu's topology.
const (
	delayLevels           = 28
	delayDeliveryExchange = "celery_delayed_delivery"
	relayPrefix           = "kombu_delayed_relay_"
)

// delayOptions are the URL options for delayed delivery.
type delayOptions struct {
	// queueType is the level queues' x-queue-type: "quorum" (Celery's
	// default for broker_native_delayed_delivery_queue_type) or "classic".
	queueType string
	// prefix, when set, names the topology <prefix>_celery_delayed_<level>
	// and <prefix>_celery_delayed_delivery, as Kombu's main branch does
	// with its prefix argument. Celery 5.5 publishes to the unprefixed
	// names.
	prefix string
}

func defaultDelayOptions() delayOptions { return delayOptions{queueType: "quorum"} }

// parseDelayOption reads one of the delayed-delivery URL options; ok is
// false for a key that is not one.
func (o *delayOptions) parse(key, v string) (ok bool, err error) {
	switch key {
	case "native_delayed_delivery_queue_type":
		if v != "quorum" && v != "classic" {
			return true, fmt.Errorf("option %s=%q: want quorum or classic", key, v)
		}
		o.queueType = v
	case "native_delayed_delivery_prefix":
		if strings.ContainsAny(v, ".*#") {
			return true, fmt.Errorf("option %s=%q: the prefix cannot hold '.', '*' or '#'", key, v)
		}
		o.prefix = v
	default:
		return false, nil
	}
	return true, nil
}

// levelName is Kombu's level_name.
func (o delayOptions) levelName(level int) string {
	if o.prefix != "" {
		return o.prefix + "_celery_delayed_" + strconv.Itoa(level)
	}
	return "celery_delayed_" + strconv.Itoa(level)
}

// deliveryExchange is the exchange a message reaches when it is due.
func (o delayOptions) deliveryExchange() string {
	if o.prefix != "" {
		return o.prefix + "_" + delayDeliveryExchange
	}
	return delayDeliveryExchange
}

// levelQueue describes level L's queue as Kombu declares it.
func (o delayOptions) levelQueue(level int) transport.Queue {
	dlx := o.deliveryExchange()
	if level > 0 {
		dlx = o.levelName(level - 1)
	}
	args := map[string]any{
		"x-queue-type":           o.queueType,
		"x-overflow":             "reject-publish",
		"x-message-ttl":          int64(1<<level) * 1000,
		"x-dead-letter-exchange": dlx,
	}
	if o.queueType == "quorum" {
		args["x-dead-letter-strategy"] = "at-least-once"
	}
	return transport.Queue{Name: o.levelName(level), Durable: true, Arguments: args}
}

// relayName is the relay of an exchange and routing key: a single word,
// usable as the last word of a topic routing key.
func (o delayOptions) relayName(exchange, routingKey string) string {
	sum := sha256.Sum256([]byte(o.prefix + "\x00" + exchange + "\x00" + routingKey))
	name := relayPrefix + hex.EncodeToString(sum[:12])
	if o.prefix != "" {
		return o.prefix + "_" + name
	}
	return name
}

// relayQueue describes the relay to exchange with routingKey.
func (o delayOptions) relayQueue(exchange, routingKey string) transport.Queue {
	args := map[string]any{
		"x-queue-type":              o.queueType,
		"x-overflow":                "reject-publish",
		"x-message-ttl":             int64(0),
		"x-dead-letter-exchange":    exchange,
		"x-dead-letter-routing-key": routingKey,
	}
	if o.queueType == "quorum" {
		args["x-dead-letter-strategy"] = "at-least-once"
	}
	return transport.Queue{Name: o.relayName(exchange, routingKey), Durable: true, Arguments: args}
}

// levelBindingKey is the key level L's queue is bound with ("1") or the
// next level's exchange is bound with ("0").
func levelBindingKey(level int, bit string) string {
	return strings.Repeat("*.", delayLevels-1-level) + bit + ".#"
}

// delayedRoutingKey is Kombu's calculate_routing_key: the delay's 28
// binary digits, each a word, then the routing key.
func delayedRoutingKey(seconds int64, routingKey string) string {
	digits := strconv.FormatInt(seconds, 2)
	digits = strings.Repeat("0", delayLevels-len(digits)) + digits
	var b strings.Builder
	b.Grow(2*delayLevels + len(routingKey))
	for _, d := range digits {
		b.WriteRune(d)
		b.WriteByte('.')
	}
	b.WriteString(routingKey)
	return b.String()
}

// delaySeconds rounds a delay up to whole seconds, at least one.
func delaySeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// delayState is what a connection has declared for delayed delivery.
type delayState struct {
	opts delayOptions

	mu       sync.Mutex // held while declaring, so concurrent publishes declare once
	declared bool
	relays   map[string]struct{}
}

// declareTopology declares Kombu's levels and delivery exchange, in
// Kombu's order.
func (c *conn) declareTopology(ctx context.Context) error {
	o := c.delay.opts
	for level := delayLevels - 1; level >= 0; level-- {
		name := o.levelName(level)
		if err := c.DeclareExchange(ctx, transport.Exchange{Name: name, Type: transport.ExchangeTopic, Durable: true}); err != nil {
			return err
		}
		if _, err := c.DeclareQueue(ctx, o.levelQueue(level)); err != nil {
			if errors.Is(err, transport.ErrPrecondition) {
				return fmt.Errorf("%w (the broker's delayed-delivery queues were declared with other arguments: "+
					"set the URL option native_delayed_delivery_queue_type to the type they have, quorum or classic)", err)
			}
			return err
		}
		if err := c.Bind(ctx, transport.Binding{Source: name, Destination: name, RoutingKey: levelBindingKey(level, "1")}); err != nil {
			return err
		}
	}
	for level := delayLevels - 1; level > 0; level-- {
		err := c.Bind(ctx, transport.Binding{Source: o.levelName(level), Destination: o.levelName(level - 1),
			DestinationIsExchange: true, RoutingKey: levelBindingKey(level, "0")})
		if err != nil {
			return err
		}
	}
	if err := c.DeclareExchange(ctx, transport.Exchange{Name: o.deliveryExchange(), Type: transport.ExchangeTopic, Durable: true}); err != nil {
		return err
	}
	return c.Bind(ctx, transport.Binding{Source: o.levelName(0), Destination: o.deliveryExchange(),
		DestinationIsExchange: true, RoutingKey: levelBindingKey(0, "0")})
}

// delayed returns the message to publish in p's place: into the topology,
// through the relay to p's exchange and key, both declared first if this
// connection has not declared them yet.
func (c *conn) delayed(ctx context.Context, p *transport.Publishing) (*transport.Publishing, error) {
	if p.Delay > transport.MaxDelay {
		return nil, fmt.Errorf("amqp: %s: a delay of %v exceeds the topology's longest, %v: %w",
			describePublish(p), p.Delay, transport.MaxDelay, transport.ErrNotSupported)
	}
	start := time.Now()
	o := c.delay.opts
	relay := o.relayName(p.Exchange, p.RoutingKey)
	c.delay.mu.Lock()
	defer c.delay.mu.Unlock()
	if !c.delay.declared {
		if err := c.declareTopology(ctx); err != nil {
			return nil, fmt.Errorf("amqp: declare the delayed-delivery topology: %w", err)
		}
		c.delay.declared = true
	}
	if _, ok := c.delay.relays[relay]; !ok {
		if _, err := c.DeclareQueue(ctx, o.relayQueue(p.Exchange, p.RoutingKey)); err != nil {
			return nil, fmt.Errorf("amqp: declare the delayed-delivery relay to exchange %q with routing key %q: %w", p.Exchange, p.RoutingKey, err)
		}
		err := c.Bind(ctx, transport.Binding{Source: o.deliveryExchange(), Destination: relay, RoutingKey: "#." + relay})
		if err != nil {
			return nil, err
		}
		if c.delay.relays == nil {
			c.delay.relays = map[string]struct{}{}
		}
		c.delay.relays[relay] = struct{}{}
	}
	q := *p
	q.Delay = 0
	// The delay runs from the call: the declarations took some of it.
	left := p.Delay - time.Since(start)
	if left <= 0 {
		return &q, nil // due already: published as it is
	}
	q.Exchange = o.levelName(delayLevels - 1)
	q.RoutingKey = delayedRoutingKey(delaySeconds(left), relay)
	return &q, nil
}

// forgetDelayed makes the next delayed publish declare everything again,
// after one failed: someone may have deleted part of the topology.
func (c *conn) forgetDelayed() {
	c.delay.mu.Lock()
	defer c.delay.mu.Unlock()
	c.delay.declared = false
	c.delay.relays = nil
}

// publishDelayed publishes p, which has a Delay, through the topology.
func (c *conn) publishDelayed(ctx context.Context, p *transport.Publishing) error {
	q, err := c.delayed(ctx, p)
	if err != nil {
		return err
	}
	if err := c.Publish(ctx, q); err != nil {
		c.forgetDelayed()
		return fmt.Errorf("amqp: delayed %s: %w", describePublish(p), err)
	}
	return nil
}

// publishBatchDelayed publishes a batch holding delayed messages: each
// in its place in the topology. A message that cannot be prepared fails the
// whole batch before anything is published.
func (c *conn) publishBatchDelayed(ctx context.Context, ps []*transport.Publishing) error {
	out := slices.Clone(ps)
	for i, p := range ps {
		if p.Delay <= 0 {
			continue
		}
		q, err := c.delayed(ctx, p)
		if err != nil {
			return fmt.Errorf("amqp: message %d of %d in the batch: %w; nothing was published", i, len(ps), err)
		}
		out[i] = q
	}
	err := c.PublishBatch(ctx, out)
	if err != nil {
		c.forgetDelayed()
	}
	return err
}
