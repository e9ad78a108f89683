package kombu

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"math"
)

// A Compressor compresses message bodies. Its content type travels in the
// message's "compression" header, as Kombu sends it, and selects the
// decompressor on the other side.
type Compressor interface {
	Name() string        // "zlib"
	Aliases() []string   // other names producers may ask for: "gzip"
	ContentType() string // the "compression" header value: "application/x-gzip"
	Compress(src []byte) ([]byte, error)
	// Decompress returns at most limit bytes; a body that would be larger is
	// an error wrapping ErrLimitExceeded, so a small compressed bomb cannot
	// exhaust memory.
	Decompress(src []byte, limit int64) ([]byte, error)
}

// DefaultMaxBodySize bounds a decompressed message body unless
// WithMaxBodySize says otherwise.
const DefaultMaxBodySize = 64 << 20

var builtinCompressors = []Compressor{zlibCompressor{}}

// zlibCompressor is Kombu's "zlib" (alias "gzip"): a zlib stream (RFC 1950),
// sent under the header value application/x-gzip, which is what Kombu really
// sends despite the name.
type zlibCompressor struct{}

func (zlibCompressor) Name() string        { return "zlib" }
func (zlibCompressor) Aliases() []string   { return []string{"gzip"} }
func (zlibCompressor) ContentType() string { return "application/x-gzip" }

func (zlibCompressor) Compress(src []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (zlibCompressor) Decompress(src []byte, limit int64) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return ReadLimited(r, limit)
}

// ReadLimited reads r to the end, failing with an error wrapping
// ErrLimitExceeded as soon as it has read more than limit bytes. Custom
// Compressors use it to honour their limit.
func ReadLimited(r io.Reader, limit int64) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: negative body size limit %d", ErrLimitExceeded, limit)
	}
	// Read one byte past the limit to tell "exactly at" from "over".
	// MaxInt64 means no limit; adding one would overflow.
	lr := io.LimitReader(r, limit)
	if limit < math.MaxInt64 {
		lr = io.LimitReader(r, limit+1)
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, lr)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%w: decompressed body exceeds %d bytes", ErrLimitExceeded, limit)
	}
	return buf.Bytes(), nil
}

func (c *codecs) compressor(nameOrType string) (Compressor, error) {
	if z, ok := c.compressors[nameOrType]; ok {
		return z, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCompression, nameOrType)
}
