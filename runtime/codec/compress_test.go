package codec

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// compressor is what package kombu asks of a Compressor.
type compressor interface {
	Name() string
	Aliases() []string
	ContentType() string
	Compress(src []byte) ([]byte, error)
	Decompress(src []byte, limit int64) ([]byte, error)
}

// compressorFor returns a new compressor of this package by its Kombu name
// or alias.
func compressorFor(t testing.TB, name string) compressor {
	t.Helper()
	for _, z := range []compressor{&Zlib{}, &Bzip2{}, &LZMA{}, &Brotli{}, &Zstd{}} {
		if z.Name() == name || slices.Contains(z.Aliases(), name) {
			return z
		}
	}
	t.Fatalf("no compressor %q", name)
	return nil
}

// TestCompressionNamesAsKombu: each compressor has Kombu's name, aliases and
// header value (kombu/compression.py).
func TestCompressionNamesAsKombu(t *testing.T) {
	want := map[string]string{
		"zlib": "application/x-gzip", "gzip": "application/x-gzip",
		"bzip2": "application/x-bz2", "bzip": "application/x-bz2",
		"lzma": "application/x-lzma", "xz": "application/x-lzma",
		"brotli":    "application/x-brotli",
		"zstd":      "application/zstd",
		"zstandard": "application/zstd",
	}
	for alias, ct := range want {
		if z := compressorFor(t, alias); z.ContentType() != ct {
			t.Errorf("%s: content type %s, want %s", alias, z.ContentType(), ct)
		}
	}
}

