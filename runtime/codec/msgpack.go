package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/protobuf/proto"
)

// Msgpack is Kombu's "msgpack" (application/x-msgpack, binary), with the
// conventions Kombu sets in Python (packb(use_bin_type=True),
// unpackb(raw=False)): Go strings are msgpack str, []byte is bin, and str
// must be valid UTF-8. Integers take their smallest encoding, as Python's
// packer writes them. It uses github.com/vmihailenco/msgpack/v5.
//
// Structs use their msgpack tags, falling back to their json tags, so one
// struct reads the same in both. Decoding into any gives map[string]any,
// []any, string, []byte, int64 (uint64 above MaxInt64), float64, bool, nil
// and time.Time (the msgpack timestamp extension, which Python's msgpack
// reads as msgpack.Timestamp). Any other extension type is refused, as are
// map keys other than strings when decoding into any, nesting deeper than
// 1024 levels (Python's msgpack stops there too), and a body with
// anything after its one value. The types of package pytypes travel as str,
// their text.
//
// A proto.Message is written as the same dict as with JSON (proto field
// names, 64-bit integers as integers, enums by name, bytes as base64 text;
// see the package documentation); reading one also takes bytes fields as
// bin, as Python's msgpack packs bytes.
//
// Kombu refuses msgpack unless the consumer accepts it explicitly, and so
// does package kombu (see kombu.WithAccept).
type Msgpack struct{}

func (Msgpack) Name() string            { return "msgpack" }
func (Msgpack) ContentType() string     { return ContentTypeMsgpack }
func (Msgpack) ContentEncoding() string { return "binary" }

// Marshal encodes v as Python's msgpack.packb(v, use_bin_type=True) would.
func (Msgpack) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		g, err := protoToGeneric(m)
		if err != nil {
			return nil, encodeFailed(err)
		}
		v = g
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, encodeFailed(err)
	}
	return buf.Bytes(), nil
}

// Unmarshal checks that data is one well-formed value within the limits
// above, then decodes it into v.
func (Msgpack) Unmarshal(data []byte, v any) error {
	if err := checkMsgpack(data, maxMsgpackDepth); err != nil {
		return decodeFailed(err)
	}
	if m, ok := v.(proto.Message); ok {
		var g any
		if err := decodeMsgpack(data, &g); err != nil {
			return decodeFailed(err)
		}
		return decodeFailed(protoFromGeneric(g, m))
	}
	return decodeFailed(decodeMsgpack(data, v))
}

func decodeMsgpack(data []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetCustomStructTag("json")
	if err := dec.Decode(v); err != nil {
		return err
	}
	switch p := v.(type) {
	case *any:
		*p = normalizeMsgpack(*p)
	case *map[string]any:
		for k, x := range *p {
			(*p)[k] = normalizeMsgpack(x)
		}
	case *[]any:
		for i, x := range *p {
			(*p)[i] = normalizeMsgpack(x)
		}
	}
	return nil
}

// normalizeMsgpack gives the integers and floats msgpack decoded into any
// the types Python's int and float map to: int64 (uint64 when too large)
// and float64.
func normalizeMsgpack(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeMsgpack(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeMsgpack(e)
		}
	}
	return v
}

// maxMsgpackDepth is how deeply msgpack containers may nest. The decoder
// recurses, so a body of 64 MiB of nested one-element arrays would otherwise
// take the stack of 64 million calls.
const maxMsgpackDepth = 1024

// msgpackTimestampExt is the timestamp extension type, the only one kombu-go
// decodes.
const msgpackTimestampExt = -1

var errMsgpack = errors.New("msgpack: malformed body")

