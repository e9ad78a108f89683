package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	kombu "github.com/kombu-go/kombu/runtime"
)

type publishFlags struct {
	exchange, exType, key, file, contentType, encoding, compression string
	headers                                                         stringList
	priority                                                        uint
	expiration                                                      time.Duration
	messageID, correlationID, replyTo, typ                          string
	mandatory                                                       bool
	protos                                                          protoSource
	message                                                         string
}

func publishVerb() *verb {
	f := &publishFlags{}
	return &verb{
		name:    "publish",
		summary: "publish a message",
		usage:   "[body]",
		help: `Publishes one message to an exchange (the default exchange, which routes
by the routing key to the queue of that name, unless --exchange names one),
and returns once the broker confirmed it where the transport confirms.

The body is the argument, the contents of --file, or stdin ("-" or no
argument with stdin not a terminal). Without --content-type a body that is
valid JSON is sent as application/json, anything else as text/plain; with
--content-type the bytes are sent as they are. With --proto/--descriptor-set
and --message, a JSON body is encoded as that protobuf message.

The message is mandatory by default: one that reaches no queue is an error
(exit 1), not dropped silently.

Example:
  KOMBU_URL=amqp://guest:guest@localhost// kombu publish -k orders '{"id": 1}'
  kombu publish --url redis://localhost:6379/0 --exchange shop -k order.created --file order.json
  kombu publish -k tasks --proto shop.proto --message shop.v1.Order '{"id": "7"}'`,
		flags: func(fs *flag.FlagSet, e *env) {
			fs.StringVar(&f.exchange, "exchange", "", "exchange to publish to (default: the default exchange)")
			fs.StringVar(&f.exType, "exchange-type", "", exchangeTypeUsage)
			fs.StringVar(&f.key, "k", "", "routing key (with the default exchange: the queue's name)")
			fs.StringVar(&f.key, "routing-key", "", "same as -k")
			fs.StringVar(&f.file, "file", "", "read the body from this file (- for stdin)")
			fs.StringVar(&f.contentType, "content-type", "", "send the body as is with this content type")
			fs.StringVar(&f.encoding, "content-encoding", "", "content encoding with --content-type (default: utf-8 for text types, binary otherwise)")
			fs.StringVar(&f.compression, "compression", "", "compress the body: zlib, bzip2, lzma, brotli or zstd")
			fs.Var(&f.headers, "header", "an application header, key=value (repeatable)")
			fs.UintVar(&f.priority, "priority", 0, "message priority")
			fs.DurationVar(&f.expiration, "expiration", 0, "per-message TTL")
			fs.StringVar(&f.messageID, "message-id", "", "message id")
			fs.StringVar(&f.correlationID, "correlation-id", "", "correlation id")
			fs.StringVar(&f.replyTo, "reply-to", "", "reply-to queue")
			fs.StringVar(&f.typ, "type", "", "the message's type property")
			fs.BoolVar(&f.mandatory, "mandatory", true, "fail when the message reaches no queue")
			f.protos.flags(fs)
			fs.StringVar(&f.message, "message", "", "with --proto/--descriptor-set: the protobuf message type of the JSON body")
		},
		run: func(e *env, args []string) error { return runPublish(e, f, args) },
	}
}

