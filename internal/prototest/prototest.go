// Package prototest gives codec tests a proto message with a field of every
// kind a serializer maps differently (64-bit integers signed and unsigned,
// an enum, bytes, a repeated field, maps, floats, a nested message and
// well-known types), without generated code: the message is a dynamicpb
// message of a descriptor written below in text form.
package prototest

import (
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// invoiceProto is, as a FileDescriptorProto:
//
//	syntax = "proto3";
//	package prototest;
//	import "google/protobuf/timestamp.proto";
//	import "google/protobuf/wrappers.proto";
//	message Invoice {
//	  enum Status { STATUS_UNSPECIFIED = 0; STATUS_ISSUED = 1; STATUS_PAID = 2; }
//	  string invoice_id = 1;
//	  int64 amount_cents = 2;
//	  uint64 sequence = 3;
//	  Status status = 4;
//	  bytes signature = 5;
//	  repeated int64 line_cents = 6;
//	  map<string, int64> tax_cents = 7;
//	  sint64 adjustment_cents = 8;
//	  fixed64 ledger = 9;
//	  double rate = 10;
//	  float discount = 11;
//	  Line first_line = 12;
//	  google.protobuf.Timestamp issued = 13;
//	  google.protobuf.Int64Value balance_cents = 14;
//	  map<int32, string> notes = 15;
//	}
//	message Line { string sku = 1; int64 cents = 2; }
const invoiceProto = `
name: "prototest/invoice.proto"
package: "prototest"
syntax: "proto3"
dependency: "google/protobuf/timestamp.proto"
dependency: "google/protobuf/wrappers.proto"
message_type {
  name: "Invoice"
  field { name: "invoice_id" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "invoiceId" }
  field { name: "amount_cents" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 json_name: "amountCents" }
  field { name: "sequence" number: 3 label: LABEL_OPTIONAL type: TYPE_UINT64 json_name: "sequence" }
  field { name: "status" number: 4 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".prototest.Invoice.Status" json_name: "status" }
  field { name: "signature" number: 5 label: LABEL_OPTIONAL type: TYPE_BYTES json_name: "signature" }
  field { name: "line_cents" number: 6 label: LABEL_REPEATED type: TYPE_INT64 json_name: "lineCents" }
  field { name: "tax_cents" number: 7 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".prototest.Invoice.TaxCentsEntry" json_name: "taxCents" }
  field { name: "adjustment_cents" number: 8 label: LABEL_OPTIONAL type: TYPE_SINT64 json_name: "adjustmentCents" }
  field { name: "ledger" number: 9 label: LABEL_OPTIONAL type: TYPE_FIXED64 json_name: "ledger" }
  field { name: "rate" number: 10 label: LABEL_OPTIONAL type: TYPE_DOUBLE json_name: "rate" }
  field { name: "discount" number: 11 label: LABEL_OPTIONAL type: TYPE_FLOAT json_name: "discount" }
  field { name: "first_line" number: 12 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".prototest.Line" json_name: "firstLine" }
  field { name: "issued" number: 13 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" json_name: "issued" }
  field { name: "balance_cents" number: 14 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Int64Value" json_name: "balanceCents" }
  field { name: "notes" number: 15 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".prototest.Invoice.NotesEntry" json_name: "notes" }
  nested_type {
    name: "TaxCentsEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "key" }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 json_name: "value" }
    options { map_entry: true }
  }
  nested_type {
    name: "NotesEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 json_name: "key" }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "value" }
    options { map_entry: true }
  }
  enum_type {
    name: "Status"
    value { name: "STATUS_UNSPECIFIED" number: 0 }
    value { name: "STATUS_ISSUED" number: 1 }
    value { name: "STATUS_PAID" number: 2 }
  }
}
message_type {
  name: "Line"
  field { name: "sku" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "sku" }
  field { name: "cents" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 json_name: "cents" }
}
`

// InvoiceDescriptor is the Invoice message's descriptor.
var InvoiceDescriptor = func() protoreflect.MessageDescriptor {
	var fdp descriptorpb.FileDescriptorProto
	if err := prototext.Unmarshal([]byte(invoiceProto), &fdp); err != nil {
		panic(err)
	}
	// The well-known types' Go packages register their files.
	_ = timestamppb.Timestamp{}
	_ = wrapperspb.Int64Value{}
	fd, err := protodesc.NewFile(&fdp, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	return fd.Messages().ByName("Invoice")
}()

// NewInvoice returns an empty Invoice.
func NewInvoice() *dynamicpb.Message { return dynamicpb.NewMessage(InvoiceDescriptor) }

// Invoice returns an Invoice with every field set, to values a float64
// cannot hold exactly where the field allows it, and the JSON the json
// serializer writes for it.
func Invoice() (*dynamicpb.Message, string) {
	m := NewInvoice()
	fields := InvoiceDescriptor.Fields()
	set := func(name string, v protoreflect.Value) { m.Set(fields.ByName(protoreflect.Name(name)), v) }
	set("invoice_id", protoreflect.ValueOfString("INV-1"))
	set("amount_cents", protoreflect.ValueOfInt64(9007199254740993)) // 2^53 + 1
	set("sequence", protoreflect.ValueOfUint64(18446744073709551615))
	set("status", protoreflect.ValueOfEnum(1))
	set("signature", protoreflect.ValueOfBytes([]byte{0, 0xff, 'k'}))
	lines := m.Mutable(fields.ByName("line_cents")).List()
	lines.Append(protoreflect.ValueOfInt64(-1))
	lines.Append(protoreflect.ValueOfInt64(1 << 62))
	taxes := m.Mutable(fields.ByName("tax_cents")).Map()
	taxes.Set(protoreflect.ValueOfString("vat").MapKey(), protoreflect.ValueOfInt64(2100))
	set("adjustment_cents", protoreflect.ValueOfInt64(-9223372036854775808))
	set("ledger", protoreflect.ValueOfUint64(1<<63))
	set("rate", protoreflect.ValueOfFloat64(2))
	set("discount", protoreflect.ValueOfFloat32(0.5))
	line := dynamicpb.NewMessage(fields.ByName("first_line").Message())
	line.Set(line.Descriptor().Fields().ByName("sku"), protoreflect.ValueOfString("tea"))
	line.Set(line.Descriptor().Fields().ByName("cents"), protoreflect.ValueOfInt64(-5000000000))
	set("first_line", protoreflect.ValueOfMessage(line))
	set("issued", protoreflect.ValueOfMessage(timestamppb.New(issued).ProtoReflect()))
	set("balance_cents", protoreflect.ValueOfMessage(wrapperspb.Int64(-9007199254740993).ProtoReflect()))
	notes := m.Mutable(fields.ByName("notes")).Map()
	notes.Set(protoreflect.ValueOfInt32(7).MapKey(), protoreflect.ValueOfString("seven"))
	return m, invoiceJSON
}

var issued = time.Date(2024, 3, 1, 10, 0, 0, 250_000_000, time.UTC)

const invoiceJSON = `{"invoice_id":"INV-1","amount_cents":9007199254740993,"sequence":18446744073709551615,` +
	`"status":"STATUS_ISSUED","signature":"AP9r","line_cents":[-1,4611686018427387904],"tax_cents":{"vat":2100},` +
	`"adjustment_cents":-9223372036854775808,"ledger":9223372036854775808,"rate":2.0,"discount":0.5,` +
	`"first_line":{"sku":"tea","cents":-5000000000},"issued":"2024-03-01T10:00:00.250Z",` +
	`"balance_cents":-9007199254740993,"notes":{"7":"seven"}}`
