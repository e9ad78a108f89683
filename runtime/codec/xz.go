package codec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// LZMA is Kombu's "lzma" (alias "xz"): Python's lzma.compress, which
// writes the xz container, sent under application/x-lzma. It encodes with
// github.com/ulikunitz/xz.
//
// Decoding reads the xz container here rather than with xz.NewReader,
// because that reader allocates whatever dictionary each block header
// declares (up to 4 GiB) before decoding a byte. Here the dictionary is
// never larger than the limit on the decompressed size: a match cannot
// reach further back than the output so far, which the limit bounds, so a
// smaller dictionary decodes the same bytes.
type LZMA struct{}

func (*LZMA) Name() string        { return "lzma" }
func (*LZMA) Aliases() []string   { return []string{"xz"} }
func (*LZMA) ContentType() string { return "application/x-lzma" }

// Compress writes src as an xz stream with a dictionary no larger than it
// needs.
func (*LZMA) Compress(src []byte) ([]byte, error) { return encoded(compressXZ(src)) }

func compressXZ(src []byte) ([]byte, error) {
	// A dictionary larger than the message buys nothing and costs the
	// decoder (Python's included) the memory.
	dict := lzma.MinDictCap
	for dict < len(src) && dict < 8<<20 {
		dict <<= 1
	}
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: dict}.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decompress reads xz streams of at most limit bytes, in a dictionary no
// larger than the limit whatever the stream declares.
func (*LZMA) Decompress(src []byte, limit int64) ([]byte, error) {
	return decoded(decodeXZ(src, limit))
}

var (
	xzMagic       = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	xzFooterMagic = []byte{'Y', 'Z'}
	crc64Table    = crc64.MakeTable(crc64.ECMA)
	errXZ         = errors.New("xz: corrupt stream")
)

// xzCheckSize is the size of a block's check for each check type the xz
// format defines.
func xzCheckSize(typ byte) int {
	switch {
	case typ == 0:
		return 0
	case typ <= 3:
		return 4
	case typ <= 6:
		return 8
	case typ <= 9:
		return 16
	case typ <= 12:
		return 32
	}
	return 64
}

func xzHash(typ byte) (hash.Hash, error) {
	switch typ {
	case 0x00:
		return nil, nil
	case 0x01:
		return crc32.NewIEEE(), nil
	case 0x04:
		return crc64.New(crc64Table), nil
	case 0x0a:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("xz: unsupported check type %#x", typ)
}

// xzSum is the check as xz stores it: CRC32 and CRC64 little-endian,
// SHA-256 as is.
func xzSum(h hash.Hash) []byte {
	switch h := h.(type) {
	case hash.Hash32:
		return binary.LittleEndian.AppendUint32(nil, h.Sum32())
	case hash.Hash64:
		return binary.LittleEndian.AppendUint64(nil, h.Sum64())
	}
	return h.Sum(nil)
}

// xzDecoder decodes an xz file held in memory: one or more streams, each a
// header, blocks, an index and a footer, with zero padding between them.
type xzDecoder struct {
	src   []byte
	pos   int
	limit int64
	out   bytes.Buffer
	// dictBudget is what the blocks' dictionaries may still allocate in
	// all. Each block's dictionary is bounded by the limit; the budget
	// keeps a body of many tiny blocks, each declaring a large dictionary,
	// from allocating (and zeroing) that much memory over and over.
	dictBudget int64
}

func decodeXZ(src []byte, limit int64) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("%w: negative body size limit %d", ErrLimitExceeded, limit)
	}
	d := &xzDecoder{src: src, limit: limit, dictBudget: max(64<<20, limit)}
	if limit <= math.MaxInt64/2 {
		d.dictBudget = max(64<<20, 2*limit)
	}
	d.out.Grow(int(min(int64(len(src))*4+512, plusOne(limit), 1<<20)))
	if err := d.stream(); err != nil {
		return nil, err
	}
	for d.pos < len(d.src) {
		// Stream padding: groups of four zero bytes, then maybe another stream.
		if len(d.src)-d.pos >= 4 && bytes.Equal(d.src[d.pos:d.pos+4], []byte{0, 0, 0, 0}) {
			d.pos += 4
			continue
		}
		if err := d.stream(); err != nil {
			return nil, err
		}
	}
	return d.out.Bytes(), nil
}

