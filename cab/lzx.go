package cab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// LZX as MS-CAB uses it (the format Microsoft documents in [MS-PATCH]
// "LZX DELTA" without its delta extensions, and in the original LZX
// description of the Cabinet SDK): an LZ77 window of 2^15..2^21 bytes,
// Huffman-coded literals and matches in blocks of three kinds, and an
// optional x86 CALL (E8) translation of the output. In a cabinet each
// CFDATA block holds the input for one 32 KiB output frame; the decoder's
// window, trees and repeated offsets carry from frame to frame of a folder.
const (
	lzxMinWindow     = 15
	lzxMaxWindow     = 21
	lzxNumChars      = 256
	lzxMinMatch      = 2
	lzxPrimaryLens   = 7   // length headers 0..6 are whole lengths; 7 reads the length tree
	lzxSecondaryLens = 249 // length tree symbols
	lzxPretreeSyms   = 20
	lzxAlignedSyms   = 8
	lzxMaxSlots      = 50 // position slots for a 2 MiB window
	lzxMainMax       = lzxNumChars + lzxMaxSlots*8
	// lzxLenSafety is slack after each length table: a pretree run (at
	// most 51 zeros or repeats) may run past the table's last symbol, which
	// the reference decoder tolerates and real encoders may rely on.
	lzxLenSafety = 64

	lzxBlockVerbatim     = 1
	lzxBlockAligned      = 2
	lzxBlockUncompressed = 3

	// E8 translation stops after the first 32768 frames (1 GiB) and skips
	// the last 10 bytes of every frame.
	lzxE8MaxFrames = 32768
	lzxE8Tail      = 10

	// Huffman table sizes (bits resolved by one look-up).
	lzxMainTableBits    = 11
	lzxLengthTableBits  = 10
	lzxPretreeTableBits = 6
	lzxAlignedTableBits = 7
)

// lzxPositionSlots is the number of position slots per window size
// (index: window bits - 15).
var lzxPositionSlots = [...]int{30, 32, 34, 36, 38, 42, 50}

// lzxExtraBits and lzxPositionBase describe each position slot: the
// number of verbatim bits after the slot and the offset (plus 2) it starts at.
var lzxExtraBits, lzxPositionBase = func() (extra [lzxMaxSlots]uint, base [lzxMaxSlots]uint32) {
	for i := range extra {
		switch {
		case i < 4:
			extra[i] = 0
		case i/2-1 > 17:
			extra[i] = 17
		default:
			extra[i] = uint(i/2 - 1)
		}
		if i > 0 {
			base[i] = base[i-1] + 1<<extra[i-1]
		}
	}
	return
}()

var (
	errLZXBlockType   = errors.New("invalid LZX block type")
	errLZXInputEnds   = errors.New("LZX input ends before the frame is complete")
	errLZXMatchOffset = errors.New("LZX match reaches before the start of the data")
	errLZXFrameEnd    = errors.New("LZX match runs past the end of its block or frame")
	errLZXMainEmpty   = errors.New("LZX main tree has no code lengths")
)

// lzx is the decoder state of one folder.
type lzx struct {
	window  []byte
	mask    int
	wpos    int   // next write position in window
	total   int64 // bytes output since the start of the folder
	frames  int
	r       [3]uint32
	numMain int

	headerRead bool
	e8Size     int32 // E8 translation size; 0: no translation

	blockType      int
	blockLength    int
	blockRemaining int

	mainLens   [lzxMainMax + lzxLenSafety]uint8
	lengthLens [lzxSecondaryLens + lzxLenSafety]uint8
	preLens    [lzxPretreeSyms]uint8
	alignLens  [lzxAlignedSyms]uint8
	main       *huffman
	length     *huffman
	pretree    *huffman
	aligned    *huffman

	br       bitReader
	leftover []byte
	joined   []byte
}

func newLZX(windowBits int) (decompressor, error) {
	if windowBits < lzxMinWindow || windowBits > lzxMaxWindow {
		return nil, fmt.Errorf("%w: LZX window 2^%d (LZX allows 2^%d..2^%d)", ErrUnsupported, windowBits, lzxMinWindow, lzxMaxWindow)
	}
	slots := lzxPositionSlots[windowBits-lzxMinWindow]
	return &lzx{
		window:  make([]byte, 1<<windowBits),
		mask:    1<<windowBits - 1,
		r:       [3]uint32{1, 1, 1},
		numMain: lzxNumChars + slots*8,
		main:    newHuffman(lzxMainTableBits, lzxMainMax),
		length:  newHuffman(lzxLengthTableBits, lzxSecondaryLens),
		pretree: newHuffman(lzxPretreeTableBits, lzxPretreeSyms),
		aligned: newHuffman(lzxAlignedTableBits, lzxAlignedSyms),
	}, nil
}

