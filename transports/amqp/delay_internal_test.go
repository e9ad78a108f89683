package amqp

import (
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Kombu 5.5's calculate_routing_key: the countdown's 28 binary digits, each
// a word, then the routing key.
func TestDelayedRoutingKey(t *testing.T) {
	for _, tc := range []struct {
		seconds int64
		want    string
	}{
		{1, strings.Repeat("0.", 27) + "1.rk"},
		{2, strings.Repeat("0.", 26) + "1.0.rk"},
		{3 * 24 * 3600, "0.0.0.0.0.0.0.0.0.0.1.1.1.1.1.1.0.1.0.0.1.0.0.0.0.0.0.0.rk"}, // three days: 259200 s, as Python formats it
		{1<<28 - 1, strings.Repeat("1.", 28) + "rk"},
	} {
		if got := delayedRoutingKey(tc.seconds, "rk"); got != tc.want {
			t.Errorf("%d s: %q, want %q", tc.seconds, got, tc.want)
		}
	}
}

func TestDelaySeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{time.Millisecond, 1}, {time.Second, 1}, {time.Second + time.Nanosecond, 2},
		{1500 * time.Millisecond, 2}, {72 * time.Hour, 259200}, {transport.MaxDelay, 1<<28 - 1},
	} {
		if got := delaySeconds(tc.d); got != tc.want {
			t.Errorf("delaySeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// The names and arguments of Kombu's topology, with and without Kombu
// main's prefix.
func TestDelayNames(t *testing.T) {
	o := defaultDelayOptions()
	if o.queueType != "quorum" || o.levelName(27) != "celery_delayed_27" || o.deliveryExchange() != "celery_delayed_delivery" {
		t.Errorf("defaults: %+v %s %s", o, o.levelName(27), o.deliveryExchange())
	}
	q := o.levelQueue(0)
	if q.Arguments["x-dead-letter-exchange"] != "celery_delayed_delivery" || q.Arguments["x-message-ttl"] != int64(1000) ||
		q.Arguments["x-dead-letter-strategy"] != "at-least-once" || !q.Durable {
		t.Errorf("level 0: %+v", q)
	}
	if q := o.levelQueue(27); q.Arguments["x-dead-letter-exchange"] != "celery_delayed_26" || q.Arguments["x-message-ttl"] != int64(1<<27)*1000 {
		t.Errorf("level 27: %+v", q)
	}
	if k := levelBindingKey(27, "1"); k != "1.#" {
		t.Errorf("level 27's queue binding %q", k)
	}
	if k := levelBindingKey(0, "0"); k != strings.Repeat("*.", 27)+"0.#" {
		t.Errorf("level 0 to the delivery exchange %q", k)
	}
	o = delayOptions{queueType: "classic", prefix: "app"}
	if o.levelName(3) != "app_celery_delayed_3" || o.deliveryExchange() != "app_celery_delayed_delivery" {
		t.Errorf("prefixed: %s %s", o.levelName(3), o.deliveryExchange())
	}
	if _, ok := o.levelQueue(3).Arguments["x-dead-letter-strategy"]; ok {
		t.Error("a classic queue has no x-dead-letter-strategy")
	}
	r := o.relayName("orders", "order.placed")
	if !strings.HasPrefix(r, "app_kombu_delayed_relay_") || strings.ContainsAny(r, ".*#") || r == o.relayName("orders", "order.paid") {
		t.Errorf("relay name %q", r)
	}
}

func TestDelayURLOptions(t *testing.T) {
	o, err := parseOptions(mustParse(t, "amqp://h//?native_delayed_delivery_queue_type=classic&native_delayed_delivery_prefix=app"), transport.Config{})
	if err != nil || o.delay.queueType != "classic" || o.delay.prefix != "app" {
		t.Fatalf("%+v %v", o, err)
	}
	for _, bad := range []string{"native_delayed_delivery_queue_type=stream", "native_delayed_delivery_prefix=a.b"} {
		if _, err := parseOptions(mustParse(t, "amqp://h//?"+bad), transport.Config{}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
