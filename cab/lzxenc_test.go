package cab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// A minimal LZX encoder, written from the format description for tests
// only: it emits the block kinds the shared corpus lacks (uncompressed
// blocks of odd length, ending on and crossing frame ends) between
// verbatim blocks with fixed complete trees, greedy matches using the
// three repeated offsets, and E8 translation. cabextract decodes what it
// makes, which tests the encoder's reading of the format and our decoder
// against the same bytes.

// lzxBitWriter writes LZX's stream: bits MSB first into 16-bit
// little-endian words, cut into one CFDATA payload per 32 KiB frame.
type lzxBitWriter struct {
	frames [][]byte
	cur    []byte
	buf    uint32
	n      uint
}

func (w *lzxBitWriter) bits(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.buf = w.buf<<1 | (v>>uint(i))&1
		w.n++
		if w.n == 16 {
			w.cur = append(w.cur, byte(w.buf), byte(w.buf>>8))
			w.buf, w.n = 0, 0
		}
	}
}

// pad fills the partial word with zeros (always: a whole zero word when
// already aligned, as before an uncompressed block's R0..R2).
func (w *lzxBitWriter) pad(always bool) {
	if w.n > 0 {
		w.bits(0, 16-w.n)
	} else if always {
		w.bits(0, 16)
	}
}

func (w *lzxBitWriter) endFrame() {
	w.pad(false)
	w.frames = append(w.frames, w.cur)
	w.cur = nil
}

// canonical assigns canonical Huffman codes to code lengths.
func canonical(lens []uint8) []uint32 {
	codes := make([]uint32, len(lens))
	code := uint32(0)
	for l := uint8(1); l <= maxCodeLen; l++ {
		for s, sl := range lens {
			if sl == l {
				codes[s] = code
				code++
			}
		}
		code <<= 1
	}
	return codes
}

// completeLens gives n symbols code lengths forming a complete tree.
func completeLens(n int) []uint8 {
	l := uint8(0)
	for 1<<l < n {
		l++
	}
	short := 1<<l - n
	lens := make([]uint8, n)
	for i := range lens {
		lens[i] = l
		if i < short {
			lens[i] = l - 1
		}
	}
	return lens
}

type lzxBlockPlan struct {
	kind, length int
}

type lzxEncoder struct {
	w                    lzxBitWriter
	data                 []byte // E8-translated input
	pos                  int
	r                    [3]uint32
	slots                int
	mainLens, lengthLens []uint8
	mainCodes            []uint32
	lengthCodes          []uint32
	preLens              []uint8
	preCodes             []uint32
	prevMain, prevLength []uint8
	last                 map[uint32]int
}

func (e *lzxEncoder) sym(codes []uint32, lens []uint8, s int) {
	e.w.bits(codes[s], uint(lens[s]))
}

func (e *lzxEncoder) writeLens(prev, cur []uint8) {
	for _, l := range e.preLens {
		e.w.bits(uint32(l), 4)
	}
	for i := range cur {
		z := (int(prev[i]) - int(cur[i]) + 17) % 17
		e.sym(e.preCodes, e.preLens, z)
		prev[i] = cur[i]
	}
}

// advance notes one output byte done and ends the frame at 32 KiB.
func (e *lzxEncoder) advance(n int) {
	e.pos += n
	if e.pos%maxFrame == 0 {
		e.w.endFrame()
	}
}

func (e *lzxEncoder) uncompressed(length int) {
	e.w.bits(lzxBlockUncompressed, 3)
	e.w.bits(uint32(length>>8), 16)
	e.w.bits(uint32(length&0xFF), 8)
	e.w.pad(true)
	for _, r := range e.r {
		e.w.cur = binary.LittleEndian.AppendUint32(e.w.cur, r)
	}
	for i := 0; i < length; i++ {
		e.w.cur = append(e.w.cur, e.data[e.pos])
		if i == length-1 && length&1 == 1 {
			e.w.cur = append(e.w.cur, 0)
		}
		e.advance(1)
	}
}

