package codec

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// How JSON, Msgpack and YAML carry a proto message is described in the
// package documentation, "Proto messages as dicts".

// marshalProtoDict writes m as JSON in that form.
func marshalProtoDict(m proto.Message) ([]byte, error) {
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	w := dictWriters.Get().(*dictWriter)
	defer dictWriters.Put(w)
	w.in.Reset(data)
	w.out.Reset()
	w.dec.Reset(&w.in)
	w.enc.Reset(&w.out)
	if err := w.message(m.ProtoReflect().Descriptor()); err != nil {
		return nil, fmt.Errorf("rewriting %s's JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	// The encoder ends a top-level value with a newline.
	return bytes.Clone(bytes.TrimSuffix(w.out.Bytes(), []byte("\n"))), nil
}

// dictWriters keeps dictWriters, whose decoder and encoder buffers cost
// more to make than the rewriting.
var dictWriters = sync.Pool{New: func() any {
	w := new(dictWriter)
	w.dec = jsontext.NewDecoder(&w.in)
	w.enc = jsontext.NewEncoder(&w.out)
	return w
}}

// dictWriter copies protojson's output token by token, following the
// message's descriptor to know what each value is, and rewrites the numbers
// that need it.
type dictWriter struct {
	in      bytes.Reader
	out     bytes.Buffer
	dec     *jsontext.Decoder
	enc     *jsontext.Encoder
	scratch []byte // a rewritten number; what the decoder returns is its own
}

// wellKnownJSON are the well-known types whose JSON form is not an object of
// their fields. Their values are copied as they are, but for the wrappers
// of numbers.
var wellKnownJSON = map[protoreflect.FullName]bool{
	"google.protobuf.Any": true, "google.protobuf.Timestamp": true, "google.protobuf.Duration": true,
	"google.protobuf.FieldMask": true, "google.protobuf.Struct": true, "google.protobuf.Value": true,
	"google.protobuf.ListValue": true, "google.protobuf.BoolValue": true, "google.protobuf.StringValue": true,
	"google.protobuf.BytesValue": true, "google.protobuf.Int32Value": true, "google.protobuf.UInt32Value": true,
	"google.protobuf.Int64Value": true, "google.protobuf.UInt64Value": true,
	"google.protobuf.FloatValue": true, "google.protobuf.DoubleValue": true,
}

// message copies one value of a message of type md.
func (w *dictWriter) message(md protoreflect.MessageDescriptor) error {
	switch md.FullName() {
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return w.integer()
	case "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return w.float()
	case "google.protobuf.Any":
		return w.any()
	}
	if wellKnownJSON[md.FullName()] || w.dec.PeekKind() != '{' {
		return w.copyValue()
	}
	if err := w.copyToken(); err != nil { // {
		return err
	}
	return w.fields(md)
}

// fields copies the members of an object holding md's fields, and the
// closing brace. A nil md copies them as they are.
func (w *dictWriter) fields(md protoreflect.MessageDescriptor) error {
	return w.members(func(name string) error {
		if fd := fieldByName(md, name); fd != nil {
			return w.field(fd)
		}
		return w.copyValue()
	})
}

// members copies an object's members, each value with value(its name),
// and the closing brace.
func (w *dictWriter) members(value func(name string) error) error {
	for w.dec.PeekKind() != '}' {
		name, err := w.dec.ReadToken()
		if err != nil {
			return err
		}
		if err := w.enc.WriteToken(name); err != nil {
			return err
		}
		if err := value(name.String()); err != nil {
			return err
		}
	}
	return w.copyToken() // }
}

// fieldByName finds the field protojson wrote under name: a proto field
// name, or an extension's "[full.name]".
func fieldByName(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if md == nil {
		return nil
	}
	if fd := md.Fields().ByName(protoreflect.Name(name)); fd != nil {
		return fd
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		if xt, err := protoregistry.GlobalTypes.FindExtensionByName(protoreflect.FullName(name[1 : len(name)-1])); err == nil {
			return xt.TypeDescriptor()
		}
	}
	return nil
}

// field copies the value of field fd: a list, a map or a single value.
func (w *dictWriter) field(fd protoreflect.FieldDescriptor) error {
	switch {
	case w.dec.PeekKind() == 'n': // null
		return w.copyValue()
	case fd.IsList():
		if err := w.copyToken(); err != nil { // [
			return err
		}
		for w.dec.PeekKind() != ']' {
			if err := w.single(fd); err != nil {
				return err
			}
		}
		return w.copyToken() // ]
	case fd.IsMap():
		if err := w.copyToken(); err != nil { // {
			return err
		}
		for w.dec.PeekKind() != '}' {
			if err := w.copyToken(); err != nil { // the key, always a string
				return err
			}
			if err := w.single(fd.MapValue()); err != nil {
				return err
			}
		}
		return w.copyToken() // }
	}
	return w.single(fd)
}

// single copies one value of fd's type.
func (w *dictWriter) single(fd protoreflect.FieldDescriptor) error {
	switch fd.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return w.integer()
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return w.float()
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.message(fd.Message())
	}
	return w.copyValue()
}

// integer writes a 64-bit integer, which protojson quotes, as a number.
func (w *dictWriter) integer() error {
	if w.dec.PeekKind() != '"' {
		return w.copyValue()
	}
	tok, err := w.dec.ReadToken()
	if err != nil {
		return err
	}
	s := tok.String()
	if _, err := strconv.ParseInt(s, 10, 64); err != nil {
		if _, err := strconv.ParseUint(s, 10, 64); err != nil {
			return fmt.Errorf("64-bit integer %q: %w", s, err)
		}
	}
	w.scratch = append(w.scratch[:0], s...)
	return w.enc.WriteValue(w.scratch)
}

// float writes a float or double number with a decimal point, as Python
// writes a float. NaN and the infinities stay protojson's strings.
func (w *dictWriter) float() error {
	if w.dec.PeekKind() != '0' {
		return w.copyValue()
	}
	v, err := w.dec.ReadValue()
	if err != nil {
		return err
	}
	if bytes.ContainsAny(v, ".eE") {
		return w.enc.WriteValue(v)
	}
	w.scratch = append(append(w.scratch[:0], v...), '.', '0')
	return w.enc.WriteValue(w.scratch)
}

// any copies a google.protobuf.Any: its "@type", then the fields of the
// message it holds, or that message's JSON form under "value" when it is a
// well-known type. A type the registry does not know is copied as it is.
func (w *dictWriter) any() error {
	if w.dec.PeekKind() != '{' {
		return w.copyValue()
	}
	if err := w.copyToken(); err != nil { // {
		return err
	}
	var inner protoreflect.MessageDescriptor
	if w.dec.PeekKind() == '"' {
		name, err := w.dec.ReadToken()
		if err != nil {
			return err
		}
		if err := w.enc.WriteToken(name); err != nil {
			return err
		}
		if name.String() != "@type" {
			return w.fields(nil) // not protojson's output: nothing to rewrite
		}
		url, err := w.dec.ReadToken()
		if err != nil {
			return err
		}
		if err := w.enc.WriteToken(url); err != nil {
			return err
		}
		if mt, err := protoregistry.GlobalTypes.FindMessageByURL(url.String()); err == nil {
			inner = mt.Descriptor()
		}
	}
	if inner == nil || !wellKnownJSON[inner.FullName()] {
		return w.fields(inner)
	}
	return w.members(func(name string) error {
		if name == "value" {
			return w.message(inner)
		}
		return w.copyValue()
	})
}

func (w *dictWriter) copyToken() error {
	tok, err := w.dec.ReadToken()
	if err != nil {
		return err
	}
	return w.enc.WriteToken(tok)
}

func (w *dictWriter) copyValue() error {
	v, err := w.dec.ReadValue()
	if err != nil {
		return err
	}
	return w.enc.WriteValue(v)
}
