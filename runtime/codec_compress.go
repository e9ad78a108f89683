package kombu

import (
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/andybalholm/brotli"
	dsbzip2 "github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/zstd"
)

// bzip2Compressor is Kombu's "bzip2" (alias "bzip"), application/x-bz2.
// The standard library decodes (a bzip2 block never needs more than about
// 4 MB, whatever the body says); github.com/dsnet/compress encodes, as the
// standard library has no encoder.
type bzip2Compressor struct {
	writers [9]sync.Pool // *dsbzip2.Writer by level - 1
}

func (*bzip2Compressor) Name() string        { return "bzip2" }
func (*bzip2Compressor) Aliases() []string   { return []string{"bzip"} }
func (*bzip2Compressor) ContentType() string { return "application/x-bz2" }

func (z *bzip2Compressor) Compress(src []byte) ([]byte, error) {
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

func (*bzip2Compressor) Decompress(src []byte, limit int64) ([]byte, error) {
	return readLimited(bzip2.NewReader(bytes.NewReader(src)), limit, len(src))
}

// brotliCompressor is Kombu's "brotli", application/x-brotli. Brotli's
// window is at most 16 MiB (large windows are not enabled), so decoding
// needs at most that much besides the output.
type brotliCompressor struct {
	writers sync.Pool // *brotli.Writer
	readers sync.Pool // *brotli.Reader
}

func (*brotliCompressor) Name() string        { return "brotli" }
func (*brotliCompressor) Aliases() []string   { return nil }
func (*brotliCompressor) ContentType() string { return "application/x-brotli" }

// brotliQuality trades some ratio for speed: Python's brotli.compress uses
// 11, the slowest; 5 compresses a small message nearly as well, many times
// faster.
const brotliQuality = 5

func (z *brotliCompressor) Compress(src []byte) ([]byte, error) {
	return compressPooled(&z.writers, func(w io.Writer) *brotli.Writer {
		return brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: brotliQuality})
	}, src)
}

func (z *brotliCompressor) Decompress(src []byte, limit int64) ([]byte, error) {
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

// zstdCompressor is Kombu's "zstd" (alias "zstandard"), application/zstd.
// Its decoder refuses, before allocating, a frame that declares more
// content than the limit or a window larger than the limit (the window is
// the memory a streaming decoder keeps; no message needs one larger than
// itself).
type zstdCompressor struct {
	encOnce sync.Once
	enc     *zstd.Encoder
	encErr  error

	mu   sync.Mutex
	decs map[int64]*sync.Pool // of *zstd.Decoder, by limit: one limit per connection in practice
}

func (*zstdCompressor) Name() string        { return "zstd" }
func (*zstdCompressor) Aliases() []string   { return []string{"zstandard"} }
func (*zstdCompressor) ContentType() string { return "application/zstd" }

func (z *zstdCompressor) Compress(src []byte) ([]byte, error) {
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
func (z *zstdCompressor) decoders(limit int64) *sync.Pool {
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
func (z *zstdCompressor) decoder(pool *sync.Pool, limit int64) (*zstd.Decoder, error) {
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

func (z *zstdCompressor) Decompress(src []byte, limit int64) ([]byte, error) {
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
