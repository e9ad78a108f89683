package interop_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kombu-go/kombu/internal/prototest"
	kombu "github.com/kombu-go/kombu/runtime"
)

// A proto message published with json, msgpack or yaml reaches a Python
// Kombu consumer as the dict Python would have written: 64-bit integers as
// int (not str), floats as float, enums by name, bytes as base64 text, maps
// as dicts, nested messages as dicts, Timestamp as its RFC 3339 string.
func TestProtoDictsPythonReads(t *testing.T) {
	url, conn := codecConn(t, "yaml", "msgpack")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv, wantJSON := prototest.Invoice()
	p := kombu.NewProducer(conn, kombu.WithRoutingKey(codecQueue))
	serializers := []string{"json", "msgpack", "yaml"}
	for _, s := range serializers {
		if err := p.Publish(ctx, inv, kombu.WithSerializer(s)); err != nil {
			t.Fatal(err)
		}
	}
	msgs := pyConsumeTyped(t, url, len(serializers), "json,msgpack,yaml")
	want := map[string]any{
		"invoice_id":       []any{"str", "INV-1"},
		"amount_cents":     []any{"int", "9007199254740993"},
		"sequence":         []any{"int", "18446744073709551615"},
		"status":           []any{"str", "STATUS_ISSUED"},
		"signature":        []any{"str", "AP9r"},
		"line_cents":       []any{[]any{"int", "-1"}, []any{"int", "4611686018427387904"}},
		"tax_cents":        map[string]any{"vat": []any{"int", "2100"}},
		"adjustment_cents": []any{"int", "-9223372036854775808"},
		"ledger":           []any{"int", "9223372036854775808"},
		"rate":             []any{"float", "2.0"},
		"discount":         []any{"float", "0.5"},
		"first_line":       map[string]any{"sku": []any{"str", "tea"}, "cents": []any{"int", "-5000000000"}},
		"issued":           []any{"str", "2024-03-01T10:00:00.250Z"},
		"balance_cents":    []any{"int", "-9007199254740993"},
		"notes":            map[string]any{"7": []any{"str", "seven"}},
	}
	for i, s := range serializers {
		var got map[string]any
		if err := json.Unmarshal(msgs[i].PyTypes, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s (%s): Python decoded\n%s", s, msgs[i].ContentType, msgs[i].PyTypes)
		}
	}
	// Kombu's json encoder writes the dict it decoded back byte for byte as
	// kombu-go wrote it.
	if !bytes.Equal(msgs[0].Raw, []byte(wantJSON)) || !bytes.Equal(msgs[0].Reencoded, msgs[0].Raw) {
		t.Errorf("json: kombu-go wrote\n%s\nPython re-encodes\n%s", msgs[0].Raw, msgs[0].Reencoded)
	}
}

// A dict Python publishes, with json, msgpack or yaml, decodes into the proto
// message: integers whatever their size, an enum by name, bytes as base64
// text in JSON and as Python bytes in msgpack and YAML.
func TestProtoDictsPythonWrites(t *testing.T) {
	url, conn := codecConn(t, "yaml", "msgpack")
	dict := func(signature any) map[string]any {
		return map[string]any{
			"invoice_id": "INV-2", "amount_cents": uint64(9007199254740993), "sequence": uint64(math.MaxUint64),
			"status": "STATUS_PAID", "signature": signature, "line_cents": []any{-1, uint64(1) << 62},
			"tax_cents": map[string]any{"vat": 2100}, "rate": 2.5, "first_line": map[string]any{"sku": "tea", "cents": -5000000000},
		}
	}
	pyBytes := map[string]any{"__py__": "bytes", "v": base64.StdEncoding.EncodeToString([]byte{0, 0xff, 'k'})}
	pyRun(t, []map[string]any{
		{"routing_key": codecQueue, "serializer": "json", "body": dict("AP9r")},
		{"routing_key": codecQueue, "serializer": "msgpack", "body": dict(pyBytes)},
		{"routing_key": codecQueue, "serializer": "yaml", "body": dict(pyBytes)},
	}, "publish", url, "--typed")

	want := prototest.NewInvoice()
	fields := prototest.InvoiceDescriptor.Fields()
	set := func(name string, v protoreflect.Value) { want.Set(fields.ByName(protoreflect.Name(name)), v) }
	set("invoice_id", protoreflect.ValueOfString("INV-2"))
	set("amount_cents", protoreflect.ValueOfInt64(9007199254740993))
	set("sequence", protoreflect.ValueOfUint64(math.MaxUint64))
	set("status", protoreflect.ValueOfEnum(2))
	set("signature", protoreflect.ValueOfBytes([]byte{0, 0xff, 'k'}))
	lines := want.Mutable(fields.ByName("line_cents")).List()
	lines.Append(protoreflect.ValueOfInt64(-1))
	lines.Append(protoreflect.ValueOfInt64(1 << 62))
	want.Mutable(fields.ByName("tax_cents")).Map().Set(protoreflect.ValueOfString("vat").MapKey(), protoreflect.ValueOfInt64(2100))
	set("rate", protoreflect.ValueOfFloat64(2.5))
	line := want.Mutable(fields.ByName("first_line")).Message()
	line.Set(line.Descriptor().Fields().ByName("sku"), protoreflect.ValueOfString("tea"))
	line.Set(line.Descriptor().Fields().ByName("cents"), protoreflect.ValueOfInt64(-5000000000))

	for _, s := range []string{"json", "msgpack", "yaml"} {
		msg := goGet(t, conn)
		got := prototest.NewInvoice()
		if err := msg.Decode(got); err != nil {
			t.Errorf("%s (%s): %v\n%s", s, msg.Properties.ContentType, err, msg.Body)
			continue
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: decoded %v\nwant %v", s, got, want)
		}
	}
}
