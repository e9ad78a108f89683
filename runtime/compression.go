package kombu

import (
	"fmt"

	"github.com/kombu-go/kombu/runtime/codec"
)

// A Compressor compresses message bodies. Its content type travels in the
// message's "compression" header, as Kombu sends it, and selects the
// decompressor on the other side.
//
// Every connection has Kombu's compressions, from package codec, under
// Kombu's names, aliases and header values:
//
//	zlib, gzip       application/x-gzip    a zlib stream (RFC 1950), as Kombu really sends
//	bzip2, bzip      application/x-bz2
//	lzma, xz         application/x-lzma    the xz container, as Python's lzma.compress
//	brotli           application/x-brotli
//	zstd, zstandard  application/zstd
//
// Add compressors per connection with WithCustomCompressors; one with a built-in's
// name, alias or content type replaces it on that connection.
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
	// exhaust memory (codec.ReadLimited does that for a decompressing
	// io.Reader). The memory it uses must be bounded by the limit too,
	// whatever sizes the compressed body declares.
	Decompress(src []byte, limit int64) ([]byte, error)
}

// DefaultMaxBodySize bounds a decompressed message body unless
// WithMaxBodySize says otherwise.
const DefaultMaxBodySize = 64 << 20

// newBuiltinCompressors returns new instances for one connection: they keep
// pools of encoders and decoders, which are per connection rather than
// global.
func newBuiltinCompressors() []Compressor {
	return []Compressor{
		&codec.Zlib{},
		&codec.Bzip2{},
		&codec.LZMA{},
		&codec.Brotli{},
		&codec.Zstd{},
	}
}

func (c *codecs) compressor(nameOrType string) (Compressor, error) {
	if z, ok := c.compressors[nameOrType]; ok {
		return z, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownCompression, nameOrType)
}
