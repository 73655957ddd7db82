package cab

import (
	"errors"
	"fmt"
)

// maxCodeLen is the longest Huffman code LZX allows: tree lengths are
// coded modulo 17, so 16 bits.
const maxCodeLen = 16

var (
	errOverSubscribed = errors.New("Huffman code lengths over-subscribed")
	errIncomplete     = errors.New("Huffman code lengths leave codes unused")
	errEmptyTree      = errors.New("symbol read from a tree without codes")
	errBadCode        = errors.New("bit pattern is no code of the tree")
)

// huffman decodes canonical Huffman codes (shorter codes first, then in
// symbol order, most significant bit first) as LZX builds them from code
// lengths. Codes up to tableBits long resolve with one table look-up;
// longer ones walk the per-length counts, which LZX's long codes make rare.
type huffman struct {
	tableBits uint
	table     []uint16 // symbol<<5 | length; 0: the code is longer than tableBits
	count     [maxCodeLen + 1]uint16
	symbols   []uint16 // by code length, then by symbol
	empty     bool
}

func newHuffman(tableBits uint, maxSymbols int) *huffman {
	return &huffman{tableBits: tableBits, table: make([]uint16, 1<<tableBits), symbols: make([]uint16, 0, maxSymbols)}
}

// build makes the decoding tables from code lengths (0: symbol unused). A
// tree with no codes at all is accepted, as LZX sends one for a tree a
// block never uses; reading from it is an error. Any other tree must be
// complete, as every encoder LZX has had produces.
func (h *huffman) build(lens []uint8) error {
	h.count = [maxCodeLen + 1]uint16{}
	for _, l := range lens {
		if l > maxCodeLen {
			return fmt.Errorf("code length %d over %d", l, maxCodeLen)
		}
		h.count[l]++
	}
	h.count[0] = 0
	left := 1
	for l := 1; l <= maxCodeLen; l++ {
		left = left<<1 - int(h.count[l])
		if left < 0 {
			return errOverSubscribed
		}
	}
	h.empty = left == 1<<maxCodeLen
	if h.empty {
		return nil
	}
	if left != 0 {
		return errIncomplete
	}
	// Symbols sorted by length: offsets into h.symbols per length.
	var offs [maxCodeLen + 2]int
	for l := 1; l <= maxCodeLen; l++ {
		offs[l+1] = offs[l] + int(h.count[l])
	}
	h.symbols = h.symbols[:offs[maxCodeLen+1]]
	for s, l := range lens {
		if l != 0 {
			h.symbols[offs[l]] = uint16(s)
			offs[l]++
		}
	}
	clear(h.table)
	code, i := 0, 0
	for l := 1; l <= maxCodeLen; l++ {
		for n := 0; n < int(h.count[l]); n++ {
			if uint(l) <= h.tableBits {
				s := h.symbols[i]
				shift := h.tableBits - uint(l)
				start := code << shift
				e := s<<5 | uint16(l)
				for j := start; j < start+1<<shift; j++ {
					h.table[j] = e
				}
			}
			code++
			i++
		}
		code <<= 1
	}
	return nil
}

// decode reads one symbol.
func (h *huffman) decode(br *bitReader) (int, error) {
	if h.empty {
		return 0, errEmptyTree
	}
	if br.n < maxCodeLen {
		br.refill()
	}
	if e := h.table[br.buf>>(64-h.tableBits)]; e != 0 {
		br.consume(uint(e & 31))
		return int(e >> 5), nil
	}
	// Canonical decode bit by bit: at each length the codes form a run
	// starting at first.
	bits := br.buf
	code, first, index := 0, 0, 0
	for l := 1; l <= maxCodeLen; l++ {
		code |= int(bits >> 63)
		bits <<= 1
		count := int(h.count[l])
		if code-first < count {
			br.consume(uint(l))
			return int(h.symbols[index+code-first]), nil
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, errBadCode
}