func (e *lzxEncoder) verbatim(length int) {
	e.w.bits(lzxBlockVerbatim, 3)
	e.w.bits(uint32(length>>8), 16)
	e.w.bits(uint32(length&0xFF), 8)
	e.writeLens(e.prevMain[:256], e.mainLens[:256])
	e.writeLens(e.prevMain[256:], e.mainLens[256:])
	e.writeLens(e.prevLength, e.lengthLens)
	end := e.pos + length
	for e.pos < end {
		limit := min(end, (e.pos/maxFrame+1)*maxFrame, len(e.data)) - e.pos
		dist, n := e.match(limit)
		if n < 3 {
			e.sym(e.mainCodes, e.mainLens, int(e.data[e.pos]))
			e.remember(e.pos)
			e.advance(1)
			continue
		}
		var slot int
		switch uint32(dist) {
		case e.r[0]:
			slot = 0
		case e.r[1]:
			slot = 1
			e.r[0], e.r[1] = e.r[1], e.r[0]
		case e.r[2]:
			slot = 2
			e.r[0], e.r[2] = e.r[2], e.r[0]
		default:
			f := uint32(dist + 2)
			for slot = e.slots - 1; lzxPositionBase[slot] > f; slot-- {
			}
			e.r[2], e.r[1], e.r[0] = e.r[1], e.r[0], uint32(dist)
		}
		hdr := n - 2
		if hdr > 7 {
			hdr = 7
		}
		e.sym(e.mainCodes, e.mainLens, 256+slot*8+hdr)
		if hdr == 7 {
			e.sym(e.lengthCodes, e.lengthLens, n-2-7)
		}
		if slot >= 3 {
			e.w.bits(uint32(dist+2)-lzxPositionBase[slot], lzxExtraBits[slot])
		}
		for i := 0; i < n; i++ {
			e.remember(e.pos)
			e.advance(1)
		}
	}
}

func (e *lzxEncoder) key(p int) uint32 {
	return uint32(e.data[p]) | uint32(e.data[p+1])<<8 | uint32(e.data[p+2])<<16
}

func (e *lzxEncoder) remember(p int) {
	if p+3 <= len(e.data) {
		e.last[e.key(p)] = p
	}
}

// match finds a match at the current position (repeated offsets first)
// of at most limit bytes.
func (e *lzxEncoder) match(limit int) (dist, n int) {
	limit = min(limit, 257)
	if limit < 3 {
		return 0, 0
	}
	try := func(d int) int {
		if d <= 0 || d > e.pos || d > 1<<15-3 {
			return 0
		}
		k := 0
		for k < limit && e.data[e.pos+k] == e.data[e.pos+k-d] {
			k++
		}
		return k
	}
	for _, r := range e.r {
		if k := try(int(r)); k >= 3 {
			return int(r), k
		}
	}
	if p, ok := e.last[e.key(e.pos)]; ok {
		if k := try(e.pos - p); k >= 3 {
			return e.pos - p, k
		}
	}
	return 0, 0
}

// lzxEncode compresses data (LZX:15) into per-frame payloads following plan.
func lzxEncode(data []byte, e8Size int32, plan []lzxBlockPlan) [][]byte {
	t := bytes.Clone(data)
	if e8Size != 0 {
		for f := 0; f*maxFrame < len(t); f++ {
			end := min((f+1)*maxFrame, len(t))
			if end-f*maxFrame > lzxE8Tail {
				e8Encode(t[f*maxFrame:end], int32(f*maxFrame), e8Size)
			}
		}
	}
	slots := lzxPositionSlots[0]
	e := &lzxEncoder{
		data: t, r: [3]uint32{1, 1, 1}, slots: slots,
		mainLens:   completeLens(lzxNumChars + slots*8),
		lengthLens: completeLens(lzxSecondaryLens),
		preLens:    completeLens(lzxPretreeSyms),
		last:       map[uint32]int{},
	}
	e.mainCodes, e.lengthCodes, e.preCodes = canonical(e.mainLens), canonical(e.lengthLens), canonical(e.preLens)
	e.prevMain = make([]uint8, len(e.mainLens))
	e.prevLength = make([]uint8, len(e.lengthLens))
	if e8Size != 0 {
		e.w.bits(1, 1)
		e.w.bits(uint32(e8Size)>>16, 16)
		e.w.bits(uint32(e8Size)&0xFFFF, 16)
	} else {
		e.w.bits(0, 1)
	}
	for _, b := range plan {
		if b.kind == lzxBlockUncompressed {
			e.uncompressed(b.length)
		} else {
			e.verbatim(b.length)
		}
	}
	if e.pos%maxFrame != 0 {
		e.w.endFrame()
	}
	return e.w.frames
}

