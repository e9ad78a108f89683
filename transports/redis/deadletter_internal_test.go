package redis

import (
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
		h = withDeathTimes(h)
		got, ok := h["x-death"].([]any)[0].(map[string]any)["time"].(time.Time)
		if !ok || !got.Equal(want) {
			t.Errorf("stored %s: x-death time %#v, want %v", stored, h["x-death"], want)
		}
		if _, ok := h["time"].(string); !ok {
			t.Errorf("a header outside x-death changed type: %#v", h["time"])
		}
	}
	h, _ := decodeHeaders([]byte(`{"x-death": [{"time": "yesterday"}, "not a table"]}`))
	if got := withDeathTimes(h)["x-death"].([]any)[0].(map[string]any)["time"]; got != "yesterday" {
		t.Errorf("an unreadable time became %#v, want it left as it is", got)
	}

	first, err := appendPyMap(nil, withDeath(nil, "work", reasonRejected, "ex", "rk", 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	h, err = decodeHeaders(first)
	if err != nil {
		t.Fatal(err)
	}
	again, err := appendPyMap(nil, withDeathTimes(h))
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(first) {
		t.Errorf("x-death written again differs:\n first %s\n again %s", first, again)
	}
}
