package virtual

import (
	"maps"
	"math"
	"strconv"
	"time"
)

// Dead-letter reasons, as RabbitMQ writes them into x-death.
const (
	ReasonRejected = "rejected" // rejected or nacked without requeue
	ReasonExpired  = "expired"  // its TTL ran out
	ReasonMaxLen   = "maxlen"   // dropped from the head of a full queue
)

// Death is one death of a message: where it died and why.
type Death struct {
	Queue  string // the queue it died in
	Reason string // ReasonRejected, ReasonExpired or ReasonMaxLen
	// Exchange and RoutingKey are those the message was published with.
	Exchange   string
	RoutingKey string
	// Expiration is the message's own expiration (0: none), recorded as
	// RabbitMQ records it, as "original-expiration".
	Expiration time.Duration
}

// WithDeath returns a copy of headers with the death recorded in x-death
// as RabbitMQ's rabbit_dead_letter records it, for transports that
// dead-letter messages themselves (the memory broker, Kombu's virtual
// transports, where RabbitMQ's own dead-lettering is emulated).
//
// x-death is a list of tables, the latest death first. A death in the same
// queue, for the same reason, of a message published to the same exchange
// as an earlier entry increments that entry's count and moves it to the
// front; any other is prepended as a new entry with count 1, the time
// (a time.Time in UTC, to the second, as an AMQP timestamp), the exchange,
// the routing keys and, if the message had one, its original expiration.
// x-first-death-reason, -queue and -exchange are set at the first death
// and kept after. The headers given are not changed.
func WithDeath(headers map[string]any, d Death, now time.Time) map[string]any {
	h := make(map[string]any, len(headers)+4)
	maps.Copy(h, headers)
	old, _ := h["x-death"].([]any)
	deaths := make([]any, 1, len(old)+1)
	for _, entry := range old {
		t, _ := entry.(map[string]any)
		if deaths[0] == nil && t != nil && t["queue"] == d.Queue && t["reason"] == d.Reason && t["exchange"] == d.Exchange {
			t = maps.Clone(t)
			n, _ := count(t["count"])
			t["count"] = n + 1
			deaths[0] = t
			continue
		}
		deaths = append(deaths, entry)
	}
	if deaths[0] == nil {
		t := map[string]any{
			"count":        int64(1),
			"reason":       d.Reason,
			"queue":        d.Queue,
			"time":         now.UTC().Truncate(time.Second),
			"exchange":     d.Exchange,
			"routing-keys": []any{d.RoutingKey},
		}
		if d.Expiration > 0 {
			t["original-expiration"] = strconv.FormatInt(d.Expiration.Milliseconds(), 10)
		}
		deaths[0] = t
	}
	h["x-death"] = deaths
	if _, ok := h["x-first-death-reason"]; !ok {
		h["x-first-death-reason"] = d.Reason
		h["x-first-death-queue"] = d.Queue
		h["x-first-death-exchange"] = d.Exchange
	}
	return h
}

// count reads an x-death count, whatever integer type the headers it came
// in hold it as (int64 from JSON and AMQP, int from a hand-made table, a
// whole float from a JSON reader that makes every number one).
func count(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
	case float64:
		if v == math.Trunc(v) && math.Abs(v) <= 1<<53 {
			return int64(v), true
		}
	}
	return 0, false
}

// DeathTimes turns the time of each x-death entry, stored as an ISO 8601
// string (a JSON envelope has no timestamp type), back into the time.Time
// that RabbitMQ's and the memory broker's x-death carry, so that a consumer
// reads one type on every transport. A time in Kombu 5.3's JSON envelope
// for datetimes ({"__type__": "datetime", "__value__": ...}), or naive
// (UTC, as Python's isoformat() writes it without a time zone), is read
// too; anything else is left as it is. Written again (AppendPyValue), the
// time takes the form WithDeath's entries are stored in. DeathTimes changes
// h in place and returns it.
func DeathTimes(h map[string]any) map[string]any {
	deaths, _ := h["x-death"].([]any)
	for _, d := range deaths {
		entry, ok := d.(map[string]any)
		if !ok {
			continue
		}
		raw := entry["time"]
		if env, ok := raw.(map[string]any); ok && env["__type__"] == "datetime" {
			raw = env["__value__"]
		}
		if s, ok := raw.(string); ok {
			if t, ok := parseISOTime(s); ok {
				entry["time"] = t
			}
		}
	}
	return h
}
