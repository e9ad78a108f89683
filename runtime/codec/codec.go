// Package codec holds kombu-go's serializers and compressors: Kombu's
// serializers (JSON with Kombu's __type__ envelopes, Msgpack, YAML, Raw,
// Text) and compressions (Zlib, Bzip2, LZMA, Brotli, Zstd) with their
// names, content types and byte-for-byte wire formats, and Protobuf and
// ProtoJSON for proto messages.
//
// Package kombu (github.com/kombu-go/kombu/runtime) gives every connection
// these under their Kombu names and picks one by a message's content type or
// "compression" header; most programs never name this package. Use it to
// encode or decode a body outside a connection, or to build a serializer or
// compressor of your own on top of one of these (ReadLimited bounds a
// decompressor). The types satisfy kombu.Serializer and kombu.Compressor;
// this package does not import package kombu, which imports it.
//
// The Python values Kombu's envelopes carry (date, time, Decimal, UUID)
// have Go types in package github.com/kombu-go/kombu/runtime/pytypes.
//
// Every error a serializer or compressor returns wraps ErrDecode or
// ErrEncode; a decompressed body larger than its limit wraps
// ErrLimitExceeded too. Package kombu's errors of the same names are these.
//
// # Serializers
//
// Their zero values are ready to use, and they are safe for concurrent use:
//
//	JSON       json       application/json        utf-8   Kombu's default, with its __type__ envelopes
//	Protobuf   protobuf   application/x-protobuf  binary  proto messages
//	ProtoJSON  protojson  application/json        utf-8   proto messages in the canonical proto3 JSON mapping
//	Msgpack    msgpack    application/x-msgpack   binary  as Kombu: use_bin_type=True, raw=False
//	YAML       yaml       application/x-yaml      utf-8   safe decoding only, as yaml.safe_load
//	Raw        raw        application/data        binary  []byte or string as is
//	Text       text       text/plain              utf-8   UTF-8 text
//
// # Compressions
//
// With Kombu's names, aliases and "compression" header values:
//
//	Zlib    zlib, gzip       application/x-gzip    a zlib stream (RFC 1950), as Kombu really sends
//	Bzip2   bzip2, bzip      application/x-bz2
//	LZMA    lzma, xz         application/x-lzma    the xz container, as Python's lzma.compress
//	Brotli  brotli           application/x-brotli
//	Zstd    zstd, zstandard  application/zstd
//
// Each keeps pools of encoders and decoders, so use one through a pointer
// (its zero value is ready) and share it: its methods are safe for
// concurrent use. Package kombu makes one of each per connection.
//
// Decompress returns at most limit bytes; a body that would be larger is an
// error wrapping ErrLimitExceeded (and ErrDecode), so that a small
// compressed bomb cannot exhaust memory. The memory a decompressor uses is
// bounded by the limit too, whatever sizes the compressed body declares.
//
// # Proto messages as dicts
//
// JSON, Msgpack and YAML carry a proto message as a dict: the dict Python
// Kombu hands its consumers, which they may also give to
// google.protobuf.json_format.ParseDict. It is protojson's form with the
// proto field names ("amount_cents", not "amountCents"), and two changes so
// that Python gets the types it would have written itself:
//
//   - 64-bit integers (int64, uint64, sint64, fixed64, sfixed64, and the
//     Int64Value and UInt64Value wrappers) are numbers, not strings.
//     JavaScript would lose precision above 2^53; Python's int does not.
//   - float and double values are written with a decimal point ("2.0", not
//     "2"), so that Python reads a float, not an int.
//
// As in protojson, an enum is its value's name (its number when the value
// is unknown), bytes are standard base64 with padding (JSON, msgpack and
// YAML carry the same dict, so a consumer does not depend on the
// serializer), a map's keys are strings, and the well-known types keep their
// JSON forms (Timestamp and Duration as strings, Struct as an object, ...).
// Decoding accepts this form and protojson's: integers as numbers or
// strings, enums by name or number, either field name style, and bytes as
// base64 (or, from msgpack and YAML, as their own binary type).
package codec

import (
	"errors"

	"github.com/kombu-go/kombu/runtime/transport"
)

// Sentinel errors. Package kombu re-exports each under the same name.
var (
	// ErrDecode: a body could not be deserialized or decompressed.
	ErrDecode = errors.New("kombu: cannot decode message")
	// ErrEncode: a value could not be serialized or compressed.
	ErrEncode = errors.New("kombu: cannot encode message")
	// ErrLimitExceeded: a decompressed body would exceed its limit (package
	// kombu uses it for every size or pool limit).
	ErrLimitExceeded = transport.ErrLimitExceeded
)

// Content types of the serializers, as Kombu names them.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeMsgpack  = "application/x-msgpack"
	ContentTypeYAML     = "application/x-yaml"
	ContentTypeData     = "application/data"
	ContentTypeText     = "text/plain"
)

// failure is an error a serializer or compressor returns: its text is the
// cause's, and errors.Is matches it with op (ErrDecode or ErrEncode) and
// with whatever the cause wraps. The text leaves op out so that package
// kombu, which names the operation, the content type and the target, does
// not say "cannot decode message" twice.
type failure struct {
	op    error
	cause error
}

func (f *failure) Error() string   { return f.cause.Error() }
func (f *failure) Unwrap() []error { return []error{f.op, f.cause} }

// decodeFailed returns err as a failure of decoding, or nil.
func decodeFailed(err error) error {
	if err == nil {
		return nil
	}
	return &failure{op: ErrDecode, cause: err}
}

// encodeFailed returns err as a failure of encoding, or nil.
func encodeFailed(err error) error {
	if err == nil {
		return nil
	}
	return &failure{op: ErrEncode, cause: err}
}

// decoded returns what a decoding step returned, its error as a failure.
func decoded(b []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, decodeFailed(err)
	}
	return b, nil
}

// encoded returns what an encoding step returned, its error as a failure.
func encoded(b []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, encodeFailed(err)
	}
	return b, nil
}