func TestCompressionRoundTrips(t *testing.T) {
	payload := []byte(strings.Repeat(`{"order_id": "A-1", "items": [1, 2, 3]}`, 40))
	for _, name := range []string{"zlib", "bzip2", "lzma", "brotli", "zstd"} {
		t.Run(name, func(t *testing.T) {
			z := compressorFor(t, name)
			for _, in := range [][]byte{payload, {}, {0}} {
				c, err := z.Compress(in)
				if err != nil {
					t.Fatal(err)
				}
				out, err := z.Decompress(c, int64(len(in)))
				if err != nil || !bytes.Equal(out, in) {
					t.Fatalf("round trip of %d bytes: %d bytes, %v", len(in), len(out), err)
				}
				if len(in) > 0 {
					if _, err := z.Decompress(c, int64(len(in)-1)); !errors.Is(err, ErrLimitExceeded) {
						t.Fatalf("one byte over the limit: %v", err)
					}
				}
			}
			// Concurrent use, as consumers with several handlers do.
			done := make(chan error, 8)
			for range 8 {
				go func() {
					c, err := z.Compress(payload)
					if err == nil {
						var out []byte
						out, err = z.Decompress(c, 64<<20)
						if err == nil && !bytes.Equal(out, payload) {
							err = errors.New("mismatch")
						}
					}
					done <- err
				}()
			}
			for range 8 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestDecompressPythonBodies(t *testing.T) {
	var err error
	payload := strings.Repeat(`{"order_id": "A-1", "items": [1, 2, 3]}`, 3)
	// zlib.compress, bz2.compress and lzma.compress of payload, from Python 3.11.
	for name, body := range map[string]string{
		"zlib":  "789cab56ca2f4a492d8acf4c51b2525072d43554d25150ca2c49cd2d06f2a30d75148c74148c636baba9aa0c009476201a",
		"bzip2": "425a6839314159265359817b76c40000389f80500638102000000a86229c0a20005457ea80000681b5287a9ea0f4988c906a24c3927a3a3040e7276744908dc49893e2e3182e6c89c162c41091e3c7c5dc914e1424205eddb100",
		"lzma":  "fd377a585a000004e6d6b4460200210116000000742fe5a3e00074002d5d003d8889e7639bbfb9bbda583d06ff2d082a98a3c2a6913f5cb083e01666c0e4e100cdb9d409cc4c00cf3a9f0000000000007a63e3e19ec2b6b700014975d4c452211fb6f37d010000000004595a",
	} {
		b, _ := hex.DecodeString(body)
		out, err := compressorFor(t, name).Decompress(b, 1<<20)
		if err != nil || string(out) != payload {
			t.Errorf("%s: %q %v", name, out, err)
		}
	}
	// Variants Python writes: other xz checks, preset 9 (a 64 MiB
	// dictionary declared), concatenated streams and frames, zstd without a
	// content size, brotli (Debian's python3-brotli, python3-zstandard).
	for name, bodies := range map[string][]string{
		"lzma": {
			"fd377a585a000000ff12d9410200210116000000742fe5a30100076b6f6d62752d676f000001180840a546ac06729e7a010000000000595a",
			"fd377a585a0000016922de360200210116000000742fe5a30100076b6f6d62752d676f009563005900011c0844602ac89042990d010000000001595a",
			"fd377a585a00000ae1fb0ca10200210116000000742fe5a30100076b6f6d62752d676f00bc92fc00222a0dea49c9d8a64d4ee14efe2aa26c1e8bea24a233ce17ec8da52100013808e281c239189b4b9a01000000000a595a",
			"fd377a585a000004e6d6b446020021011c00000010cf58cc0100076b6f6d62752d676f00bbaf6353f4e34b7c00012008bb19d9bb1fb6f37d010000000004595a",
			"fd377a585a000004e6d6b4460200210116000000742fe5a30100046b6f6d627500000000f89eb73f8c73f89200011d05b82d80af1fb6f37d010000000004595a00000000fd377a585a000004e6d6b4460200210116000000742fe5a30100022d676f0000ddc32887cc2819d200011b030b2fb9101fb6f37d010000000004595a",
		},
		"zstd": {
			"28b52ffd00004100006b6f6d62752d676f",
			"28b52ffd20052900006b6f6d627528b52ffd20031900002d676f",
		},
		"brotli": {"8b03806b6f6d62752d676f03"},
		"bzip2":  {"425a68393141592653598a0b20ac0000008180100a8200200030cd00c1a500e2ee48a70a121141641580425a6839314159265359b9313786000000110000020080a000219819846177245385090b93137860"},
	} {
		for _, body := range bodies {
			b, _ := hex.DecodeString(body)
			var out []byte
			n := allocated(func() { out, err = compressorFor(t, name).Decompress(b, 1<<20) })
			if err != nil || string(out) != "kombu-go" {
				t.Errorf("%s %s…: %q %v", name, body[:24], out, err)
			}
			if n > 8<<20 {
				t.Errorf("%s %s…: allocated %d MiB for 8 bytes", name, body[:24], n>>20)
			}
		}
	}

	// gzip framing under application/x-gzip, as non-Kombu producers send it.
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(payload))
	w.Close()
	if out, err := compressorFor(t, "gzip").Decompress(gz.Bytes(), 1<<20); err != nil || string(out) != payload {
		t.Errorf("gzip framing: %q %v", out, err)
	}
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// checkBounded decompresses src with limit and wants ErrLimitExceeded (or,
// when wantErr is nil, any error), fast and without allocating much more
// than the limit.
func checkBounded(t *testing.T, z compressor, src []byte, limit int64, wantErr error) {
	t.Helper()
	var err error
	start := time.Now()
	n := allocated(func() { _, err = z.Decompress(src, limit) })
	if err == nil {
		t.Fatalf("%s: %d bytes decompressed without error", z.Name(), len(src))
	}
	if wantErr != nil && !errors.Is(err, wantErr) {
		t.Fatalf("%s: got %v, want %v", z.Name(), err, wantErr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%s: took %v", z.Name(), d)
	}
	// Total allocations (not the peak), so output buffers that grew and
	// dictionaries count in full; an unbounded decoder of the bombs below
	// allocates far more.
	if max := uint64(limit)*4 + 40<<20; n > max {
		t.Fatalf("%s: allocated %d MiB for a %d MiB limit", z.Name(), n>>20, limit>>20)
	}
	t.Logf("%s: %v after %d KiB allocated", z.Name(), err, n>>10)
}

func TestDecompressionBombs(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, 32<<20) // 32 MiB of zeros: each compresses to a few KiB or less
	for _, name := range []string{"zlib", "bzip2", "lzma", "brotli", "zstd"} {
		t.Run(name, func(t *testing.T) {
			z := compressorFor(t, name)
			src := zeros
			if name == "lzma" {
				src = zeros[:8<<20] // the slowest encoder (seconds under -race): 8 MiB is bomb enough
			}
			bomb, err := z.Compress(src)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d MiB → %d bytes", len(src)>>20, len(bomb))
			checkBounded(t, z, bomb, limit, ErrLimitExceeded)
		})
	}
}

func TestTruncatedAndGarbageBodies(t *testing.T) {
	payload := []byte(strings.Repeat("kombu-go ", 500))
	for _, name := range []string{"zlib", "bzip2", "lzma", "brotli", "zstd"} {
		z := compressorFor(t, name)
		c, err := z.Compress(payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, cut := range []int{0, 1, len(c) / 2, len(c) - 1} {
			if out, err := z.Decompress(c[:cut], 1<<20); err == nil && bytes.Equal(out, payload) {
				t.Errorf("%s cut at %d of %d: decompressed in full", name, cut, len(c))
			} else if err == nil && cut > 0 {
				t.Errorf("%s cut at %d of %d: %d bytes, no error", name, cut, len(c), len(out))
			}
		}
		for _, junk := range [][]byte{[]byte("not compressed at all"), bytes.Repeat([]byte{0xff}, 64)} {
			if _, err := z.Decompress(junk, 1<<20); err == nil {
				t.Errorf("%s: garbage decompressed", name)
			}
		}
		// Trailing garbage after a complete body.
		if _, err := z.Decompress(append(append([]byte(nil), c...), "junk"...), 1<<20); err == nil && name != "zlib" && name != "brotli" && name != "bzip2" {
			t.Errorf("%s: trailing garbage accepted", name)
		}
	}
}

func TestZstdDeclaredSizesAreNotTrusted(t *testing.T) {
	z := compressorFor(t, "zstd")
	// A frame header declaring 1 GiB of content, then one RLE block of 16
	// bytes: the decoder must refuse before allocating the gigabyte.
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0} // magic, FHD: 8-byte FCS, single segment
	frame = binary.LittleEndian.AppendUint64(frame, 1<<30)
	frame = append(frame, byte(16<<3|1<<1|1), 0, 0, 'A') // last RLE block of 16 'A'
	checkBounded(t, z, frame, 64<<20, ErrLimitExceeded)

	// No content size, a 2 GiB window: refused, not allocated.
	frame = []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (31 - 10) << 3} // window log 31
	frame = append(frame, byte(16<<3|1<<1|1), 0, 0, 'A')
	checkBounded(t, z, frame, 64<<20, ErrLimitExceeded)

	// No content size, a 128 KiB window, and 8192 RLE blocks of 128 KiB:
	// 1 GiB from 32 KiB. Stopped at the limit.
	frame = []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3}
	for i := range 8192 {
		last := 0
		if i == 8191 {
			last = 1
		}
		h := uint32(128<<10)<<3 | 1<<1 | uint32(last)
		frame = append(frame, byte(h), byte(h>>8), byte(h>>16), 'B')
	}
	checkBounded(t, z, frame, 8<<20, ErrLimitExceeded)
}

func TestXZDeclaredSizesAreNotTrusted(t *testing.T) {
	z := compressorFor(t, "lzma")
	payload := []byte(strings.Repeat("xz ", 1000))
	body, err := z.Compress(payload)
	if err != nil {
		t.Fatal(err)
	}
	// Stamp the largest dictionary the format allows (4 GiB) into the
	// block header: decoding must still work, in a dictionary no larger
	// than the limit.
	huge := xzWithDict(t, body, 40)
	var out []byte
	n := allocated(func() { out, err = z.Decompress(huge, 1<<20) })
	if err != nil || !bytes.Equal(out, payload) {
		t.Fatalf("4 GiB dictionary: %d bytes, %v", len(out), err)
	}
	if n > 8<<20 {
		t.Fatalf("4 GiB dictionary: allocated %d MiB", n>>20)
	}

	// A block header that declares 1 GiB of uncompressed data.
	big := xzWithUncompressedSize(t, body, 1<<30)
	checkBounded(t, z, big, 64<<20, ErrLimitExceeded)

	// Corrupt checksums are caught.
	bad := append([]byte(nil), body...)
	bad[len(bad)-20] ^= 1
	if _, err := z.Decompress(bad, 1<<20); err == nil {
		t.Fatal("corrupt index accepted")
	}
}

// xzWithDict rewrites the LZMA2 dictionary size code of the first block of
// an xz stream written by our encoder (one LZMA2 filter) and fixes the
// block header's CRC.
func xzWithDict(t *testing.T, body []byte, code byte) []byte {
	t.Helper()
	b := append([]byte(nil), body...)
	h := b[12:]
	size := (int(h[0]) + 1) * 4
	flags := h[1]
	i := 2
	if flags&0x40 != 0 || flags&0x80 != 0 || flags&3 != 0 {
		t.Fatalf("unexpected block flags %#x", flags)
	}
	if h[i] != 0x21 || h[i+1] != 1 {
		t.Fatalf("unexpected filter %x", h[i:i+2])
	}
	h[i+2] = code
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
	return b
}

// xzWithUncompressedSize replaces the first block header with one that
// declares n bytes of uncompressed data (the index no longer matches; the
// decoder must refuse the declaration before it gets there).
func xzWithUncompressedSize(t *testing.T, body []byte, n uint64) []byte {
	t.Helper()
	h := body[12:]
	oldSize := (int(h[0]) + 1) * 4
	filter := h[2:5]
	hdr := []byte{0, 0x80}
	for n >= 0x80 {
		hdr = append(hdr, byte(n)|0x80)
		n >>= 7
	}
	hdr = append(hdr, byte(n))
	hdr = append(hdr, filter...)
	for (len(hdr)+4)%4 != 0 {
		hdr = append(hdr, 0)
	}
	hdr[0] = byte((len(hdr)+4)/4 - 1)
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.ChecksumIEEE(hdr))
	out := append([]byte(nil), body[:12]...)
	out = append(out, hdr...)
	return append(out, h[oldSize:]...)
}

func TestReadLimitedBounds(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB: several chunks
	for _, tc := range []struct {
		name  string
		limit int64
		ok    bool
	}{
		{"no limit", math.MaxInt64, true},
		{"well above", int64(len(data)) * 2, true},
		{"exactly at", int64(len(data)), true},
		{"one byte under", int64(len(data)) - 1, false},
		{"zero", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadLimited(bytes.NewReader(data), tc.limit)
			if !tc.ok {
				if !errors.Is(err, ErrLimitExceeded) {
					t.Fatalf("got %d bytes, err %v; want ErrLimitExceeded", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes (equal %v), err %v", len(got), bytes.Equal(got, data), err)
			}
		})
	}
	if got, err := ReadLimited(bytes.NewReader(nil), 0); err != nil || len(got) != 0 {
		t.Fatalf("empty input with limit 0: %d bytes, %v", len(got), err)
	}
	if _, err := ReadLimited(iotest.TimeoutReader(bytes.NewReader(data)), math.MaxInt64); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("a reader's error: got %v", err)
	}
}

// A zstd frame written by a streaming encoder declares no content size, so
// only the decoder's own bound stops it: it must stop near the limit.
func TestZstdBombWithoutContentSize(t *testing.T) {
	const limit = 1 << 20
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithWindowSize(limit))
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range 64 { // 64 MiB of zeros
		w.Write(zeros)
	}
	w.Close()
	var h zstd.Header
	if err := h.Decode(buf.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("the bomb should declare no content size: %+v %v", h, err)
	}
	checkBounded(t, compressorFor(t, "zstd"), buf.Bytes(), limit, ErrLimitExceeded)
}

// Encoders round the window up to a power of two: a body at the limit whose
// window is larger than the limit is still accepted.
func TestZstdWindowRoundedUpToTheLimit(t *testing.T) {
	for _, size := range []int{1000, 1024, 3000, 100_000} {
		body := bytes.Repeat([]byte{'k'}, size)
		for i := range body {
			body[i] = byte(i * 7919 % 251) // not too compressible
		}
		var buf bytes.Buffer
		w, _ := zstd.NewWriter(&buf)
		w.Write(body)
		w.Close()
		out, err := compressorFor(t, "zstd").Decompress(buf.Bytes(), int64(size))
		if err != nil || !bytes.Equal(out, body) {
			t.Errorf("%d bytes at a limit of %d: %v", size, size, err)
		}
		if _, err := compressorFor(t, "zstd").Decompress(buf.Bytes(), int64(size-1)); !errors.Is(err, ErrLimitExceeded) {
			t.Errorf("%d bytes at a limit of %d: %v, want ErrLimitExceeded", size, size-1, err)
		}
	}
}
