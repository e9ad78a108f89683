package codec

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/apipb"

	"github.com/kombu-go/kombu/runtime/pytypes"
)

func TestMsgpackAsPythonPacks(t *testing.T) {
	// Bytes as Python's msgpack.packb(..., use_bin_type=True) writes them.
	tests := []struct {
		in   any
		want string
	}{
		{map[string]any{"a": 1}, "81a16101"},
		{int64(-1), "ff"},
		{int64(300), "cd012c"},
		{"é", "a2c3a9"},
		{[]byte{0, 1}, "c4020001"},
		{[]any{nil, true, 1.5}, "93c0c3cb3ff8000000000000"},
	}
	for _, tt := range tests {
		got, err := Msgpack{}.Marshal(tt.in)
		if err != nil || hex.EncodeToString(got) != tt.want {
			t.Errorf("Marshal(%#v) = %x %v, want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestMsgpackDecodesToPythonLikeTypes(t *testing.T) {
	// {"n": 1, "big": 2**64-1, "neg": -200, "f": 0.5, "s": "x", "b": b"\x00", "l": [1]}
	// as packb(use_bin_type=True) writes it.
	body, _ := hex.DecodeString("87a16e01a3626967cfffffffffffffffffa36e6567d1ff38a166cb3fe0000000000000a173a178a162c40100a16c9101")
	var got any
	if err := (Msgpack{}).Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"n": int64(1), "big": uint64(1<<64 - 1), "neg": int64(-200), "f": 0.5, "s": "x", "b": []byte{0}, "l": []any{int64(1)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}

	type item struct {
		Name  string    `json:"name"`
		Count int       `json:"count"`
		When  time.Time `json:"when"`
		Data  []byte    `json:"data"`
	}
	in := item{"x", 3, time.Date(2024, 3, 1, 0, 0, 0, 5, time.UTC), []byte{9}}
	data, err := Msgpack{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("name")) || !bytes.Contains(data, []byte("count")) {
		t.Fatalf("struct not written with its json tags: %x", data)
	}
	var out item
	if err := (Msgpack{}).Unmarshal(data, &out); err != nil || !out.When.Equal(in.When) || out.Name != "x" || out.Count != 3 || !bytes.Equal(out.Data, in.Data) {
		t.Fatalf("round trip: %+v %v", out, err)
	}
}

func TestMsgpackProtoGoesThroughProtojson(t *testing.T) {
	in := &apipb.Method{Name: "Get", RequestStreaming: true, Options: nil}
	data, err := Msgpack{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]any
	if err := (Msgpack{}).Unmarshal(data, &g); err != nil || g["name"] != "Get" || g["request_streaming"] != true {
		t.Fatalf("generic view %v %v", g, err)
	}
	var out apipb.Method
	if err := (Msgpack{}).Unmarshal(data, &out); err != nil || !proto.Equal(in, &out) {
		t.Fatalf("round trip %v %v", &out, err)
	}
	// Integers stay integers, so that Python reads ints.
	data, _ = Msgpack{}.Marshal(&apipb.Api{Name: "a", Syntax: 1})
	if err := (Msgpack{}).Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if g["syntax"] != "SYNTAX_PROTO3" {
		t.Fatalf("enum %#v", g["syntax"])
	}
}

func TestMsgpackRefusesHostileBodies(t *testing.T) {
	for name, body := range map[string]string{
		"extension type":       "d40501",                   // fixext1, type 5
		"ext8 type":            "c7030a010203",             // ext8, type 10
		"timestamp bad length": "d6ff0000",                 // fixext4 of type -1 needs 4 bytes
		"truncated str":        "a5616263",                 // str of 5 with 3 bytes
		"str32 4 GiB":          "dbffffffff61",             // declares 4 GiB
		"array32 4G items":     "ddffffffff01",             // declares 4G items
		"map32 huge":           "dfffffffff",               // declares 4G pairs
		"invalid utf-8 str":    "a1ff",                     // raw=False refuses it in Python
		"reserved byte":        "c1",                       // never used
		"trailing bytes":       "0101",                     // two values
		"empty":                "",                         // nothing
		"int key":              "810102",                   // {1: 2}: map keys must be strings in any
		"truncated float":      "cb3ff0",                   // float64 with 2 bytes
		"bin16 past end":       "c5ffff00",                 // declares 65535 bytes
		"fixmap missing value": "81a161",                   // key without value
		"nested deep":          strings.Repeat("91", 2000), // 2000 levels
	} {
		b, err := hex.DecodeString(body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "nested deep" {
			b = append(b, 0xc0)
		}
		var v any
		if err := (Msgpack{}).Unmarshal(b, &v); err == nil {
			t.Errorf("%s: decoded to %#v", name, v)
		}
	}
	// The timestamp extension is fine.
	ts, _ := Msgpack{}.Marshal(time.Unix(1700000000, 0).UTC())
	var v any
	if err := (Msgpack{}).Unmarshal(ts, &v); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	if tm, ok := v.(time.Time); !ok || tm.Unix() != 1700000000 {
		t.Fatalf("timestamp decoded as %#v", v)
	}
	// 1024 levels are allowed, 1025 are not.
	ok := append(bytes.Repeat([]byte{0x91}, 1023), 0xc0)
	if err := checkMsgpack(ok, maxMsgpackDepth); err != nil {
		t.Fatalf("1023 levels: %v", err)
	}
	if err := checkMsgpack(append(bytes.Repeat([]byte{0x91}, 1025), 0xc0), maxMsgpackDepth); err == nil {
		t.Fatal("1025 levels accepted")
	}
}

func TestMsgpackKombuTypesAreStrings(t *testing.T) {
	type row struct {
		ID    pytypes.UUID      `json:"id"`
		Price pytypes.Decimal   `json:"price"`
		Day   pytypes.Date      `json:"day"`
		At    pytypes.TimeOfDay `json:"at"`
	}
	in := row{mustUUID(t, "12345678-1234-5678-1234-567812345678"), "1.50", pytypes.Date{Year: 2024, Month: 1, Day: 2}, pytypes.TimeOfDay{Hour: 1}}
	data, err := Msgpack{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := (Msgpack{}).Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "12345678-1234-5678-1234-567812345678", "price": "1.50", "day": "2024-01-02", "at": "01:00:00"}
	if !reflect.DeepEqual(generic, want) {
		t.Fatalf("as Python sees it: %#v", generic)
	}
	var out row
	if err := (Msgpack{}).Unmarshal(data, &out); err != nil || out != in {
		t.Fatalf("round trip %+v %v", out, err)
	}
}
