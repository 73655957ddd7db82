package ntfs

import (
	"bytes"
	"unicode/utf16"
)

// $INDEX_ROOT, INDEX_HEADER, INDX block and index entry layouts.
const (
	irBlockSizeOff     = 8
	irHeaderOff        = 16
	ihEntriesOffsetOff = 0
	ihIndexLengthOff   = 4
	ihAllocatedOff     = 8
	ihFlagsOff         = 12
	ihSize             = 16
	indxSignature      = "INDX"
	indxVCNOff         = 16
	indxHeaderOff      = 24
	ieFileRefOff       = 0
	ieLengthOff        = 8
	ieKeyLengthOff     = 10
	ieFlagsOff         = 12
	ieKeyOff           = 16
	ieFlagSubnode      = 0x01
	ieFlagLast         = 0x02
	ieMinSize          = 16
	indexVCNBlock      = 512 // VCN unit when index blocks are smaller than a cluster
	maxIndexDepth      = 64
	maxIndexNodes      = 1 << 20
	i30                = "$I30"
)

// IndexEntry is one entry of a directory index, located on disk so a
// planner can rewrite it.
type IndexEntry struct {
	Record   uint64 // MFT record number of the entry's file
	Sequence uint16
	Key      FileName
	Subnode  int64 // VCN of the child node, or -1
	Last     bool
	// NodeVCN is -1 for an entry inside $INDEX_ROOT (then Offset is
	// relative to the MFT record), else the VCN of its INDX block (Offset
	// relative to that block).
	NodeVCN int64
	Offset  int
	Length  int
}

// IndexNode is one fixed-up INDX block of an $INDEX_ALLOCATION.
type IndexNode struct {
	VCN     int64
	Raw     []byte
	Extents []Extent
	Entries []IndexEntry
}

// dirIndex is an open $I30 index of one directory.
type dirIndex struct {
	v         *Volume
	f         *File
	root      []IndexEntry
	alloc     *Stream
	blockSize int64
	vcnSize   int64
}

func (v *Volume) openIndex(f *File) (*dirIndex, error) {
	recOff := f.Record.DiskOffset()
	var rootAttr *Attr
	for _, a := range f.Attrs {
		if a.Type == AttrIndexRoot && a.Name == i30 {
			rootAttr = a
		}
	}
	if rootAttr == nil || rootAttr.NonResident {
		return nil, formatErr(recOff, "MFT record", ErrNotDirectory, f.Record.Number, "record %d has no $I30 index root", f.Record.Number)
	}
	val := rootAttr.Value
	if len(val) < irHeaderOff+ihSize {
		return nil, formatErr(recOff+int64(rootAttr.RecordOffset), "$INDEX_ROOT", ErrBadIndex, len(val), "index root too short")
	}
	ix := &dirIndex{v: v, f: f, blockSize: int64(le32(val[irBlockSizeOff:]))}
	if ix.blockSize < multiSectorMin || ix.blockSize > maxRecordSize || ix.blockSize&(ix.blockSize-1) != 0 {
		return nil, formatErr(recOff+int64(rootAttr.RecordOffset), "$INDEX_ROOT", ErrBadIndex, ix.blockSize, "bad index block size")
	}
	ix.vcnSize = v.ClusterSize
	if ix.blockSize < v.ClusterSize {
		ix.vcnSize = indexVCNBlock
	}
	valueOff := rootAttr.RecordOffset + int(le16(f.Record.Raw[rootAttr.RecordOffset+attrValueOffsetOff:]))
	entries, err := parseIndexEntries(val, irHeaderOff, recOff+int64(valueOff), -1, valueOff)
	if err != nil {
		return nil, err
	}
	ix.root = entries
	for _, a := range f.Attrs {
		if a.Type == AttrIndexAllocation && a.Name == i30 {
			if ix.alloc, err = f.stream(AttrIndexAllocation, i30); err != nil {
				return nil, err
			}
			break
		}
	}
	return ix, nil
}

// parseIndexEntries decodes the entries following the INDEX_HEADER at
// b[hdr:]. abs is b's absolute offset for errors; base is added to entry
// offsets so they are relative to the enclosing record or block.
func parseIndexEntries(b []byte, hdr int, abs int64, nodeVCN int64, base int) ([]IndexEntry, error) {
	if hdr+ihSize > len(b) {
		return nil, formatErr(abs+int64(hdr), "index header", ErrBadIndex, len(b), "index header past the node")
	}
	start := hdr + int(le32(b[hdr+ihEntriesOffsetOff:]))
	end := hdr + int(le32(b[hdr+ihIndexLengthOff:]))
	if start < hdr+ihSize || end > len(b) || start > end {
		return nil, formatErr(abs+int64(hdr), "index header", ErrBadIndex, end, "entries %d..%d outside the %d-byte node", start, end, len(b))
	}
	var out []IndexEntry
	for pos := start; ; {
		if pos+ieMinSize > end {
			return nil, formatErr(abs+int64(pos), "index entry", ErrBadIndex, pos, "entries end without a last-entry marker")
		}
		length := int(le16(b[pos+ieLengthOff:]))
		keyLen := int(le16(b[pos+ieKeyLengthOff:]))
		flags := le16(b[pos+ieFlagsOff:])
		if length < ieMinSize || length%8 != 0 || pos+length > end {
			return nil, formatErr(abs+int64(pos+ieLengthOff), "index entry", ErrBadIndex, length, "entry length out of range")
		}
		e := IndexEntry{Subnode: -1, Last: flags&ieFlagLast != 0, NodeVCN: nodeVCN, Offset: base + pos, Length: length}
		if flags&ieFlagSubnode != 0 {
			if length < ieMinSize+8 {
				return nil, formatErr(abs+int64(pos), "index entry", ErrBadIndex, length, "entry too short for a subnode VCN")
			}
			e.Subnode = int64(le64(b[pos+length-8:]))
			if e.Subnode < 0 {
				return nil, formatErr(abs+int64(pos+length-8), "index entry", ErrBadIndex, e.Subnode, "negative subnode VCN")
			}
		}
		if !e.Last {
			if ieKeyOff+keyLen > length-subnodeBytes(flags) {
				return nil, formatErr(abs+int64(pos+ieKeyLengthOff), "index entry", ErrBadIndex, keyLen, "key runs past the entry")
			}
			ref := le64(b[pos+ieFileRefOff:])
			e.Record, e.Sequence = ref&mftRefRecordMask, uint16(ref>>48)
			fn, err := parseFileName(b[pos+ieKeyOff:pos+ieKeyOff+keyLen], abs+int64(pos+ieKeyOff))
			if err != nil {
				return nil, err
			}
			e.Key = fn
		}
		out = append(out, e)
		if e.Last {
			return out, nil
		}
		pos += length
	}
}

