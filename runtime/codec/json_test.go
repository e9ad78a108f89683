package codec

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/kombu-go/kombu/runtime/pytypes"
)

// The envelopes below are written as Kombu 5.3+ writes them
// (kombu/utils/json.py: _as(t, v) = {"__type__": t, "__value__": v};
// datetime.isoformat, date.isoformat, time.isoformat, str(Decimal),
// {"hex": uuid.hex}, bytes as UTF-8 text or base64), without Python's
// spaces after ":" and ",".

func TestJSONEnvelopesEncodeAsKombu(t *testing.T) {
	utc := time.Date(2024, 3, 1, 10, 0, 0, 250_000_999, time.UTC)
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"aware datetime", utc, `{"__type__":"datetime","__value__":"2024-03-01T10:00:00.250000+00:00"}`},
		{"whole seconds", time.Date(2024, 3, 1, 10, 0, 0, 0, time.FixedZone("", -(5*3600+30*60))),
			`{"__type__":"datetime","__value__":"2024-03-01T10:00:00-05:30"}`},
		{"offset seconds", time.Date(1900, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", 3600+7)),
			`{"__type__":"datetime","__value__":"1900-01-01T00:00:00+01:00:07"}`},
		{"naive datetime", pytypes.Naive(time.Date(2024, 3, 1, 10, 0, 0, 5000, time.UTC)),
			`{"__type__":"datetime","__value__":"2024-03-01T10:00:00.000005"}`},
		{"small year", time.Date(33, 1, 2, 0, 0, 0, 0, time.UTC), `{"__type__":"datetime","__value__":"0033-01-02T00:00:00+00:00"}`},
		{"date", pytypes.Date{Year: 2024, Month: 2, Day: 29}, `{"__type__":"date","__value__":"2024-02-29"}`},
		{"zero date", pytypes.Date{}, `null`},
		{"time", pytypes.TimeOfDay{Hour: 23, Minute: 59, Second: 58, Nanosecond: 1000}, `{"__type__":"time","__value__":"23:59:58.000001"}`},
		{"aware time", pytypes.TimeOfDay{Hour: 8, Offset: 7200, HasOffset: true}, `{"__type__":"time","__value__":"08:00:00+02:00"}`},
		{"decimal", pytypes.Decimal("12.50"), `{"__type__":"decimal","__value__":"12.50"}`},
		{"decimal exponent", pytypes.Decimal("-1E+3"), `{"__type__":"decimal","__value__":"-1E+3"}`},
		{"decimal nan", pytypes.Decimal("NaN"), `{"__type__":"decimal","__value__":"NaN"}`},
		{"uuid", mustUUID(t, "12345678-1234-5678-1234-567812345678"),
			`{"__type__":"uuid","__value__":{"hex":"12345678123456781234567812345678"}}`},
		{"utf-8 bytes", []byte("héllo"), `{"__type__":"bytes","__value__":"héllo"}`},
		{"binary bytes", []byte{0xff, 0x00, 0x80}, `{"__type__":"base64","__value__":"/wCA"}`},
		{"empty bytes", []byte{}, `{"__type__":"bytes","__value__":""}`},
		{"nil bytes", []byte(nil), `null`},
		{"no HTML escaping", "<a & b>", `"<a & b>"`},
		{"nested", map[string]any{"at": []any{utc}, "raw": json.RawMessage(`[1]`)},
			`{"at":[{"__type__":"datetime","__value__":"2024-03-01T10:00:00.250000+00:00"}],"raw":[1]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JSON{}.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestJSONEnvelopesInStructs(t *testing.T) {
	type order struct {
		ID      pytypes.UUID      `json:"id"`
		Placed  time.Time         `json:"placed"`
		Shipped *time.Time        `json:"shipped,omitempty"`
		Due     pytypes.Date      `json:"due"`
		Cutoff  pytypes.TimeOfDay `json:"cutoff"`
		Total   pytypes.Decimal   `json:"total"`
		Blob    []byte            `json:"blob"`
		Note    string            `json:"note"`
	}
	in := order{
		ID:     mustUUID(t, "0f8fad5b-d9cb-469f-a165-70867728950e"),
		Placed: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC),
		Due:    pytypes.Date{Year: 2024, Month: 3, Day: 15},
		Cutoff: pytypes.TimeOfDay{Hour: 17},
		Total:  "99.90",
		Blob:   []byte{1, 2, 0xfe},
		Note:   "ok",
	}
	data, err := JSON{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":{"__type__":"uuid","__value__":{"hex":"0f8fad5bd9cb469fa16570867728950e"}},` +
		`"placed":{"__type__":"datetime","__value__":"2024-03-01T10:00:00+00:00"},` +
		`"due":{"__type__":"date","__value__":"2024-03-15"},` +
		`"cutoff":{"__type__":"time","__value__":"17:00:00"},` +
		`"total":{"__type__":"decimal","__value__":"99.90"},` +
		`"blob":{"__type__":"base64","__value__":"AQL+"},"note":"ok"}`
	if string(data) != want {
		t.Fatalf("got  %s\nwant %s", data, want)
	}
	var out order
	if err := (JSON{}).Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}

	// Kombu 5.2 and older wrote plain strings; struct fields read them too.
	old := `{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","placed":"2024-03-01T10:00:00Z",` +
		`"due":"2024-03-15","cutoff":"17:00:00","total":"99.90","blob":"AQL+","note":"ok"}`
	out = order{}
	if err := (JSON{}).Unmarshal([]byte(old), &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("plain strings:\n got %+v\nwant %+v", out, in)
	}
	// A JSON number is a fine Decimal.
	var d struct{ Total pytypes.Decimal }
	if err := (JSON{}).Unmarshal([]byte(`{"Total": 12.5e3}`), &d); err != nil || d.Total != "12.5e3" {
		t.Fatalf("number into Decimal: %q %v", d.Total, err)
	}
}

