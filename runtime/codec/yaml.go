package codec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
)

// YAML is Kombu's "yaml" (application/x-yaml, utf-8), which
// Python writes with yaml.safe_dump and reads with yaml.safe_load. It uses
// go.yaml.in/yaml/v3, the YAML organisation's maintained continuation of
// gopkg.in/yaml.v3, and decodes safely in the same sense as safe_load: only
// the YAML types Python's SafeLoader constructs (null, bool, int, float,
// str, binary, timestamp, seq, map, set, omap, pairs, merge keys) are
// allowed, so a "!!python/object" tag or any local tag is refused rather
// than ignored; exactly one document; and the decoder's limits on alias
// expansion ("billion laughs") and nesting (10000 levels) apply.
//
// Structs use their yaml tags (field names in lower case without one). A
// proto.Message is written as the same dict as with JSON (see the package
// documentation); reading one also takes bytes fields as !!binary, as
// Python's yaml writes bytes. Python bytes arrive as !!binary, which
// decodes into a string elsewhere (go-yaml does not decode it into []byte);
// a Go []byte in a map or slice is written as !!binary.
// time.Time is a YAML timestamp, which safe_load reads as a datetime. The
// floats of maps and slices are written with a decimal point ("2.0", not
// "2"), as YAML 1.1, which Python reads, needs them to be floats.
//
// Kombu refuses yaml unless the consumer accepts it explicitly, and so does
// package kombu (see kombu.WithAccept).
type YAML struct{}

func (YAML) Name() string            { return "yaml" }
func (YAML) ContentType() string     { return ContentTypeYAML }
func (YAML) ContentEncoding() string { return "utf-8" }

// Marshal encodes v as YAML that Python's yaml.safe_load reads back.
func (YAML) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		g, err := protoToGeneric(m)
		if err != nil {
			return nil, encodeFailed(err)
		}
		v = g
	}
	return encoded(marshalYAML(forPython(v)))
}

// marshalYAML is yaml.Marshal, with a panic turned into an error: go-yaml
// panics, rather than failing, on a value it cannot represent (a channel, a
// function), and a body a producer cannot encode must not take its process
// down.
func marshalYAML(v any) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return yaml.Marshal(v)
}

// forPython returns v with the float64 and []byte values of its maps and
// slices (map[string]any and []any, as a decoded or proto-derived body
// has) made pythonFloat and pythonBytes, copying what it changes. Values in
// structs are left to go-yaml.
func forPython(v any) any {
	switch x := v.(type) {
	case float64:
		return pythonFloat(x)
	case []byte:
		return pythonBytes(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = forPython(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = forPython(e)
		}
		return out
	}
	return v
}

// pythonBytes is a []byte written as !!binary, which Python's yaml reads as
// bytes; go-yaml would write a list of numbers.
type pythonBytes []byte

// MarshalYAML writes the bytes as !!binary.
func (b pythonBytes) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!binary", Value: base64.StdEncoding.EncodeToString(b)}, nil
}

// pythonFloat is a float64 written as YAML 1.1, which Python's yaml reads,
// needs it: with a decimal point ("2.0", "1.0e+21"). go-yaml writes YAML
// 1.2's "2" and "1e+21", which Python reads as an int and a string.
type pythonFloat float64

// MarshalYAML writes the float with a decimal point.
func (f pythonFloat) MarshalYAML() (any, error) {
	s := strconv.FormatFloat(float64(f), 'g', -1, 64)
	switch {
	case math.IsInf(float64(f), 1):
		s = ".inf"
	case math.IsInf(float64(f), -1):
		s = "-.inf"
	case math.IsNaN(float64(f)):
		s = ".nan"
	case strings.Contains(s, "."):
	case strings.Contains(s, "e"):
		s = strings.Replace(s, "e", ".0e", 1)
	default:
		s += ".0"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: s}, nil
}

// Unmarshal decodes exactly one YAML document with safe types only into v.
func (YAML) Unmarshal(data []byte, v any) error { return decodeFailed(unmarshalYAML(data, v)) }

func unmarshalYAML(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errors.New("yaml body is not valid UTF-8")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("yaml body is empty")
		}
		return err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return errors.New("yaml body holds more than one document")
	}
	if err := checkYAMLTags(&doc); err != nil {
		return err
	}
	if m, ok := v.(proto.Message); ok {
		binaryAsBase64(&doc)
		var g any
		if err := doc.Decode(&g); err != nil {
			return err
		}
		return protoFromGeneric(g, m)
	}
	return doc.Decode(v)
}

// binaryAsBase64 turns !!binary values (Python's bytes) into the base64
// text they are written in, which is what protojson reads for a bytes field:
// go-yaml would decode them into a string of the raw bytes.
func binaryAsBase64(root *yaml.Node) {
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			continue // its anchor is visited where it is defined
		}
		stack = append(stack, n.Content...)
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!binary" {
			n.Tag, n.Value = "!!str", strings.Join(strings.Fields(n.Value), "")
		}
	}
}

// safeYAMLTags are the tags Python's yaml.SafeLoader constructs.
var safeYAMLTags = map[string]bool{
	"": true, "!!null": true, "!!bool": true, "!!int": true, "!!float": true, "!!str": true,
	"!!binary": true, "!!timestamp": true, "!!seq": true, "!!map": true, "!!merge": true,
	"!!set": true, "!!omap": true, "!!pairs": true,
}

// checkYAMLTags refuses any node whose tag SafeLoader would not construct.
// It walks the tree without recursing and does not follow aliases, so an
// alias bomb costs it nothing.
func checkYAMLTags(root *yaml.Node) error {
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !safeYAMLTags[n.ShortTag()] && !safeYAMLTags[n.Tag] {
			return fmt.Errorf("yaml tag %q is not allowed (safe types only, as Python's yaml.safe_load)", n.Tag)
		}
		if n.Kind != yaml.AliasNode {
			stack = append(stack, n.Content...)
		}
	}
	return nil
}