// decode expands one frame: in is its CFDATA payload, out its bytes.
func (l *lzx) decode(in, out []byte) error {
	data := in
	if len(l.leftover) > 0 {
		l.joined = append(append(l.joined[:0], l.leftover...), in...)
		data = l.joined
	}
	l.br.reset(data)
	if !l.headerRead {
		// The stream opens with the E8 translation flag and size.
		if l.br.bits(1) == 1 {
			hi := l.br.bits(16)
			lo := l.br.bits(16)
			l.e8Size = int32(hi<<16 | lo)
		}
		l.headerRead = true
	}
	frameStart := l.wpos
	need := len(out)
	for produced := 0; produced < need; {
		if l.blockRemaining == 0 {
			if err := l.readBlockHeader(); err != nil {
				return err
			}
		}
		run := min(l.blockRemaining, need-produced)
		var n int
		var err error
		if l.blockType == lzxBlockUncompressed {
			n, err = l.copyRaw(run)
		} else {
			n, err = l.decodeMatches(run, produced)
		}
		if err != nil {
			return err
		}
		if n > l.blockRemaining || produced+n > need {
			return errLZXFrameEnd
		}
		l.blockRemaining -= n
		produced += n
	}
	if l.br.overrun() {
		return errLZXInputEnds
	}
	// Realign to 16 bits for the next frame (not in the bytewise state an
	// uncompressed block leaves), keeping any input left for it.
	if l.br.n != 0 {
		l.br.alignTo16(false)
	}
	if l.br.pos < len(data) {
		l.leftover = append(l.leftover[:0], data[l.br.pos:]...)
	} else {
		l.leftover = l.leftover[:0]
	}

	if end := frameStart + need; end <= len(l.window) {
		copy(out, l.window[frameStart:end])
	} else {
		k := copy(out, l.window[frameStart:])
		copy(out[k:], l.window)
	}
	if l.e8Size != 0 && l.frames < lzxE8MaxFrames && need > lzxE8Tail {
		l.translateE8(out)
	}
	l.frames++
	l.total += int64(need)
	return nil
}

// readBlockHeader reads a block's type and size and its trees (or, for an
// uncompressed block, its repeated offsets).
func (l *lzx) readBlockHeader() error {
	br := &l.br
	if l.blockType == lzxBlockUncompressed && l.blockLength&1 == 1 {
		// An uncompressed block of odd length is padded to a 16-bit word.
		if br.bytes(1) == nil {
			return errLZXInputEnds
		}
	}
	l.blockType = int(br.bits(3))
	hi := br.bits(16)
	lo := br.bits(8)
	l.blockLength = int(hi<<8 | lo)
	l.blockRemaining = l.blockLength
	if br.overrun() {
		return errLZXInputEnds
	}
	switch l.blockType {
	case lzxBlockAligned:
		for i := range l.alignLens {
			l.alignLens[i] = uint8(br.bits(3))
		}
		if err := l.aligned.build(l.alignLens[:]); err != nil {
			return fmt.Errorf("LZX aligned offset tree: %w", err)
		}
		fallthrough
	case lzxBlockVerbatim:
		if err := l.readLengths(l.mainLens[:], 0, lzxNumChars); err != nil {
			return fmt.Errorf("LZX main tree: %w", err)
		}
		if err := l.readLengths(l.mainLens[:], lzxNumChars, l.numMain); err != nil {
			return fmt.Errorf("LZX main tree: %w", err)
		}
		if err := l.main.build(l.mainLens[:l.numMain]); err != nil {
			return fmt.Errorf("LZX main tree: %w", err)
		}
		if l.main.empty {
			return errLZXMainEmpty
		}
		if err := l.readLengths(l.lengthLens[:], 0, lzxSecondaryLens); err != nil {
			return fmt.Errorf("LZX length tree: %w", err)
		}
		if err := l.length.build(l.lengthLens[:lzxSecondaryLens]); err != nil {
			return fmt.Errorf("LZX length tree: %w", err)
		}
	case lzxBlockUncompressed:
		br.alignTo16(true)
		rs := br.bytes(12)
		if rs == nil {
			return errLZXInputEnds
		}
		for i := range l.r {
			l.r[i] = binary.LittleEndian.Uint32(rs[4*i:])
		}
	default:
		return fmt.Errorf("%w %d", errLZXBlockType, l.blockType)
	}
	if br.overrun() {
		return errLZXInputEnds
	}
	return nil
}