func TestJSONEnvelopesDecodeIntoAny(t *testing.T) {
	// As Python's kombu.utils.json.dumps (5.3+) writes them.
	body := `{"when": {"__type__": "datetime", "__value__": "2024-03-01T10:00:00.250000+00:00"},` +
		` "naive": {"__type__": "datetime", "__value__": "2024-03-01T10:00:00"},` +
		` "day": {"__type__": "date", "__value__": "2024-03-01"},` +
		` "at": {"__type__": "time", "__value__": "10:30:00.000250"},` +
		` "price": {"__type__": "decimal", "__value__": "19.99"},` +
		` "id": {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678"}},` +
		` "old_id": {"__type__": "uuid", "__value__": {"hex": "12345678123456781234567812345678", "version": 4}},` +
		` "text": {"__type__": "bytes", "__value__": "h\u00e9"},` +
		` "bin": {"__type__": "base64", "__value__": "/wCA"},` +
		` "list": [{"__type__": "decimal", "__value__": "1"}],` +
		` "not_an_envelope": {"__type__": "x", "__value__": 1, "more": true}}`
	var got map[string]any
	if err := (JSON{}).Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"when":   time.Date(2024, 3, 1, 10, 0, 0, 250_000_000, time.UTC),
		"naive":  pytypes.Naive(time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)),
		"day":    pytypes.Date{Year: 2024, Month: 3, Day: 1},
		"at":     pytypes.TimeOfDay{Hour: 10, Minute: 30, Nanosecond: 250_000},
		"price":  pytypes.Decimal("19.99"),
		"id":     mustUUID(t, "12345678-1234-5678-1234-567812345678"),
		"old_id": mustUUID(t, "12345678-1234-4678-9234-567812345678"), // UUID(hex, version=4) stamps the bits
		"text":   []byte("hé"),
		"bin":    []byte{0xff, 0, 0x80},
		"list":   []any{pytypes.Decimal("1")},
		"not_an_envelope": map[string]any{
			"__type__": "x", "__value__": float64(1), "more": true,
		},
	}
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("%s: got %#v, want %#v", k, got[k], want[k])
			}
		}
	}
	if !pytypes.IsNaive(got["naive"].(time.Time)) || pytypes.IsNaive(got["when"].(time.Time)) {
		t.Error("naive and aware datetimes not told apart")
	}
	// Re-encoding gives Kombu's envelopes back.
	again, err := JSON{}.Marshal(got["naive"])
	if err != nil || string(again) != `{"__type__":"datetime","__value__":"2024-03-01T10:00:00"}` {
		t.Errorf("naive re-encoded as %s %v", again, err)
	}
}

