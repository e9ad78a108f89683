package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/kombu-go/kombu/runtime/codec"
	"github.com/kombu-go/kombu/runtime/transport"
)

// maxBody bounds a decompressed body, as the runtime's default does.
const maxBody = 64 << 20

// decoder turns a delivery into what the command prints.
type decoder struct {
	raw     bool
	protos  *protoTypes // nil without --proto / --descriptor-set
	message string      // --message: the proto message type to decode protobuf bodies as
}

// shown is a message as the command prints it; with --output json, one
// line of JSON per message.
type shown struct {
	Queue       string         `json:"queue,omitempty"`
	Exchange    string         `json:"exchange"`
	RoutingKey  string         `json:"routing_key"`
	Redelivered bool           `json:"redelivered"`
	Properties  map[string]any `json:"properties,omitempty"`
	Headers     map[string]any `json:"headers,omitempty"`
	// Body is the decoded body: a JSON value for JSON, msgpack and
	// protobuf (as proto JSON), text for YAML and text types, base64 for
	// bytes that are neither (BodyEncoding says which).
	Body         any    `json:"body"`
	BodyEncoding string `json:"body_encoding"` // json, text or base64
	Note         string `json:"note,omitempty"`
}

var compressors = map[string]interface {
	Decompress(src []byte, limit int64) ([]byte, error)
}{
	"application/x-gzip":   &codec.Zlib{},
	"application/x-bz2":    &codec.Bzip2{},
	"application/x-lzma":   &codec.LZMA{},
	"application/x-brotli": &codec.Brotli{},
	"application/zstd":     &codec.Zstd{},
}

func (dc *decoder) show(d *transport.Delivery) shown {
	s := shown{
		Queue: d.Queue, Exchange: d.Exchange, RoutingKey: d.RoutingKey, Redelivered: d.Redelivered,
		Properties: properties(d.Properties), Headers: jsonable(d.Headers).(map[string]any),
	}
	body := d.Body
	ct := d.Properties.ContentType
	if dc.raw {
		s.Body, s.BodyEncoding = bytesValue(body)
		return s
	}
	if z, _ := d.Headers["compression"].(string); z != "" {
		c, ok := compressors[z]
		if !ok {
			s.Note = "compressed with " + z + ", which the command cannot decompress"
			s.Body, s.BodyEncoding = bytesValue(body)
			return s
		}
		out, err := c.Decompress(body, maxBody)
		if err != nil {
			s.Note = fmt.Sprintf("decompressing %s: %v", z, err)
			s.Body, s.BodyEncoding = bytesValue(body)
			return s
		}
		body = out
	}
	var err error
	switch base, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(base) {
	case codec.ContentTypeJSON:
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err = dec.Decode(&v); err == nil {
			s.Body, s.BodyEncoding = v, "json"
			return s
		}
	case codec.ContentTypeMsgpack:
		var v any
		if err = msgpack.Unmarshal(body, &v); err == nil {
			s.Body, s.BodyEncoding = jsonable(v), "json"
			return s
		}
	case "application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf":
		if dc.protos == nil {
			s.Note = "protobuf: give --proto file.proto or --descriptor-set to decode"
			break
		}
		var md protoreflect.MessageDescriptor
		if md, err = dc.protos.messageFor(dc.message, d.Properties.Type); err == nil {
			m := dynamicpb.NewMessage(md)
			if err = (protoUnmarshal{}).unmarshal(body, m); err == nil {
				var js []byte
				if js, err = protojson.Marshal(m); err == nil {
					var v any
					dec := json.NewDecoder(bytes.NewReader(js))
					dec.UseNumber()
					_ = dec.Decode(&v)
					s.Body, s.BodyEncoding, s.Note = v, "json", "protobuf "+string(md.FullName())
					return s
				}
			}
		}
	}
	if err != nil {
		s.Note = fmt.Sprintf("cannot decode as %s: %v", ct, err)
	}
	// YAML, text, and whatever is valid UTF-8 are shown as text.
	s.Body, s.BodyEncoding = bytesValue(body)
	return s
}

// bytesValue shows b as text when it is UTF-8 text, base64 otherwise.
func bytesValue(b []byte) (any, string) {
	if utf8.Valid(b) && !bytes.ContainsRune(b, 0) {
		return string(b), "text"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

func properties(p transport.Properties) map[string]any {
	m := map[string]any{}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("content_type", p.ContentType)
	set("content_encoding", p.ContentEncoding)
	set("correlation_id", p.CorrelationID)
	set("reply_to", p.ReplyTo)
	set("message_id", p.MessageID)
	set("type", p.Type)
	set("user_id", p.UserID)
	set("app_id", p.AppID)
	if p.DeliveryMode != 0 {
		m["delivery_mode"] = p.DeliveryMode
	}
	if p.Priority != 0 {
		m["priority"] = p.Priority
	}
	if p.Expiration > 0 {
		m["expiration"] = p.Expiration.String()
	}
	if !p.Timestamp.IsZero() {
		m["timestamp"] = p.Timestamp.UTC().Format(time.RFC3339)
	}
	return m
}

// jsonable converts what msgpack and header tables hold into what
// encoding/json writes: maps with string keys, bytes as text or base64.
func jsonable(v any) any {
	switch x := v.(type) {
	case nil:
		return map[string]any(nil)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	}
	return jsonValue(v)
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return jsonable(x)
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case []byte:
		b, _ := bytesValue(x)
		return b
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// print writes one message: as a JSON line with --output json, else as a
// short block of text.
func (e *env) printMessage(s shown) {
	if e.output == "json" {
		writeJSON(e.stdout, s)
		return
	}
	w := e.stdout
	flags := ""
	if s.Redelivered {
		flags = "  (redelivered)"
	}
	fmt.Fprintf(w, "--- queue %s  exchange %q  routing key %q%s\n", s.Queue, s.Exchange, s.RoutingKey, flags)
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %v\n", k, s.Properties[k])
	}
	if len(s.Headers) > 0 {
		h, _ := json.Marshal(s.Headers)
		fmt.Fprintf(w, "headers: %s\n", h)
	}
	if s.Note != "" {
		fmt.Fprintf(w, "note: %s\n", s.Note)
	}
	switch s.BodyEncoding {
	case "json":
		b, err := json.MarshalIndent(s.Body, "", "  ")
		if err != nil {
			fmt.Fprintf(w, "%v\n", s.Body)
		} else {
			fmt.Fprintf(w, "%s\n", b)
		}
	case "base64":
		fmt.Fprintf(w, "(binary, base64) %s\n", s.Body)
	default:
		text := s.Body.(string)
		fmt.Fprint(w, text)
		if !strings.HasSuffix(text, "\n") {
			fmt.Fprintln(w)
		}
	}
}

func writeJSON(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	w.Write(append(b, '\n'))
}
