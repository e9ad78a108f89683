package codec

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kombu-go/kombu/internal/prototest"
)

// The json serializer writes a proto message as the dict Python writes:
// 64-bit integers as numbers, floats with a decimal point, enums by name,
// bytes in base64.
func TestJSONProtoDict(t *testing.T) {
	s := JSON{}
	inv, want := prototest.Invoice()
	got, err := s.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("json wrote\n%s\nwant\n%s", got, want)
	}
	back := prototest.NewInvoice()
	if err := s.Unmarshal(got, back); err != nil || !proto.Equal(back, inv) {
		t.Errorf("decoded %v (%v), want %v", back, err, inv)
	}
}

// Decoding accepts protojson's forms too: 64-bit integers as strings,
// lowerCamelCase names, enums by number.
func TestJSONProtoDictDecodesProtojson(t *testing.T) {
	s := JSON{}
	inv, _ := prototest.Invoice()
	canonical, err := protojson.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(canonical), `"amountCents":"9007199254740993"`) &&
		!strings.Contains(string(canonical), `"amountCents": "9007199254740993"`) {
		t.Fatalf("protojson wrote %s: not the form this test means to read", canonical)
	}
	back := prototest.NewInvoice()
	if err := s.Unmarshal(canonical, back); err != nil || !proto.Equal(back, inv) {
		t.Errorf("decoded %v (%v), want %v", back, err, inv)
	}
	byNumber := prototest.NewInvoice()
	if err := s.Unmarshal([]byte(`{"status":2,"amount_cents":"-1"}`), byNumber); err != nil {
		t.Fatal(err)
	}
	fields := prototest.InvoiceDescriptor.Fields()
	if st, cents := byNumber.Get(fields.ByName("status")).Enum(), byNumber.Get(fields.ByName("amount_cents")).Int(); st != 2 || cents != -1 {
		t.Errorf("status %d, amount_cents %d; want 2, -1", st, cents)
	}
}

// Inside an Any, the held message's 64-bit integers are numbers too; a
// wrapper held in an Any keeps protojson's "value".
func TestJSONProtoDictAny(t *testing.T) {
	inv, _ := prototest.Invoice()
	fields := prototest.InvoiceDescriptor.Fields()
	small := prototest.NewInvoice()
	small.Set(fields.ByName("amount_cents"), inv.Get(fields.ByName("amount_cents")))
	for _, tc := range []struct {
		held proto.Message
		want string
	}{
		{wrapperspb.UInt64(math.MaxUint64), `{"@type":"type.googleapis.com/google.protobuf.UInt64Value","value":18446744073709551615}`},
		{wrapperspb.Double(3), `{"@type":"type.googleapis.com/google.protobuf.DoubleValue","value":3.0}`},
	} {
		a, err := anypb.New(tc.held)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalProtoDict(a)
		if err != nil || string(got) != tc.want {
			t.Errorf("Any of %T: %s (%v), want %s", tc.held, got, err, tc.want)
		}
	}
}

// msgpack and yaml carry the same dict, with Python's types: integers,
// floats, base64 text.
func TestProtoDictInMsgpackAndYAML(t *testing.T) {
	inv, _ := prototest.Invoice()
	for _, s := range []serializer{Msgpack{}, YAML{}} {
		name := s.Name()
		data, err := s.Marshal(inv)
		if err != nil {
			t.Fatal(err)
		}
		var dict map[string]any
		if err := s.Unmarshal(data, &dict); err != nil {
			t.Fatal(err)
		}
		for field, want := range map[string]any{
			"amount_cents": int64(9007199254740993), "sequence": uint64(math.MaxUint64),
			"status": "STATUS_ISSUED", "signature": "AP9r", "rate": 2.0,
			"adjustment_cents": int64(math.MinInt64), "ledger": uint64(1 << 63),
		} {
			got := dict[field]
			if name == "yaml" {
				got = yamlNumber(got)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s is %#v, want %#v", name, field, dict[field], want)
			}
		}
		back := prototest.NewInvoice()
		if err := s.Unmarshal(data, back); err != nil || !proto.Equal(back, inv) {
			t.Errorf("%s: decoded %v (%v), want %v", name, back, err, inv)
		}
	}
}

// yamlNumber gives a YAML integer decoded into any the type msgpack gives
// it, so both serializers' dicts compare with one table.
func yamlNumber(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case uint:
		return uint64(n)
	}
	return v
}

// Python's msgpack and YAML have a binary type; a bytes field they send
// decodes as well as the base64 text kombu-go sends.
func TestProtoDictBytesFromPython(t *testing.T) {
	sig := prototest.InvoiceDescriptor.Fields().ByName("signature")
	serializers := map[string]serializer{"msgpack": Msgpack{}, "yaml": YAML{}}
	for name, body := range map[string][]byte{
		"msgpack": {0x81, 0xa9, 's', 'i', 'g', 'n', 'a', 't', 'u', 'r', 'e', 0xc4, 0x03, 0x00, 0xff, 'k'}, // {"signature": b"\x00\xffk"}
		"yaml":    []byte("signature: !!binary |\n  AP9r\n"),                                              // yaml.safe_dump({"signature": b"\x00\xffk"})
	} {
		s := serializers[name]
		m := prototest.NewInvoice()
		if err := s.Unmarshal(body, m); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := m.Get(sig).Bytes(); string(got) != "\x00\xffk" {
			t.Errorf("%s: signature %x, want 00ff6b", name, got)
		}
	}
}