func subnodeBytes(flags uint16) int {
	if flags&ieFlagSubnode != 0 {
		return 8
	}
	return 0
}

// readNode reads, fixes up and parses the INDX block at vcn.
func (ix *dirIndex) readNode(vcn int64) (*IndexNode, error) {
	if ix.alloc == nil {
		return nil, formatErr(ix.f.Record.DiskOffset(), "$INDEX_ROOT", ErrBadIndex, vcn, "entry points at subnode VCN %d but directory %d has no $INDEX_ALLOCATION", vcn, ix.f.Record.Number)
	}
	off := vcn * ix.vcnSize
	if vcn < 0 || off/ix.vcnSize != vcn || off+ix.blockSize > ix.alloc.Size() {
		return nil, formatErr(ix.alloc.headerOffset, "$INDEX_ALLOCATION", ErrBadIndex, vcn, "subnode VCN %d outside the %d-byte index allocation", vcn, ix.alloc.Size())
	}
	extents, err := ix.alloc.diskExtents(off, ix.blockSize)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, ix.blockSize)
	if _, err := ix.alloc.ReadAt(raw, off); err != nil {
		return nil, err
	}
	abs := extents[0].Offset
	if !bytes.Equal(raw[:4], []byte(indxSignature)) {
		return nil, formatErr(abs, "INDX block", ErrBadIndex, string(raw[:4]), "VCN %d of directory %d has no INDX signature", vcn, ix.f.Record.Number)
	}
	if err := applyFixups(raw, abs, "INDX block"); err != nil {
		return nil, err
	}
	if got := int64(le64(raw[indxVCNOff:])); got != vcn {
		return nil, formatErr(abs+indxVCNOff, "INDX block", ErrBadIndex, got, "block at VCN %d says it is VCN %d", vcn, got)
	}
	entries, err := parseIndexEntries(raw, indxHeaderOff, abs, vcn, 0)
	if err != nil {
		return nil, err
	}
	return &IndexNode{VCN: vcn, Raw: raw, Extents: extents, Entries: entries}, nil
}

// lookup finds the entry named name (case-insensitively) by walking the B+
// tree from the root.
func (ix *dirIndex) lookup(name string) (*IndexEntry, error) {
	target := utf16.Encode([]rune(name))
	entries := ix.root
	visited := map[int64]bool{}
	for depth := 0; ; depth++ {
		next := int64(-1)
		for i := range entries {
			e := &entries[i]
			if !e.Last {
				c := ix.v.compareNames(target, e.Key.name16)
				if c == 0 {
					return e, nil
				}
				if c > 0 {
					continue
				}
			}
			next = e.Subnode
			break
		}
		if next < 0 {
			return nil, ErrNotFound
		}
		if visited[next] || depth >= maxIndexDepth {
			return nil, formatErr(ix.allocOffset(), "$INDEX_ALLOCATION", ErrBadIndex, next, "index of directory %d loops back to VCN %d", ix.f.Record.Number, next)
		}
		visited[next] = true
		node, err := ix.readNode(next)
		if err != nil {
			return nil, err
		}
		entries = node.Entries
	}
}

// walk visits every non-terminal entry in collation order.
func (ix *dirIndex) walk(fn func(e *IndexEntry)) error {
	visited := map[int64]bool{}
	var visit func(entries []IndexEntry, depth int) error
	visit = func(entries []IndexEntry, depth int) error {
		for i := range entries {
			e := &entries[i]
			if e.Subnode >= 0 {
				if visited[e.Subnode] || depth >= maxIndexDepth || len(visited) >= maxIndexNodes {
					return formatErr(ix.allocOffset(), "$INDEX_ALLOCATION", ErrBadIndex, e.Subnode, "index of directory %d loops back to VCN %d", ix.f.Record.Number, e.Subnode)
				}
				visited[e.Subnode] = true
				node, err := ix.readNode(e.Subnode)
				if err != nil {
					return err
				}
				if err := visit(node.Entries, depth+1); err != nil {
					return err
				}
			}
			if !e.Last {
				fn(e)
			}
		}
		return nil
	}
	return visit(ix.root, 0)
}

func (ix *dirIndex) allocOffset() int64 {
	if ix.alloc == nil {
		return ix.f.Record.DiskOffset()
	}
	return ix.alloc.headerOffset
}