func TestJSONIntoAnyHoldingAPointer(t *testing.T) {
	// As encoding/json: an any holding a pointer decodes into its target.
	type target struct{ When time.Time }
	var v any = &target{}
	if err := (JSON{}).Unmarshal([]byte(`{"When": {"__type__": "datetime", "__value__": "2024-03-01T10:00:00"}}`), &v); err != nil {
		t.Fatal(err)
	}
	if tt, ok := v.(*target); !ok || tt.When.Hour() != 10 {
		t.Fatalf("got %#v", v)
	}
}

func TestJSONEnvelopeErrors(t *testing.T) {
	for _, body := range []string{
		`{"__type__": "pickle", "__value__": "x"}`,        // unknown type: Kombu raises too
		`{"__type__": 1, "__value__": "x"}`,               // type not a string
		`{"__type__": "datetime", "__value__": 5}`,        // value not a string
		`{"__type__": "datetime", "__value__": "soon"}`,   // unparsable
		`{"__type__": "date", "__value__": "2023-02-29"}`, // no such date
		`{"__type__": "time", "__value__": "24:00:00"}`,
		`{"__type__": "decimal", "__value__": "1.2.3"}`,
		`{"__type__": "uuid", "__value__": "123"}`,
		`{"__type__": "uuid", "__value__": {"hex": "xyz"}}`,
		`{"__type__": "uuid", "__value__": {"int": 5}}`,
		`{"__type__": "base64", "__value__": "!!"}`,
		`[1, {"__type__": "nope", "__value__": 0}]`,
		"{\"a\": \"\xff\"}", // invalid UTF-8: Kombu fails to decode it too
	} {
		var v any
		if err := (JSON{}).Unmarshal([]byte(body), &v); err == nil {
			t.Errorf("%s decoded to %#v without error", body, v)
		}
	}
	var tm time.Time
	if err := (JSON{}).Unmarshal([]byte(`{"__type__": "decimal", "__value__": "1"}`), &tm); err == nil {
		t.Error("decimal envelope decoded into a time.Time")
	}
	for _, bad := range []any{pytypes.Date{Year: 2023, Month: 2, Day: 29}, pytypes.TimeOfDay{Hour: 25}, pytypes.Decimal("abc"), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if b, err := (JSON{}).Marshal(bad); err == nil {
			t.Errorf("%#v encoded as %s", bad, b)
		}
	}
}

func TestJSONDepthIsBounded(t *testing.T) {
	deep := bytes.Repeat([]byte("["), 1<<20)
	var v any
	start := time.Now()
	err := JSON{}.Unmarshal(deep, &v)
	if err == nil {
		t.Fatal("a megabyte of [ decoded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	// Objects recurse through the envelope hook: bounded as well.
	deep = bytes.Repeat([]byte(`{"a":`), 20000)
	if err := (JSON{}).Unmarshal(deep, &v); err == nil {
		t.Fatal("20000 nested objects decoded")
	}
}

func mustUUID(t testing.TB, s string) pytypes.UUID {
	t.Helper()
	u, err := pytypes.ParseUUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
