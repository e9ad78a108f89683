package codec

import (
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync"

	"github.com/andybalholm/brotli"
	dsbzip2 "github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Zlib is Kombu's "zlib" (alias "gzip"): a zlib stream (RFC 1950), sent
// under the header value application/x-gzip, which is what Kombu really
// sends despite the name. A body in gzip framing (RFC 1952), which other
// producers may send under that header, is decompressed too. It uses
// github.com/klauspost/compress.
type Zlib struct {
	writers sync.Pool // *zlib.Writer
	readers sync.Pool // io.ReadCloser that is a zlib.Resetter
}

func (*Zlib) Name() string        { return "zlib" }
func (*Zlib) Aliases() []string   { return []string{"gzip"} }
func (*Zlib) ContentType() string { return "application/x-gzip" }

// Compress writes src as a zlib stream at the default level, as Python's
// zlib.compress does.
func (z *Zlib) Compress(src []byte) ([]byte, error) {
	return encoded(compressPooled(&z.writers, zlib.NewWriter, src))
}

// Decompress reads a zlib stream, or a gzip one, of at most limit bytes.
func (z *Zlib) Decompress(src []byte, limit int64) ([]byte, error) {
	return decoded(z.decompress(src, limit))
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

func (z *Zlib) decompress(src []byte, limit int64) ([]byte, error) {
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
// ErrLimitExceeded as soon as it has read more than limit bytes, and
// holding no more than about the limit meanwhile. A compressor of your own
// (a kombu.Compressor) reads its decompressing reader with it to honour its
// limit.
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

// Bzip2 is Kombu's "bzip2" (alias "bzip"), application/x-bz2.
// The standard library decodes (a bzip2 block never needs more than about
// 4 MB, whatever the body says); github.com/dsnet/compress encodes, as the
// standard library has no encoder.
type Bzip2 struct {
	writers [9]sync.Pool // *dsbzip2.Writer by level - 1
}

func (*Bzip2) Name() string        { return "bzip2" }
func (*Bzip2) Aliases() []string   { return []string{"bzip"} }
func (*Bzip2) ContentType() string { return "application/x-bz2" }

// Compress writes src as one bzip2 stream, with blocks just large enough
// for it.
func (z *Bzip2) Compress(src []byte) ([]byte, error) { return encoded(z.compress(src)) }

func (z *Bzip2) compress(src []byte) ([]byte, error) {
	// The level is the block size in units of 100 kB. One block that holds
	// the whole message compresses it as well as the largest would, and
	// spares the decoder (Python's included) the memory of a larger one.
	level := min(len(src)/100_000+1, 9)
	var buf bytes.Buffer
	w, _ := z.writers[level-1].Get().(*dsbzip2.Writer)
	if w == nil {
		var err error
		if w, err = dsbzip2.NewWriter(&buf, &dsbzip2.WriterConfig{Level: level}); err != nil {
			return nil, err
		}
	} else if err := w.Reset(&buf); err != nil {
		return nil, err
	}
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	z.writers[level-1].Put(w)
	return buf.Bytes(), nil
}

// Decompress reads bzip2 streams of at most limit bytes.
func (*Bzip2) Decompress(src []byte, limit int64) ([]byte, error) {
	return decoded(readLimited(bzip2.NewReader(bytes.NewReader(src)), limit, len(src)))
}

// Brotli is Kombu's "brotli", application/x-brotli, with
// github.com/andybalholm/brotli. Brotli's window is at most 16 MiB (large
// windows are not enabled), so decoding needs at most that much besides
// the output.
type Brotli struct {
	writers sync.Pool // *brotli.Writer
	readers sync.Pool // *brotli.Reader
}

func (*Brotli) Name() string        { return "brotli" }
func (*Brotli) Aliases() []string   { return nil }
func (*Brotli) ContentType() string { return "application/x-brotli" }

// brotliQuality trades some ratio for speed: Python's brotli.compress uses
// 11, the slowest; 5 compresses a small message nearly as well, many times
// faster.
const brotliQuality = 5

// Compress writes src as a brotli stream at quality 5.
func (z *Brotli) Compress(src []byte) ([]byte, error) {
	return encoded(compressPooled(&z.writers, func(w io.Writer) *brotli.Writer {
		return brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: brotliQuality})
	}, src))
}

// Decompress reads a brotli stream of at most limit bytes.
func (z *Brotli) Decompress(src []byte, limit int64) ([]byte, error) {
	return decoded(z.decompress(src, limit))
}

func (z *Brotli) decompress(src []byte, limit int64) ([]byte, error) {
	r, _ := z.readers.Get().(*brotli.Reader)
	if r == nil {
		r = brotli.NewReader(bytes.NewReader(src))
	} else if err := r.Reset(bytes.NewReader(src)); err != nil {
		return nil, err
	}
	out, err := readLimited(r, limit, len(src))
	if err == nil {
		_ = r.Reset(bytes.NewReader(nil))
		z.readers.Put(r)
	}
	return out, err
}

// Zstd is Kombu's "zstd" (alias "zstandard"), application/zstd, with
// github.com/klauspost/compress.
// Its decoder refuses, before allocating, a frame that declares more
// content than the limit or a window larger than the limit (the window is
// the memory a streaming decoder keeps; no message needs one larger than
// itself).
type Zstd struct {
	encOnce sync.Once
	enc     *zstd.Encoder
	encErr  error

	mu   sync.Mutex
	decs map[int64]*sync.Pool // of *zstd.Decoder, by limit: one limit per connection in practice
}

func (*Zstd) Name() string        { return "zstd" }
func (*Zstd) Aliases() []string   { return []string{"zstandard"} }
func (*Zstd) ContentType() string { return "application/zstd" }

// Compress writes src as one zstd frame that declares its content size.
func (z *Zstd) Compress(src []byte) ([]byte, error) { return encoded(z.compress(src)) }

func (z *Zstd) compress(src []byte) ([]byte, error) {
	z.encOnce.Do(func() {
		// EncodeAll writes the content size in the frame header, which
		// Python's zstandard needs to decompress a frame in one call.
		z.enc, z.encErr = zstd.NewWriter(nil, zstd.WithLowerEncoderMem(true))
	})
	if z.encErr != nil {
		return nil, z.encErr
	}
	return z.enc.EncodeAll(src, make([]byte, 0, len(src)/2+64)), nil
}

// decoders returns the pool of streaming decoders for a limit.
func (z *Zstd) decoders(limit int64) *sync.Pool {
	z.mu.Lock()
	defer z.mu.Unlock()
	if p, ok := z.decs[limit]; ok {
		return p
	}
	p := &sync.Pool{}
	if z.decs == nil {
		z.decs = make(map[int64]*sync.Pool, 1)
	}
	if len(z.decs) < 8 { // custom callers with many limits get a fresh pool each time
		z.decs[limit] = p
	}
	return p
}

// decoder returns a streaming decoder for the limit, from its pool or new.
// Streaming, with readLimited, keeps what refusing a bomb holds near the
// limit; DecodeAll grows its output by doubling, to twice the limit and
// more.
func (z *Zstd) decoder(pool *sync.Pool, limit int64) (*zstd.Decoder, error) {
	if d, ok := pool.Get().(*zstd.Decoder); ok {
		return d, nil
	}
	// Encoders round the window up to a power of two (a 1 KiB body gets a
	// 2 KiB window), so the window bound is the limit rounded up likewise,
	// and never below 64 KiB; readLimited enforces the exact limit.
	window := max(uint64(limit), 64<<10)
	window = min(uint64(1)<<bits.Len64(window-1), 1<<31)
	// The decoder also refuses a window above its memory bound; the output
	// itself is bounded by readLimited.
	memory := min(max(uint64(limit)+1, window), 1<<62)
	return zstd.NewReader(nil,
		zstd.WithDecoderMaxMemory(memory),
		zstd.WithDecoderMaxWindow(window),
		zstd.WithDecoderConcurrency(1), // decode on the caller's goroutine
		zstd.WithDecoderLowmem(true),
	)
}

// Decompress reads zstd frames of at most limit bytes.
func (z *Zstd) Decompress(src []byte, limit int64) ([]byte, error) {
	return decoded(z.decompress(src, limit))
}

func (z *Zstd) decompress(src []byte, limit int64) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: negative body size limit %d", ErrLimitExceeded, limit)
	}
	// Refuse a frame that declares more than the limit before the decoder
	// allocates for it.
	var h zstd.Header
	if err := h.Decode(src); err == nil && h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, fmt.Errorf("%w: zstd frame declares %d bytes; the limit is %d", ErrLimitExceeded, h.FrameContentSize, limit)
	}
	pool := z.decoders(limit)
	d, err := z.decoder(pool, limit)
	if err != nil {
		return nil, err
	}
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return nil, err
	}
	out, err := readLimited(d, limit, len(src))
	if d.Reset(nil) == nil {
		pool.Put(d)
	}
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return nil, fmt.Errorf("%w: decompressed body exceeds %d bytes", ErrLimitExceeded, limit)
	case errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, fmt.Errorf("%w: zstd window larger than the body limit (%d bytes)", ErrLimitExceeded, limit)
	case err != nil:
		return nil, err
	case int64(len(out)) > limit:
		return nil, fmt.Errorf("%w: decompressed body exceeds %d bytes", ErrLimitExceeded, limit)
	}
	return out, nil
}
