package virtual

import (
	"slices"
	"testing"
	"time"
)

// An x-death time comes back a time.Time, as on RabbitMQ and memory://,
// from each form a JSON envelope may hold it in; and a dead letter written
// again keeps the stored form byte for byte.
func TestDeathTimesReadAsTime(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for stored, want := range map[string]time.Time{
		`"2024-05-06T07:08:09Z"`:      at, // as kombu-go and Kombu's JSON encoder write it
		`"2024-05-06T09:08:09+02:00"`: at,
		`"2024-05-06T07:08:09"`:       at, // Python's isoformat() of a naive UTC time
		`"2024-05-06T07:08:09.5Z"`:    at.Add(500 * time.Millisecond),
		`{"__type__": "datetime", "__value__": "2024-05-06T07:08:09+00:00"}`: at, // Kombu 5.3's envelope
	} {
		h, err := decodeHeaders([]byte(`{"x-death": [{"count": 1, "time": ` + stored + `}], "time": "2024-05-06T07:08:09Z"}`))
		if err != nil {
			t.Fatal(err)
		}
		h = DeathTimes(h)
		got, ok := h["x-death"].([]any)[0].(map[string]any)["time"].(time.Time)
		if !ok || !got.Equal(want) {
			t.Errorf("stored %s: x-death time %#v, want %v", stored, h["x-death"], want)
		}
		if _, ok := h["time"].(string); !ok {
			t.Errorf("a header outside x-death changed type: %#v", h["time"])
		}
	}
	h, _ := decodeHeaders([]byte(`{"x-death": [{"time": "yesterday"}, "not a table"]}`))
	if got := DeathTimes(h)["x-death"].([]any)[0].(map[string]any)["time"]; got != "yesterday" {
		t.Errorf("an unreadable time became %#v, want it left as it is", got)
	}

	first, err := appendPyMap(nil, WithDeath(nil, Death{Queue: "work", Reason: ReasonRejected, Exchange: "ex", RoutingKey: "rk"}, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	h, err = decodeHeaders(first)
	if err != nil {
		t.Fatal(err)
	}
	again, err := appendPyMap(nil, DeathTimes(h))
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(first) {
		t.Errorf("x-death written again differs:\n first %s\n again %s", first, again)
	}
}

// x-death entries are matched as RabbitMQ matches them: by queue, reason
// and exchange. (The Redis transport's copy matched queue and reason only,
// merging deaths of messages published to different exchanges.)
func TestWithDeathMatchesQueueReasonAndExchange(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 500, time.FixedZone("", 3600))
	h := WithDeath(map[string]any{"keep": "me"}, Death{Queue: "work", Reason: ReasonRejected, Exchange: "ex1", RoutingKey: "rk", Expiration: 1500 * time.Millisecond}, at)
	h = WithDeath(h, Death{Queue: "work", Reason: ReasonRejected, Exchange: "ex2", RoutingKey: "rk"}, at)
	h = WithDeath(h, Death{Queue: "work", Reason: ReasonExpired, Exchange: "ex1", RoutingKey: "rk"}, at)
	before := h
	h = WithDeath(h, Death{Queue: "work", Reason: ReasonRejected, Exchange: "ex1", RoutingKey: "rk"}, at)

	deaths := h["x-death"].([]any)
	type key struct {
		exchange, reason string
		count            int64
	}
	var got []key
	for _, d := range deaths {
		e := d.(map[string]any)
		got = append(got, key{e["exchange"].(string), e["reason"].(string), e["count"].(int64)})
	}
	want := []key{{"ex1", ReasonRejected, 2}, {"ex1", ReasonExpired, 1}, {"ex2", ReasonRejected, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("x-death entries %v, want %v", got, want)
	}
	first := deaths[0].(map[string]any)
	if first["time"] != at.UTC().Truncate(time.Second) || first["original-expiration"] != "1500" ||
		!slices.Equal(first["routing-keys"].([]any), []any{"rk"}) {
		t.Errorf("the first entry %v", first)
	}
	if h["x-first-death-exchange"] != "ex1" || h["x-first-death-reason"] != ReasonRejected || h["x-first-death-queue"] != "work" || h["keep"] != "me" {
		t.Errorf("headers %v", h)
	}
	if len(before["x-death"].([]any)) != 3 || before["x-death"].([]any)[2].(map[string]any)["count"] != int64(1) {
		t.Errorf("WithDeath changed the headers it was given: %v", before["x-death"])
	}
	// A count of another integer type, as a hand-made table holds it.
	h = WithDeath(map[string]any{"x-death": []any{map[string]any{"queue": "q", "reason": ReasonExpired, "exchange": "", "count": 3}}},
		Death{Queue: "q", Reason: ReasonExpired}, at)
	if n := h["x-death"].([]any)[0].(map[string]any)["count"]; n != int64(4) {
		t.Errorf("count %#v after an int 3, want 4", n)
	}
}
