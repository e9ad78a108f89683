package pytypes

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// The JSON methods work with encoding/json as kombu-go's json serializer
// writes and reads the envelopes.
func TestEnvelopesWithEncodingJSON(t *testing.T) {
	type order struct {
		ID     UUID      `json:"id"`
		Due    Date      `json:"due"`
		Cutoff TimeOfDay `json:"cutoff"`
		Total  Decimal   `json:"total"`
	}
	u, _ := ParseUUID("0f8fad5b-d9cb-469f-a165-70867728950e")
	in := order{ID: u, Due: Date{Year: 2024, Month: 3, Day: 15}, Cutoff: TimeOfDay{Hour: 17}, Total: "99.90"}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":{"__type__":"uuid","__value__":{"hex":"0f8fad5bd9cb469fa16570867728950e"}},` +
		`"due":{"__type__":"date","__value__":"2024-03-15"},` +
		`"cutoff":{"__type__":"time","__value__":"17:00:00"},` +
		`"total":{"__type__":"decimal","__value__":"99.90"}}`
	if string(data) != want {
		t.Fatalf("got  %s\nwant %s", data, want)
	}
	var out order
	if err := json.Unmarshal(data, &out); err != nil || out != in {
		t.Fatalf("round trip %+v %v", out, err)
	}
	// Kombu 5.2's plain strings, a datetime envelope for a date, a number
	// for a decimal, and null.
	old := `{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","due":{"__type__":"datetime","__value__":"2024-03-15T23:00:00+05:00"},` +
		`"cutoff":"17:00:00","total":99.90}`
	out = order{}
	if err := json.Unmarshal([]byte(old), &out); err != nil || out != in {
		t.Fatalf("plain strings %+v %v", out, err)
	}
	out.Total = "1"
	if err := json.Unmarshal([]byte(`{"total": null}`), &out); err != nil || out.Total != "1" {
		t.Fatalf("null: %q %v", out.Total, err)
	}
}

func TestEnvelopeErrors(t *testing.T) {
	for body, want := range map[string]error{
		`{"__type__": "pickle", "__value__": "x"}`:        ErrEnvelope,
		`{"__type__": "date", "__value__": "2023-02-29"}`: ErrEnvelope,
		`{"__type__": "decimal", "__value__": "1"}`:       ErrInvalid, // not a date
		`"2023-02-29"`: ErrInvalid,
		`[1]`:          ErrInvalid,
	} {
		var d Date
		if err := json.Unmarshal([]byte(body), &d); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", body, err, want)
		}
	}
	var d Date
	if err := d.UnmarshalJSON([]byte("{")); !errors.Is(err, ErrInvalid) {
		t.Errorf("malformed JSON: %v, want ErrInvalid", err)
	}
	if v, ok, err := FromEnvelope(map[string]any{"__type__": "date", "__value__": "2024-03-01", "more": 1}); ok || err != nil || v != nil {
		t.Errorf("three keys are not an envelope: %v %v %v", v, ok, err)
	}
	v, ok, err := FromEnvelope(map[string]any{"__type__": "datetime", "__value__": "2024-03-01T10:00:00"})
	if tm, isTime := v.(time.Time); !ok || err != nil || !isTime || !IsNaive(tm) {
		t.Errorf("naive datetime envelope: %v %v %v", v, ok, err)
	}
}