// checkMsgpack walks a msgpack body without recursing and without
// allocating for what it declares, and refuses it unless it is exactly one
// well-formed value: lengths within the body, nesting within maxDepth,
// valid UTF-8 in every str, and no extension but the timestamp. The decoder
// then never sees a length it would allocate for in vain.
func checkMsgpack(b []byte, maxDepth int) error {
	var stack []int64 // items left in each enclosing container
	left := int64(1)  // items left at the current level
	i := 0
	for {
		for left == 0 {
			if len(stack) == 0 {
				if i != len(b) {
					return fmt.Errorf("%w: %d bytes after the value", errMsgpack, len(b)-i)
				}
				return nil
			}
			left, stack = stack[len(stack)-1], stack[:len(stack)-1]
		}
		if i >= len(b) {
			return fmt.Errorf("%w: truncated", errMsgpack)
		}
		c := b[i]
		i++
		left--
		var items int64 // a container's items
		var payload int64
		str := false
		ext := 0 // an extension's header length (its type byte included)
		need := func(n int) (uint64, error) {
			if len(b)-i < n {
				return 0, fmt.Errorf("%w: truncated", errMsgpack)
			}
			var v uint64
			switch n {
			case 1:
				v = uint64(b[i])
			case 2:
				v = uint64(binary.BigEndian.Uint16(b[i:]))
			case 4:
				v = uint64(binary.BigEndian.Uint32(b[i:]))
			}
			i += n
			return v, nil
		}
		var n uint64
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
			// fixint, nil, bool
		case c >= 0x80 && c <= 0x8f:
			items = 2 * int64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = int64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			payload, str = int64(c&0x1f), true
		case c == 0xc4, c == 0xc5, c == 0xc6: // bin 8/16/32
			n, err = need(1 << (c - 0xc4))
			payload = int64(n)
		case c == 0xc7, c == 0xc8, c == 0xc9: // ext 8/16/32
			n, err = need(1 << (c - 0xc7))
			payload, ext = int64(n), 1
		case c == 0xca, c == 0xce, c == 0xd2: // float32, uint32, int32
			payload = 4
		case c == 0xcb, c == 0xcf, c == 0xd3: // float64, uint64, int64
			payload = 8
		case c == 0xcc, c == 0xd0:
			payload = 1
		case c == 0xcd, c == 0xd1:
			payload = 2
		case c >= 0xd4 && c <= 0xd8: // fixext 1/2/4/8/16
			payload, ext = int64(1)<<(c-0xd4), 1
		case c == 0xd9, c == 0xda, c == 0xdb: // str 8/16/32
			n, err = need(1 << (c - 0xd9))
			payload, str = int64(n), true
		case c == 0xdc, c == 0xdd: // array 16/32
			n, err = need(2 << (c - 0xdc))
			items = int64(n)
		case c == 0xde, c == 0xdf: // map 16/32
			n, err = need(2 << (c - 0xde))
			items = 2 * int64(n)
		default: // 0xc1
			return fmt.Errorf("%w: invalid byte %#x", errMsgpack, c)
		}
		if err != nil {
			return err
		}
		if ext > 0 {
			if i >= len(b) {
				return fmt.Errorf("%w: truncated", errMsgpack)
			}
			typ := int8(b[i])
			i++
			if typ != msgpackTimestampExt || (payload != 4 && payload != 8 && payload != 12) {
				return fmt.Errorf("%w: extension type %d is not supported (only the timestamp, -1)", errMsgpack, typ)
			}
		}
		if payload > int64(len(b)-i) {
			return fmt.Errorf("%w: truncated (a value declares %d bytes)", errMsgpack, payload)
		}
		if str && !utf8.Valid(b[i:i+int(payload)]) {
			return fmt.Errorf("%w: str is not valid UTF-8", errMsgpack)
		}
		i += int(payload)
		if items > 0 {
			// Every item takes at least a byte, so a count larger than
			// what is left cannot be true.
			if items > int64(len(b)-i) {
				return fmt.Errorf("%w: truncated (a container declares %d items)", errMsgpack, items)
			}
			if len(stack)+1 > maxDepth {
				return fmt.Errorf("%w: nested deeper than %d levels", errMsgpack, maxDepth)
			}
			stack = append(stack, left)
			left = items
		}
	}
}
