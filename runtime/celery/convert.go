package celery

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kombu-go/kombu/runtime/codec"
)

// ArgMode says how a request message maps to a task's arguments.
type ArgMode int

const (
	// Kwargs: every field is a keyword argument named by its proto field
	// name (Celery's usual call: add.delay(x=1, y=2)).
	Kwargs ArgMode = iota
	// Positional: the fields, in field-number order, are the positional
	// arguments (add.delay(1, 2)).
	Positional
)

// RequestArgs turns a request message into a task's args or kwargs. Every
// field is sent, zero values too (a Python task has no defaults for them),
// but for unset proto3 optional and message fields, which are left out of
// kwargs (the task's default applies) and None in args.
func RequestArgs(m proto.Message, mode ArgMode) (args []json.RawMessage, kwargs map[string]json.RawMessage, err error) {
	rm := m.ProtoReflect()
	fields := rm.Descriptor().Fields()
	if mode == Kwargs {
		kwargs = make(map[string]json.RawMessage, fields.Len())
	} else {
		args = make([]json.RawMessage, 0, fields.Len())
	}
	for _, fd := range orderedFields(rm.Descriptor()) {
		var raw json.RawMessage
		if fd.HasPresence() && !rm.Has(fd) {
			if mode == Kwargs {
				continue
			}
			raw = json.RawMessage("null")
		} else {
			v, err := fieldValue(fd, rm.Get(fd))
			if err != nil {
				return nil, nil, fmt.Errorf("celery: %s.%s: %w", rm.Descriptor().FullName(), fd.Name(), err)
			}
			if raw, err = json.Marshal(v); err != nil {
				return nil, nil, fmt.Errorf("celery: %s.%s: %w", rm.Descriptor().FullName(), fd.Name(), err)
			}
		}
		if mode == Kwargs {
			kwargs[string(fd.Name())] = raw
		} else {
			args = append(args, raw)
		}
	}
	return args, kwargs, nil
}

// orderedFields lists a message's fields in field-number order.
func orderedFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	fs := md.Fields()
	out := make([]protoreflect.FieldDescriptor, fs.Len())
	for i := range out {
		out[i] = fs.Get(i)
	}
	for i := 1; i < len(out); i++ { // insertion sort: messages are small
		for j := i; j > 0 && out[j].Number() < out[j-1].Number(); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// fieldValue is one field's value as Python reads it from JSON: integers
// as numbers (64-bit ones too), enums by name, bytes in base64, messages
// as the dicts of package codec's json serializer.
func fieldValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			e, err := singular(fd, l.Get(i))
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case fd.IsMap():
		out := map[string]any{}
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			var e any
			if e, err = singular(fd.MapValue(), mv); err != nil {
				return false
			}
			out[k.String()] = e
			return true
		})
		return out, err
	}
	return singular(fd, v)
}

func singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return int64(v.Enum()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return v.Int(), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return v.Uint(), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v has no JSON form", f)
		}
		return f, nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		data, err := codec.JSON{}.Marshal(v.Message().Interface())
		if err != nil {
			return nil, err
		}
		return json.RawMessage(data), nil
	}
	return nil, fmt.Errorf("unsupported field kind %v", fd.Kind())
}

// DecodeRequest fills a request message from a task's args and kwargs:
// positional arguments are the fields in field-number order, keyword
// arguments fields by proto name (or JSON name). An argument the message
// has no field for, one given twice, or a value of the wrong type fails
// with ErrArguments, saying which.
func DecodeRequest(r *Request, m proto.Message) error {
	md := m.ProtoReflect().Descriptor()
	fields := orderedFields(md)
	if len(r.Args) > len(fields) {
		return fmt.Errorf("%w: %s takes %d positional arguments but %d were given", ErrArguments, r.Task, len(fields), len(r.Args))
	}
	obj := make(map[string]json.RawMessage, len(r.Args)+len(r.Kwargs))
	for i, a := range r.Args {
		obj[string(fields[i].Name())] = a
	}
	for k, v := range r.Kwargs {
		fd := md.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			fd = md.Fields().ByJSONName(k)
		}
		if fd == nil {
			return fmt.Errorf("%w: %s got an unexpected keyword argument %q", ErrArguments, r.Task, k)
		}
		if _, dup := obj[string(fd.Name())]; dup {
			return fmt.Errorf("%w: %s got multiple values for argument %q", ErrArguments, r.Task, k)
		}
		obj[string(fd.Name())] = v
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrArguments, r.Task, err)
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrArguments, r.Task, err)
	}
	return nil
}

// wrapperValue reports whether a message's JSON form is a scalar or list
// (the wrappers, Value, ListValue): its result is that value itself.
func scalarJSON(md protoreflect.MessageDescriptor) bool {
	if md.ParentFile().Package() != "google.protobuf" {
		return false
	}
	switch md.Name() {
	case "BoolValue", "StringValue", "BytesValue", "Int32Value", "UInt32Value", "Int64Value", "UInt64Value",
		"FloatValue", "DoubleValue", "Value", "ListValue", "Struct", "Timestamp", "Duration":
		return true
	}
	return false
}

// EncodeResult turns a reply message into the task's JSON result: the
// value itself for a wrapper type, the single field's value for a message
// of one field, else the object of all its fields by proto name.
func EncodeResult(m proto.Message) (json.RawMessage, error) {
	rm := m.ProtoReflect()
	md := rm.Descriptor()
	if md.FullName() == "google.protobuf.Empty" {
		return json.RawMessage("null"), nil // a task that returns nothing: None
	}
	if scalarJSON(md) {
		data, err := codec.JSON{}.Marshal(m)
		return data, err
	}
	fields := orderedFields(md)
	if len(fields) == 1 {
		v, err := fieldValue(fields[0], rm.Get(fields[0]))
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
	obj := make(map[string]any, len(fields))
	for _, fd := range fields {
		if fd.HasPresence() && !rm.Has(fd) {
			obj[string(fd.Name())] = nil
			continue
		}
		v, err := fieldValue(fd, rm.Get(fd))
		if err != nil {
			return nil, err
		}
		obj[string(fd.Name())] = v
	}
	return json.Marshal(obj)
}

// DecodeResult fills a reply message from a task's JSON result: an object
// by field name (unknown keys ignored), a value into a wrapper type, or a
// value into the reply's single field.
func DecodeResult(raw json.RawMessage, m proto.Message) error {
	md := m.ProtoReflect().Descriptor()
	raw = bytes.TrimSpace(raw)
	un := protojson.UnmarshalOptions{DiscardUnknown: true}
	if md.FullName() == "google.protobuf.Empty" {
		return nil // whatever the task returned, nothing is read
	}
	if scalarJSON(md) {
		return un.Unmarshal(raw, m)
	}
	if len(raw) > 0 && raw[0] == '{' {
		return un.Unmarshal(raw, m)
	}
	fields := orderedFields(md)
	if len(fields) != 1 {
		return fmt.Errorf("a %s has %d fields: a non-object result fits only a message of one field", md.FullName(), len(fields))
	}
	wrapped, err := json.Marshal(map[string]json.RawMessage{string(fields[0].Name()): raw})
	if err != nil {
		return err
	}
	return un.Unmarshal(wrapped, m)
}