// writeCabinet wraps one folder of per-frame payloads (with their
// uncompressed sizes) and one member into a cabinet file.
func writeCabinet(t *testing.T, path string, comp Compression, frames [][]byte, size int, member string) {
	t.Helper()
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	filesAt := cfheaderSize + cffolderSize
	dataAt := filesAt + cffileSize + len(member) + 1
	total := dataAt
	for _, f := range frames {
		total += cfdataSize + len(f)
	}
	b.WriteString(signature)
	le(uint32(0))
	le(uint32(total))
	le(uint32(0))
	le(uint32(filesAt))
	le(uint32(0))
	b.Write([]byte{3, 1})
	le(uint16(1)) // cFolders
	le(uint16(1)) // cFiles
	le(uint16(0)) // flags
	le(uint16(0x4B56))
	le(uint16(0))
	le(uint32(dataAt))
	le(uint16(len(frames)))
	le(uint16(comp))
	le(uint32(size))
	le(uint32(0))
	le(uint16(0))
	le(uint16(0x5B21)) // 2025-09-01
	le(uint16(0))
	le(uint16(0x20))
	b.WriteString(member)
	b.WriteByte(0)
	for i, f := range frames {
		un := min(maxFrame, size-i*maxFrame)
		var hdr [4]byte
		binary.LittleEndian.PutUint16(hdr[0:], uint16(len(f)))
		binary.LittleEndian.PutUint16(hdr[2:], uint16(un))
		le(checksum(hdr[:], checksum(f, 0)))
		b.Write(hdr[:])
		b.Write(f)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lzxTestData mixes random bytes (with E8 bytes among them) and text.
func lzxTestData(n int) []byte {
	rng := rand.New(rand.NewPCG(5, 8))
	var b bytes.Buffer
	for b.Len() < n {
		if rng.IntN(3) == 0 {
			for i := 0; i < 3000; i++ {
				b.WriteByte(byte(rng.Uint32()))
			}
			b.Write([]byte{0xE8, 0x10, 0, 0, 0, 0xE8, 0xF0, 0xFF, 0xFF, 0xFF})
		} else {
			for i := 0; i < 200; i++ {
				fmt.Fprintf(&b, "line %d of driver %d\r\n", rng.IntN(50), rng.IntN(9))
			}
		}
	}
	return b.Bytes()[:n]
}

// TestLZXUncompressedBlocks decodes hand-encoded LZX:15 streams with
// uncompressed blocks of odd length that end on a frame end and cross one,
// verbatim blocks around them, and E8 translation on and off; cabextract
// decodes the same cabinets to the original bytes.
func TestLZXUncompressedBlocks(t *testing.T) {
	const size = 110000
	data := lzxTestData(size)
	plans := map[string][]lzxBlockPlan{
		"mixed": {
			{lzxBlockVerbatim, 1001},
			{lzxBlockUncompressed, 31767}, // odd, ends on the first frame's end
			{lzxBlockVerbatim, 20000},
			{lzxBlockUncompressed, 40001}, // odd, crosses a frame end
			{lzxBlockUncompressed, 5},
			{lzxBlockVerbatim, size - 1001 - 31767 - 20000 - 40001 - 5},
		},
		"uncompressed-first": {
			{lzxBlockUncompressed, 3},
			{lzxBlockVerbatim, size - 3},
		},
	}
	for name, plan := range plans {
		for _, e8 := range []int32{0, 1 << 20} {
			t.Run(fmt.Sprintf("%s-e8-%d", name, e8), func(t *testing.T) {
				frames := lzxEncode(data, e8, plan)
				packed := 0
				for _, f := range frames {
					packed += len(f)
				}
				if name == "uncompressed-first" && packed > size/2 {
					t.Errorf("encoder packs %d bytes into %d: its matches are not working", size, packed)
				}
				p := filepath.Join(t.TempDir(), "lzx.cab")
				writeCabinet(t, p, Compression(CompressLZX|15<<8), frames, size, "data.bin")
				want, ok := cabextractSHA256(t, p, "data.bin")
				if !ok {
					t.Fatalf("cabextract cannot decode the test encoder's cabinet")
				}
				c := openFile(t, p)
				got, err := c.ReadFile("data.bin", size)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("decoded bytes differ from the input")
				}
				if sum, _, _ := memberSHA256(c, "data.bin"); sum != want {
					t.Errorf("sha256 %s, cabextract %s", sum, want)
				}
			})
		}
	}
}
