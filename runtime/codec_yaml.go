package kombu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
)

// yamlSerializer is Kombu's "yaml" (application/x-yaml, utf-8), which
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
// proto.Message goes through its protojson form (proto field names), so a
// Python consumer gets the same dict as with json. Python bytes arrive as
// !!binary, which decodes into a string (go-yaml does not decode it into
// []byte); a Go []byte is written as text when it is valid UTF-8, as
// !!binary otherwise. time.Time is a YAML timestamp, which safe_load reads
// as a datetime.
//
// Kombu refuses yaml unless the consumer accepts it explicitly, and so does
// kombu-go (see WithAccept).
type yamlSerializer struct{}

func (yamlSerializer) Name() string            { return "yaml" }
func (yamlSerializer) ContentType() string     { return ContentTypeYAML }
func (yamlSerializer) ContentEncoding() string { return "utf-8" }

func (yamlSerializer) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		g, err := protoToGeneric(m)
		if err != nil {
			return nil, err
		}
		v = g
	}
	return yaml.Marshal(v)
}

func (yamlSerializer) Unmarshal(data []byte, v any) error {
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
		var g any
		if err := doc.Decode(&g); err != nil {
			return err
		}
		return protoFromGeneric(g, m)
	}
	return doc.Decode(v)
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