func (d *xzDecoder) take(n int) ([]byte, error) {
	if n < 0 || len(d.src)-d.pos < n {
		return nil, fmt.Errorf("%w: truncated", errXZ)
	}
	b := d.src[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

// varint reads an xz multibyte integer (at most 9 bytes, minimal encoding).
func (d *xzDecoder) varint(b []byte, i *int) (uint64, error) {
	var v uint64
	for n := 0; n < 9; n++ {
		if *i >= len(b) {
			return 0, fmt.Errorf("%w: truncated integer", errXZ)
		}
		c := b[*i]
		*i++
		v |= uint64(c&0x7f) << (7 * n)
		if c&0x80 == 0 {
			if c == 0 && n > 0 {
				return 0, fmt.Errorf("%w: non-minimal integer", errXZ)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: integer too long", errXZ)
}

func (d *xzDecoder) stream() error {
	header, err := d.take(12)
	if err != nil {
		return err
	}
	if !bytes.Equal(header[:6], xzMagic) {
		return fmt.Errorf("%w: not an xz stream", errXZ)
	}
	flags := header[6:8]
	if flags[0] != 0 || flags[1]&0xf0 != 0 {
		return fmt.Errorf("%w: unsupported stream flags", errXZ)
	}
	if crc32.ChecksumIEEE(flags) != binary.LittleEndian.Uint32(header[8:]) {
		return fmt.Errorf("%w: stream header checksum", errXZ)
	}
	checkType := flags[1] & 0x0f
	type record struct{ unpadded, uncompressed uint64 }
	var records []record
	for {
		if d.pos >= len(d.src) {
			return fmt.Errorf("%w: truncated", errXZ)
		}
		if d.src[d.pos] == 0 { // index indicator
			break
		}
		unpadded, uncompressed, err := d.block(checkType)
		if err != nil {
			return err
		}
		records = append(records, record{unpadded, uncompressed})
	}

	// Index: indicator, count, records, padding, CRC32.
	start := d.pos
	idx := d.src[d.pos:]
	i := 1
	count, err := d.varint(idx, &i)
	if err != nil {
		return err
	}
	if count != uint64(len(records)) {
		return fmt.Errorf("%w: index has %d records for %d blocks", errXZ, count, len(records))
	}
	for _, r := range records {
		u, err := d.varint(idx, &i)
		if err != nil {
			return err
		}
		c, err := d.varint(idx, &i)
		if err != nil {
			return err
		}
		if u != r.unpadded || c != r.uncompressed {
			return fmt.Errorf("%w: index does not match the blocks", errXZ)
		}
	}
	for i%4 != 0 {
		if i >= len(idx) || idx[i] != 0 {
			return fmt.Errorf("%w: index padding", errXZ)
		}
		i++
	}
	if i+4 > len(idx) || crc32.ChecksumIEEE(idx[:i]) != binary.LittleEndian.Uint32(idx[i:]) {
		return fmt.Errorf("%w: index checksum", errXZ)
	}
	d.pos = start + i + 4
	indexSize := i + 4

	footer, err := d.take(12)
	if err != nil {
		return err
	}
	if crc32.ChecksumIEEE(footer[4:10]) != binary.LittleEndian.Uint32(footer) {
		return fmt.Errorf("%w: stream footer checksum", errXZ)
	}
	if (uint64(binary.LittleEndian.Uint32(footer[4:]))+1)*4 != uint64(indexSize) {
		return fmt.Errorf("%w: backward size", errXZ)
	}
	if !bytes.Equal(footer[8:10], flags) || !bytes.Equal(footer[10:], xzFooterMagic) {
		return fmt.Errorf("%w: stream footer", errXZ)
	}
	return nil
}

// block decodes one block and returns its unpadded and uncompressed sizes
// for the index.
func (d *xzDecoder) block(checkType byte) (unpadded, uncompressed uint64, err error) {
	blockStart := d.pos
	headerSize := (int(d.src[d.pos]) + 1) * 4
	header, err := d.take(headerSize)
	if err != nil {
		return 0, 0, err
	}
	body := header[:headerSize-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(header[headerSize-4:]) {
		return 0, 0, fmt.Errorf("%w: block header checksum", errXZ)
	}
	flags := body[1]
	if flags&0x3c != 0 {
		return 0, 0, fmt.Errorf("%w: unsupported block flags", errXZ)
	}
	i := 2
	wantCompressed, wantUncompressed := int64(-1), int64(-1)
	if flags&0x40 != 0 {
		v, err := d.varint(body, &i)
		if err != nil || v == 0 || v > 1<<62 {
			return 0, 0, fmt.Errorf("%w: compressed size", errXZ)
		}
		wantCompressed = int64(v)
	}
	if flags&0x80 != 0 {
		v, err := d.varint(body, &i)
		if err != nil || v > 1<<62 {
			return 0, 0, fmt.Errorf("%w: uncompressed size", errXZ)
		}
		wantUncompressed = int64(v)
		if wantUncompressed > d.limit-int64(d.out.Len()) {
			return 0, 0, fmt.Errorf("%w: xz block declares %d bytes; the limit is %d", ErrLimitExceeded, v, d.limit)
		}
	}
	filters := int(flags&3) + 1
	var dictSize uint64
	for f := 0; f < filters; f++ {
		id, err := d.varint(body, &i)
		if err != nil {
			return 0, 0, err
		}
		size, err := d.varint(body, &i)
		if err != nil {
			return 0, 0, err
		}
		if size > uint64(len(body)-i) {
			return 0, 0, fmt.Errorf("%w: filter properties", errXZ)
		}
		props := body[i : i+int(size)]
		i += int(size)
		if id != 0x21 || f != filters-1 || size != 1 {
			return 0, 0, fmt.Errorf("xz: unsupported filter %#x (only LZMA2 is supported)", id)
		}
		code := props[0]
		if code > 40 {
			return 0, 0, fmt.Errorf("%w: dictionary size", errXZ)
		}
		if code == 40 {
			dictSize = 1<<32 - 1
		} else {
			dictSize = uint64(2|code&1) << (code/2 + 11)
		}
	}
	for ; i < len(body); i++ {
		if body[i] != 0 {
			return 0, 0, fmt.Errorf("%w: block header padding", errXZ)
		}
	}

	// The dictionary need not exceed what the limit lets the block write.
	room := plusOne(d.limit - int64(d.out.Len()))
	if wantUncompressed >= 0 {
		room = min(room, wantUncompressed+1)
	}
	dict := max(min(int64(dictSize), room, lzma.MaxDictCap), lzma.MinDictCap)
	if dict > d.dictBudget {
		return 0, 0, fmt.Errorf("%w: the xz blocks' dictionaries need more memory than the body limit (%d bytes) allows", ErrLimitExceeded, d.limit)
	}
	d.dictBudget -= dict

	r := bytes.NewReader(d.src[d.pos:])
	var in io.Reader = r
	if wantCompressed >= 0 {
		in = io.LimitReader(r, wantCompressed)
	}
	lr, err := lzma.Reader2Config{DictCap: int(dict)}.NewReader2(in)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", errXZ, err)
	}
	h, err := xzHash(checkType)
	if err != nil {
		return 0, 0, err
	}
	before := d.out.Len()
	var w io.Writer = &d.out
	if h != nil {
		w = io.MultiWriter(&d.out, h)
	}
	n, err := io.Copy(w, io.LimitReader(lr, plusOne(d.limit-int64(before))))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", errXZ, err)
	}
	if int64(d.out.Len()) > d.limit {
		return 0, 0, fmt.Errorf("%w: decompressed body exceeds %d bytes", ErrLimitExceeded, d.limit)
	}
	compressed := int64(len(d.src)-d.pos) - int64(r.Len())
	d.pos += int(compressed)
	if wantCompressed >= 0 && compressed != wantCompressed || wantUncompressed >= 0 && n != wantUncompressed {
		return 0, 0, fmt.Errorf("%w: block sizes do not match its header", errXZ)
	}
	// Block padding to a multiple of four, then the check.
	for (d.pos-blockStart)%4 != 0 {
		if d.pos >= len(d.src) || d.src[d.pos] != 0 {
			return 0, 0, fmt.Errorf("%w: block padding", errXZ)
		}
		d.pos++
	}
	check, err := d.take(xzCheckSize(checkType))
	if err != nil {
		return 0, 0, err
	}
	if h != nil && !bytes.Equal(xzSum(h), check) {
		return 0, 0, fmt.Errorf("%w: block checksum", errXZ)
	}
	unpadded = uint64(headerSize) + uint64(compressed) + uint64(len(check))
	return unpadded, uint64(n), nil
}

// plusOne adds one without overflowing.
func plusOne(n int64) int64 {
	if n == math.MaxInt64 {
		return n
	}
	return n + 1
}