func runPublish(e *env, f *publishFlags, args []string) error {
	body, err := readBody(e, f.file, args)
	if err != nil {
		return err
	}
	opts := []kombu.PublishOption{kombu.WithRoutingKey(f.key)}
	if f.exchange != "" {
		// The exchange exists already: the command publishes, it does not
		// declare (a declaration with other settings would fail).
		ex, err := exchangeFor(e.url, f.exchange, f.exType)
		if err != nil {
			return err
		}
		opts = append(opts, kombu.WithExchange(ex))
	}
	switch {
	case f.message != "":
		if !f.protos.given() {
			return usagef("--message needs --proto or --descriptor-set")
		}
		set, _, err := f.protos.load(e.ctx)
		if err != nil {
			return err
		}
		types, err := newProtoTypes(set)
		if err != nil {
			return err
		}
		md, err := types.messageFor(f.message, "")
		if err != nil {
			return usagef("--message: %v", err)
		}
		m := dynamicpb.NewMessage(md)
		if err := protojson.Unmarshal(body, m); err != nil {
			return usagef("the body is not %s as JSON: %v", md.FullName(), err)
		}
		if body, err = proto.Marshal(m); err != nil {
			return err
		}
		opts = append(opts, kombu.WithContentType("application/x-protobuf", "binary"))
		if f.typ == "" {
			f.typ = string(md.FullName())
		}
	case f.contentType != "":
		enc := f.encoding
		if enc == "" && (strings.HasPrefix(f.contentType, "text/") || strings.Contains(f.contentType, "json") || strings.Contains(f.contentType, "yaml")) {
			enc = "utf-8"
		}
		opts = append(opts, kombu.WithContentType(f.contentType, enc))
	case json.Valid(body):
		opts = append(opts, kombu.WithContentType("application/json", "utf-8"))
	default:
		opts = append(opts, kombu.WithContentType("text/plain", "utf-8"))
	}
	if f.compression != "" {
		opts = append(opts, kombu.WithCompression(f.compression))
	}
	if len(f.headers) > 0 {
		h := map[string]any{}
		for _, kv := range f.headers {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usagef("--header %q: want key=value", kv)
			}
			h[k] = headerValue(v)
		}
		opts = append(opts, kombu.WithHeaders(h))
	}
	if f.priority > 255 {
		return usagef("--priority %d: at most 255", f.priority)
	}
	if f.priority > 0 {
		opts = append(opts, kombu.WithPriority(uint8(f.priority)))
	}
	if f.expiration > 0 {
		opts = append(opts, kombu.WithExpiration(f.expiration))
	}
	for _, o := range []struct {
		v  string
		fn func(string) kombu.PublishOption
	}{{f.messageID, kombu.WithMessageID}, {f.correlationID, kombu.WithCorrelationID}, {f.replyTo, kombu.WithReplyTo}, {f.typ, kombu.WithType}} {
		if o.v != "" {
			opts = append(opts, o.fn(o.v))
		}
	}
	conn, err := e.dial(e.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := e.opCtx()
	defer cancel()
	producer := kombu.NewProducer(conn)
	err = errors.ErrUnsupported
	if f.mandatory {
		err = producer.Publish(ctx, body, append(opts, kombu.WithMandatory())...)
		if errors.Is(err, kombu.ErrNotSupported) && strings.Contains(err.Error(), "mandatory") {
			// The runtime refused before sending anything: this transport
			// cannot tell whether a message reached a queue.
			fmt.Fprintf(e.stderr, "kombu publish: warning: %s cannot report a message that reaches no queue; publishing without --mandatory\n", e.maskedURL())
			err = errors.ErrUnsupported
		}
	}
	if errors.Is(err, errors.ErrUnsupported) {
		err = producer.Publish(ctx, body, opts...)
	}
	if err != nil {
		return err
	}
	if e.output == "json" {
		writeJSON(e.stdout, map[string]any{"published": 1, "exchange": f.exchange, "routing_key": f.key, "bytes": len(body)})
	} else {
		fmt.Fprintf(e.stdout, "published %d bytes to exchange %q with routing key %q on %s\n", len(body), f.exchange, f.key, e.maskedURL())
	}
	return nil
}

// headerValue reads a header given on the command line: an integer, a
// boolean, else a string.
func headerValue(v string) any {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
		return b
	}
	return v
}

func readBody(e *env, file string, args []string) ([]byte, error) {
	switch {
	case len(args) > 1:
		return nil, usagef("one body argument at most (got %d); quote the body", len(args))
	case file != "" && len(args) == 1:
		return nil, usagef("give the body as an argument or --file, not both")
	case file == "-" || file == "" && len(args) == 0:
		if file == "" && e.stdinIsTTY {
			return nil, usagef("no body: give it as an argument, --file, or on stdin")
		}
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, usagef("reading the body from stdin: %v", err)
		}
		return b, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef("body file: %v", err)
		}
		return b, nil
	}
	return []byte(args[0]), nil
}
