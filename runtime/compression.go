package kombu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
)

// A Compressor compresses message bodies. Its content type travels in the
// message's "compression" header, as Kombu sends it, and selects the
// decompressor on the other side.
//
// A Compressor is shared by every producer and consumer of a connection, so
// its methods must be safe for concurrent use.
type Compressor interface {
	Name() string        // "zlib"
	Aliases() []string   // other names producers may ask for: "gzip"
	ContentType() string // the "compression" header value: "application/x-gzip"
	Compress(src []byte) ([]byte, error)
	// Decompress returns at most limit bytes; a body that would be larger is
	// an error wrapping ErrLimitExceeded, so a small compressed bomb cannot
	// exhaust memory. The memory it uses must be bounded by the limit too,
	// whatever sizes the compressed body declares.
	Decompress(src []byte, limit int64) ([]byte, error)
}

// DefaultMaxBodySize bounds a decompressed message body unless
// WithMaxBodySize says otherwise.
const DefaultMaxBodySize = 64 << 20

// Kombu's compressions, with its names, aliases and header values:
//
//	zlib, gzip          application/x-gzip    a zlib stream (RFC 1950), as Kombu really sends
//	bzip2, bzip         application/x-bz2
//	lzma, xz            application/x-lzma    the xz container, as Python's lzma.compress
//	brotli              application/x-brotli
//	zstd, zstandard     application/zstd
//
// newBuiltinCompressors returns new instances for one connection: they keep
// pools of encoders and decoders, which are per connection rather than
// global.
func newBuiltinCompressors() []Compressor {
	return []Compressor{
		&zlibCompressor{},
		&bzip2Compressor{},
		&xzCompressor{},
		&brotliCompressor{},
		&zstdCompressor{},
	}
}

// zlibCompressor is Kombu's "zlib" (alias "gzip"): a zlib stream (RFC 1950),
// sent under the header value application/x-gzip, which is what Kombu really
// sends despite the name. A body in gzip framing (RFC 1952), which other
// producers may send under that header, is decompressed too.
type zlibCompressor struct {
	writers sync.Pool // *zlib.Writer
	readers sync.Pool // io.ReadCloser that is a zlib.Resetter
}

func (*zlibCompressor) Name() string        { return "zlib" }
func (*zlibCompressor) Aliases() []string   { return []string{"gzip"} }
func (*zlibCompressor) ContentType() string { return "application/x-gzip" }

func (z *zlibCompressor) Compress(src []byte) ([]byte, error) {
	return compressPooled(&z.writers, zlib.NewWriter, src)
}

// resettableWriter is a compressing writer that can be pointed at a new
// destination, so that one can be pooled: building one costs far more than
// compressing a small message.
type resettableWriter interface {
	io.WriteCloser
	Reset(io.Writer)
}

// compressPooled compresses src with a writer from pool, made with
// newWriter when the pool has none.
func compressPooled[W resettableWriter](pool *sync.Pool, newWriter func(io.Writer) W, src []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(src)/2 + 64)
	w, ok := pool.Get().(W)
	if ok {
		w.Reset(&buf)
	} else {
		w = newWriter(&buf)
	}
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	w.Reset(nil) // do not keep the message alive in the pool
	pool.Put(w)
	return buf.Bytes(), nil
}

func (z *zlibCompressor) Decompress(src []byte, limit int64) ([]byte, error) {
	if len(src) >= 2 && src[0] == 0x1f && src[1] == 0x8b {
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return readLimited(r, limit, len(src))
	}
	var r io.ReadCloser
	if pooled, _ := z.readers.Get().(io.ReadCloser); pooled != nil {
		if err := pooled.(zlib.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return nil, err
		}
		r = pooled
	} else {
		var err error
		if r, err = zlib.NewReader(bytes.NewReader(src)); err != nil {
			return nil, err
		}
	}
	out, err := readLimited(r, limit, len(src))
	if err == nil {
		z.readers.Put(r)
	}
	return out, err
}

// ReadLimited reads r to the end, failing with an error wrapping
// ErrLimitExceeded as soon as it has read more than limit bytes. Custom
// Compressors use it to honour their limit.
func ReadLimited(r io.Reader, limit int64) ([]byte, error) {
	return readLimited(r, limit, 0)
}

// readLimited is ReadLimited with a hint of the compressed size, from which
// it guesses the first buffer size (never more than limit).
func readLimited(r io.Reader, limit int64, compressedSize int) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: negative body size limit %d", ErrLimitExceeded, limit)
	}
	// Read one byte past the limit to tell "exactly at" from "over".
	// MaxInt64 means no limit; adding one would overflow.
	lr := io.LimitReader(r, limit)
	if limit < math.MaxInt64 {
		lr = io.LimitReader(r, limit+1)
	}
	guess := int64(compressedSize)*4 + 512
	// Read into chunks, each twice the last up to maxChunk, and join them
	// once at the end. A single buffer grown by doubling leaves each smaller
	// copy behind as garbage: refusing a bomb then held twice the limit or
	// more until the collector ran. Chunks hold the limit and one chunk.
	const maxChunk = 1 << 20
	size := min(guess, maxChunk)
	if limit < math.MaxInt64 {
		size = min(size, limit+1)
	}
	var chunks [][]byte
	var total int64
	for done := false; !done; {
		c := make([]byte, 0, max(size, 1))
		for len(c) < cap(c) {
			n, err := lr.Read(c[len(c):cap(c)])
			c = c[:len(c)+n]
			if total+int64(len(c)) > limit {
				return nil, fmt.Errorf("%w: decompressed body exceeds %d bytes", ErrLimitExceeded, limit)
			}
			if err == io.EOF {
				done = true
				break
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF // a stream that ends without its trailer
				}
				return nil, err
			}
		}
		chunks = append(chunks, c)
		total += int64(len(c))
		size = min(2*size, maxChunk)
		if limit < math.MaxInt64 {
			size = min(size, limit+1-total)
		}
	}
	if len(chunks) == 1 {
		return chunks[0], nil
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}

func (c *codecs) compressor(nameOrType string) (Compressor, error) {
	if z, ok := c.compressors[nameOrType]; ok {
		return z, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCompression, nameOrType)
}