// readLengths reads code lengths for lens[first:last] through a pretree,
// each coded as a change modulo 17 from the length the symbol had in the
// previous block.
func (l *lzx) readLengths(lens []uint8, first, last int) error {
	br := &l.br
	for i := range l.preLens {
		l.preLens[i] = uint8(br.bits(4))
	}
	if err := l.pretree.build(l.preLens[:]); err != nil {
		return fmt.Errorf("pretree: %w", err)
	}
	fill := func(x, n int, v uint8) (int, error) {
		if x+n > len(lens) {
			return 0, fmt.Errorf("pretree run of %d at symbol %d runs past the table", n, x)
		}
		for i := 0; i < n; i++ {
			lens[x+i] = v
		}
		return x + n, nil
	}
	for x := first; x < last; {
		z, err := l.pretree.decode(br)
		if err != nil {
			return fmt.Errorf("pretree: %w", err)
		}
		switch z {
		case 17: // run of 4..19 zeros
			x, err = fill(x, 4+int(br.bits(4)), 0)
		case 18: // run of 20..51 zeros
			x, err = fill(x, 20+int(br.bits(5)), 0)
		case 19: // run of 4..5 of one changed length
			n := 4 + int(br.bits(1))
			var d int
			if d, err = l.pretree.decode(br); err != nil {
				return fmt.Errorf("pretree: %w", err)
			}
			if d > 16 {
				return fmt.Errorf("pretree: run value %d over 16", d)
			}
			x, err = fill(x, n, uint8((int(lens[x])+17-d)%17))
		default:
			lens[x] = uint8((int(lens[x]) + 17 - z) % 17)
			x++
		}
		if err != nil {
			return err
		}
		if br.overrun() {
			return errLZXInputEnds
		}
	}
	return nil
}

// decodeMatches decodes literals and matches of a verbatim or aligned
// block until at least run bytes are out; the last match may overshoot,
// which the caller checks. produced is what the frame has so far.
func (l *lzx) decodeMatches(run, produced int) (int, error) {
	br := &l.br
	w, mask, pos := l.window, l.mask, l.wpos
	avail := l.total + int64(produced) // bytes a match may reach back to
	alignedBlock := l.blockType == lzxBlockAligned
	n := 0
	for n < run {
		sym, err := l.main.decode(br)
		if err != nil {
			return 0, fmt.Errorf("LZX main tree: %w", err)
		}
		if sym < lzxNumChars {
			w[pos] = byte(sym)
			pos = (pos + 1) & mask
			n++
			continue
		}
		sym -= lzxNumChars
		length := sym&7 + lzxMinMatch
		if sym&7 == lzxPrimaryLens {
			extra, err := l.length.decode(br)
			if err != nil {
				return 0, fmt.Errorf("LZX length tree: %w", err)
			}
			length += extra
		}
		var off uint32
		switch slot := sym >> 3; slot {
		case 0:
			off = l.r[0]
		case 1:
			off = l.r[1]
			l.r[1] = l.r[0]
			l.r[0] = off
		case 2:
			off = l.r[2]
			l.r[2] = l.r[0]
			l.r[0] = off
		default:
			extra := lzxExtraBits[slot]
			off = lzxPositionBase[slot] - 2
			if alignedBlock && extra >= 3 {
				off += br.bits(extra-3) << 3
				a, err := l.aligned.decode(br)
				if err != nil {
					return 0, fmt.Errorf("LZX aligned offset tree: %w", err)
				}
				off += uint32(a)
			} else {
				off += br.bits(extra)
			}
			l.r[2] = l.r[1]
			l.r[1] = l.r[0]
			l.r[0] = off
		}
		if int64(off) > avail+int64(n) || int(off) > len(w) || off == 0 {
			return 0, fmt.Errorf("%w: offset %d at output byte %d", errLZXMatchOffset, off, avail+int64(n))
		}
		src := (pos - int(off)) & mask
		if end := pos + length; src < pos && end <= len(w) {
			// No wrap: copy in runs that double, as the bytes from src
			// repeat with period off.
			for d := pos; d < end; {
				d += copy(w[d:end], w[src:d])
			}
			pos = end & mask
		} else {
			for i := 0; i < length; i++ {
				w[pos] = w[src]
				pos = (pos + 1) & mask
				src = (src + 1) & mask
			}
		}
		n += length
		if br.overrun() {
			return 0, errLZXInputEnds
		}
	}
	l.wpos = pos
	return n, nil
}

// copyRaw copies run bytes of an uncompressed block into the window.
func (l *lzx) copyRaw(run int) (int, error) {
	p := l.br.bytes(run)
	if p == nil {
		return 0, errLZXInputEnds
	}
	for len(p) > 0 {
		k := copy(l.window[l.wpos:], p)
		p = p[k:]
		l.wpos = (l.wpos + k) & l.mask
	}
	return run, nil
}

// translateE8 undoes the encoder's x86 CALL translation in one frame: an
// E8 byte's 32-bit operand was turned from relative to absolute (against
// the byte's position in the folder) when it fell in [-pos, e8Size).
func (l *lzx) translateE8(out []byte) {
	base := int32(l.total)
	limit := len(out) - lzxE8Tail
	for i := 0; i < limit; {
		k := bytes.IndexByte(out[i:limit], 0xE8)
		if k < 0 {
			break
		}
		i += k
		cur := base + int32(i)
		abs := int32(binary.LittleEndian.Uint32(out[i+1:]))
		if abs >= -cur && abs < l.e8Size {
			rel := abs - cur
			if abs < 0 {
				rel = abs + l.e8Size
			}
			binary.LittleEndian.PutUint32(out[i+1:], uint32(rel))
		}
		i += 5
	}
}
