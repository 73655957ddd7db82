package registry

import "encoding/binary"

// Subkey list layouts ("lf", "lh", "li", "ri"): a signature, a 16-bit element
// count, then the elements.
const (
	listCountOffset    = 2
	listElementsOffset = 4
	listHeaderSize     = listElementsOffset

	leafHashElementSize = 8 // lf/lh: key node offset + name hint or hash
	indexElementSize    = 4 // li: key node offset; ri: leaf list offset

	valueListElementSize = 4
)

// listEntry is one element of a subkey list: a key node offset and, for lf
// and lh lists, the stored hash.
type listEntry struct {
	off  uint32
	hash uint32
}

// readList decodes one subkey list cell (of any of the four kinds).
func (h *Hive) readList(off uint32) (sig [2]byte, entries []listEntry, err error) {
	b, err := h.cell(off, "subkey list")
	if err != nil {
		return sig, nil, err
	}
	if len(b) < listHeaderSize {
		return sig, nil, formatErr(abs(off), "subkey list", len(b), "cell too small for a list header")
	}
	sig = [2]byte(b[:2])
	count := int(binary.LittleEndian.Uint16(b[listCountOffset:]))
	elem := indexElementSize
	switch sig {
	case sigLF, sigLH:
		elem = leafHashElementSize
	case sigLI, sigRI:
	default:
		return sig, nil, formatErr(abs(off)+cellSizeFieldSize, "subkey list", string(b[:2]), "expected an lf, lh, li or ri list")
	}
	if count*elem > len(b)-listHeaderSize {
		return sig, nil, formatErr(abs(off)+cellSizeFieldSize+listCountOffset, string(sig[:]), count, "element count exceeds the list cell (%d bytes)", len(b))
	}
	entries = make([]listEntry, count)
	for i := range entries {
		p := b[listElementsOffset+i*elem:]
		entries[i].off = binary.LittleEndian.Uint32(p)
		if elem == leafHashElementSize {
			entries[i].hash = binary.LittleEndian.Uint32(p[4:])
		}
	}
	return sig, entries, nil
}

// subkeyOffsets returns the key node entries reachable from the subkey list
// at off, flattening one level of ri (Windows never nests ri lists, so a
// nested one is an error, which also rules out ri loops).
func (h *Hive) subkeyOffsets(off uint32, seen *cellSet) ([]listEntry, error) {
	if !seen.claim(off) {
		return nil, formatErr(abs(off), "subkey list", off, "list referenced twice by one key")
	}
	sig, entries, err := h.readList(off)
	if err != nil {
		return nil, err
	}
	if sig != sigRI {
		return entries, nil
	}
	var out []listEntry
	for _, e := range entries {
		if !seen.claim(e.off) {
			return nil, formatErr(abs(e.off), "subkey list", e.off, "ri list names this leaf twice")
		}
		sub, leaf, err := h.readList(e.off)
		if err != nil {
			return nil, err
		}
		if sub == sigRI {
			return nil, formatErr(abs(e.off), "ri", e.off, "ri list nested in an ri list")
		}
		out = append(out, leaf...)
	}
	return out, nil
}

// valueOffsets returns the count vk offsets of the value list at off.
func (h *Hive) valueOffsets(off, count uint32, seen *cellSet) ([]uint32, error) {
	if count == 0 {
		return nil, nil
	}
	if !seen.claim(off) {
		return nil, formatErr(abs(off), "value list", off, "list referenced twice (reference loop)")
	}
	b, err := h.cell(off, "value list")
	if err != nil {
		return nil, err
	}
	if uint64(count)*valueListElementSize > uint64(len(b)) {
		return nil, formatErr(abs(off), "value list", count, "value count exceeds the list cell (%d bytes)", len(b))
	}
	out := make([]uint32, count)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[i*valueListElementSize:])
	}
	return out, nil
}
