package ntfs

import (
	"bytes"
)

// $INDEX_ROOT value and INDX block fields used when building them.
const (
	irAttrTypeOff      = 0
	irCollationOff     = 4
	irClustersPerIxOff = 12
	ihFlagLarge        = 0x01 // root: an $INDEX_ALLOCATION exists; block: not a leaf
	indxUSAOff         = 0x28
	fixupStride        = 512 // NTFS protects multi-sector records in 512-byte strides whatever the sector size
	ixBitmapGrowBytes  = 8   // $I30 $BITMAP grows 8 bytes (64 blocks) at a time, as Windows and ntfs-3g do
	// rootReserve keeps room in the directory's record for its
	// $INDEX_ALLOCATION runlist and $BITMAP to grow within one insertion.
	rootReserve = 24
)

// ixEntry is one $I30 index entry held in memory: the file reference, the
// $FILE_NAME key and the child node VCN (-1 for none). The last entry of a
// node has no key.
type ixEntry struct {
	ref    uint64
	key    []byte
	name16 []uint16
	sub    int64
	last   bool
}

func (e *ixEntry) encodedLen() int {
	n := ieKeyOff + align8(len(e.key))
	if e.sub >= 0 {
		n += 8
	}
	return n
}

func (e *ixEntry) encode(b []byte) int {
	n := e.encodedLen()
	clear(b[:n])
	var flags uint16
	if !e.last {
		put64(b[ieFileRefOff:], e.ref)
		put16(b[ieKeyLengthOff:], uint16(len(e.key)))
		copy(b[ieKeyOff:], e.key)
	} else {
		flags |= ieFlagLast
	}
	if e.sub >= 0 {
		flags |= ieFlagSubnode
		put64(b[n-8:], uint64(e.sub))
	}
	put16(b[ieLengthOff:], uint16(n))
	put16(b[ieFlagsOff:], flags)
	return n
}

func entriesLen(es []ixEntry) int {
	n := 0
	for i := range es {
		n += es[i].encodedLen()
	}
	return n
}

func hasChildren(es []ixEntry) bool {
	for i := range es {
		if es[i].sub >= 0 {
			return true
		}
	}
	return false
}

// ixEntriesFrom copies parsed entries out of the bytes b they were parsed
// from (b is the MFT record for root entries, the INDX block otherwise).
func ixEntriesFrom(b []byte, parsed []IndexEntry) []ixEntry {
	out := make([]ixEntry, len(parsed))
	for i, p := range parsed {
		e := ixEntry{sub: p.Subnode, last: p.Last}
		if !p.Last {
			kl := int(le16(b[p.Offset+ieKeyLengthOff:]))
			e.ref = le64(b[p.Offset+ieFileRefOff:])
			e.key = append([]byte(nil), b[p.Offset+ieKeyOff:p.Offset+ieKeyOff+kl]...)
			e.name16 = p.Key.name16
		}
		out[i] = e
	}
	return out
}

// ixNode is one INDX block held in memory. raw is the fixed-up block as
// read (nil for a new block).
type ixNode struct {
	vcn     int64
	entries []ixEntry
	raw     []byte
	extents []Extent
	dirty   bool
}

// ixDir is a directory's $I30 B+ tree opened for insertion. Nodes are read
// on demand and kept; changed ones are written whole at the end.
type ixDir struct {
	c       *creator
	f       *File
	src     *dirIndex
	blockSz int64
	vcnSz   int64
	// root entries; rootDirty when they changed.
	root      []ixEntry
	rootDirty bool
	nodes     map[int64]*ixNode
	// The $INDEX_ALLOCATION and $BITMAP as they will be.
	hasAlloc, allocNew, allocDirty bool
	allocRuns                      []Run
	allocData, allocSize           int64
	bitmap                         []byte
	bitmapDirty                    bool
	// entriesOff is where entries start in a new block's INDEX_HEADER,
	// usaCount its update sequence array length.
	entriesOff, usaCount int
	// sib is the sibling whose security new files copy, found once.
	sib *siblingInfo
}

func (c *creator) openDir(f *File) (*ixDir, error) {
	if d, ok := c.dirs[f.Number()]; ok {
		return d, nil
	}
	src, err := c.v.openIndex(f)
	if err != nil {
		return nil, err
	}
	d := &ixDir{c: c, f: f, src: src, blockSz: src.blockSize, vcnSz: src.vcnSize, nodes: map[int64]*ixNode{}}
	recOff := f.Record.DiskOffset()
	var rootAttr *Attr
	for _, a := range f.Attrs {
		if a.Type == AttrIndexRoot && a.Name == i30 {
			rootAttr = a
		}
	}
	val := rootAttr.Value
	if t := AttrType(le32(val[irAttrTypeOff:])); t != AttrFileName {
		return nil, formatErr(recOff, "$INDEX_ROOT", ErrUnsupported, t, "directory %d indexes %s, not $FILE_NAME", f.Number(), t)
	}
	if cr := le32(val[irCollationOff:]); cr != collationFileName {
		return nil, formatErr(recOff, "$INDEX_ROOT", ErrUnsupported, cr, "directory %d uses collation rule %d, not file-name collation", f.Number(), cr)
	}
	var rootRec *Record
	for _, r := range append([]*Record{f.Record}, f.Extensions...) {
		if r.Number == rootAttr.Record {
			rootRec = r
		}
	}
	d.root = ixEntriesFrom(rootRec.Raw, src.root)
	d.usaCount = int(d.blockSz/fixupStride) + 1
	d.entriesOff = align8(indxUSAOff+2*d.usaCount) - indxHeaderOff
	if src.alloc != nil {
		a := src.alloc
		if a.Resident() || a.Compressed() || a.Sparse() || a.Encrypted() || len(a.Fragments) != 1 {
			return nil, formatErr(a.headerOffset, "$INDEX_ALLOCATION", ErrUnsupported, f.Number(),
				"directory %d's index allocation is not one plain non-resident attribute", f.Number())
		}
		d.hasAlloc = true
		d.allocRuns = append([]Run(nil), a.Runs...)
		d.allocData, d.allocSize = a.Size(), a.AllocatedSize()
		bm, err := f.stream(AttrBitmap, i30)
		if err != nil {
			return nil, err
		}
		if !bm.Resident() {
			return nil, formatErr(bm.headerOffset, "$I30 $BITMAP", ErrUnsupported, f.Number(),
				"directory %d's index bitmap is non-resident (an index of thousands of blocks)", f.Number())
		}
		d.bitmap = append([]byte(nil), bm.resident...)
	}
	c.dirs[f.Number()] = d
	return d, nil
}

// collationFileName is COLLATION_FILE_NAME, the $I30 collation rule.
const collationFileName = 1

// node returns the in-memory node at vcn, reading it on first use.
func (d *ixDir) node(vcn int64) (*ixNode, error) {
	if n, ok := d.nodes[vcn]; ok {
		return n, nil
	}
	in, err := d.src.readNode(vcn)
	if err != nil {
		return nil, err
	}
	n := &ixNode{vcn: vcn, entries: ixEntriesFrom(in.Raw, in.Entries), raw: in.Raw, extents: in.Extents}
	d.nodes[vcn] = n
	return n, nil
}

// capacity is the number of entry bytes a block holds.
func (d *ixDir) capacity(n *ixNode) int {
	if n.raw != nil {
		h := n.raw[indxHeaderOff:]
		return int(le32(h[ihAllocatedOff:])) - int(le32(h[ihEntriesOffsetOff:]))
	}
	return int(d.blockSz) - indxHeaderOff - d.entriesOff
}

// step remembers where the descent went: the node (-1 for the root) and
// the index of the entry whose subnode was followed.
type step struct {
	vcn int64
	i   int
}

func (d *ixDir) entriesOf(vcn int64) (*[]ixEntry, error) {
	if vcn < 0 {
		return &d.root, nil
	}
	n, err := d.node(vcn)
	if err != nil {
		return nil, err
	}
	return &n.entries, nil
}

func (d *ixDir) markDirty(vcn int64) {
	if vcn < 0 {
		d.rootDirty = true
		return
	}
	d.nodes[vcn].dirty = true
}

// insert adds e in collation order. A name equal to an existing key
// (case-insensitively, through $UpCase) is refused: files are never
// replaced. A full block is split around its middle entry, which moves up
// to the parent; a root that no longer fits the directory's MFT record
// moves all its entries to a new block and keeps only a pointer to it, as
// Windows and ntfs-3g do.
func (d *ixDir) insert(e ixEntry) error {
	var path []step
	cur := int64(-1)
	for depth := 0; ; depth++ {
		es, err := d.entriesOf(cur)
		if err != nil {
			return err
		}
		i := 0
		for ; i < len(*es); i++ {
			x := &(*es)[i]
			if x.last {
				break
			}
			c := d.c.v.compareNames(e.name16, x.name16)
			if c == 0 {
				return formatErr(d.f.Record.DiskOffset(), "$I30 index", ErrExists, x.name(),
					"directory %d already holds %q; existing files are never replaced", d.f.Number(), x.name())
			}
			if c < 0 {
				break
			}
		}
		if i == len(*es) {
			return formatErr(d.f.Record.DiskOffset(), "$I30 index", ErrBadIndex, cur, "index node without a last entry")
		}
		if sub := (*es)[i].sub; sub >= 0 {
			if depth >= maxIndexDepth {
				return formatErr(d.src.allocOffset(), "$INDEX_ALLOCATION", ErrBadIndex, sub, "index of directory %d deeper than %d", d.f.Number(), maxIndexDepth)
			}
			path = append(path, step{cur, i})
			cur = sub
			continue
		}
		*es = append(*es, ixEntry{})
		copy((*es)[i+1:], (*es)[i:])
		(*es)[i] = e
		d.markDirty(cur)
		break
	}
	return d.rebalance(cur, path)
}

// rebalance splits overfull nodes from vcn up to the root.
func (d *ixDir) rebalance(cur int64, path []step) error {
	for {
		if cur < 0 {
			fits, err := d.rootFits()
			if err != nil || fits {
				return err
			}
			// Move the whole root into a new block.
			vcn, err := d.newBlock()
			if err != nil {
				return err
			}
			n := d.nodes[vcn]
			n.entries = d.root
			d.root = []ixEntry{{last: true, sub: vcn}}
			d.rootDirty = true
			path = []step{{-1, 0}}
			cur = vcn
			continue
		}
		n := d.nodes[cur]
		if entriesLen(n.entries) <= d.capacity(n) {
			return nil
		}
		keys := len(n.entries) - 1
		if keys < 3 {
			return formatErr(d.src.allocOffset(), "INDX block", ErrBadIndex, keys, "directory %d: %d entries overflow a %d-byte block", d.f.Number(), keys, d.blockSz)
		}
		k := d.splitPoint(n.entries)
		mid := n.entries[k]
		leftVCN, err := d.newBlock()
		if err != nil {
			return err
		}
		left := d.nodes[leftVCN]
		left.entries = append(append([]ixEntry(nil), n.entries[:k]...), ixEntry{last: true, sub: mid.sub})
		n.entries = append([]ixEntry(nil), n.entries[k+1:]...)
		n.dirty = true
		mid.sub = leftVCN
		parent := path[len(path)-1]
		path = path[:len(path)-1]
		pes, err := d.entriesOf(parent.vcn)
		if err != nil {
			return err
		}
		*pes = append(*pes, ixEntry{})
		copy((*pes)[parent.i+1:], (*pes)[parent.i:])
		(*pes)[parent.i] = mid
		d.markDirty(parent.vcn)
		cur = parent.vcn
	}
}

// splitPoint picks the entry whose bytes-before are closest to half.
func (d *ixDir) splitPoint(es []ixEntry) int {
	total := entriesLen(es[:len(es)-1])
	acc := 0
	for i := 0; i < len(es)-1; i++ {
		acc += es[i].encodedLen()
		if 2*acc >= total {
			return max(1, min(i, len(es)-3))
		}
	}
	return (len(es) - 1) / 2
}

// newBlock takes a free block of the index allocation (a clear bit of
// $BITMAP, else one past the end, growing the allocation by clusters from
// $Bitmap and $BITMAP by 8 bytes when needed) and returns its VCN.
func (d *ixDir) newBlock() (int64, error) {
	c := d.c
	if !d.hasAlloc {
		if len(d.f.AttrList) > 0 {
			return 0, formatErr(d.f.Record.DiskOffset(), "MFT record", ErrUnsupported, d.f.Number(),
				"directory %d has an $ATTRIBUTE_LIST; adding an $INDEX_ALLOCATION to it is not supported", d.f.Number())
		}
		d.hasAlloc, d.allocNew = true, true
		d.bitmap = make([]byte, ixBitmapGrowBytes)
	}
	blocks := d.allocData / d.blockSz
	i := int64(0)
	for ; i < blocks; i++ {
		if d.bitmap[i/8]&(1<<(i%8)) == 0 {
			break
		}
	}
	if i == blocks {
		d.allocData += d.blockSz
		if d.allocData > d.allocSize {
			cs := c.v.ClusterSize
			need := (d.allocData - d.allocSize + cs - 1) / cs
			goal := int64(0)
			if n := len(d.allocRuns); n > 0 {
				goal = d.allocRuns[n-1].LCN + d.allocRuns[n-1].Length
			}
			bm, err := c.bitmap()
			if err != nil {
				return 0, err
			}
			added, err := bm.allocate(need, goal)
			if err != nil {
				return 0, err
			}
			d.allocRuns = appendRuns(d.allocRuns, added)
			d.allocSize += need * cs
		}
		d.allocDirty = true
	}
	for i/8 >= int64(len(d.bitmap)) {
		d.bitmap = append(d.bitmap, make([]byte, ixBitmapGrowBytes)...)
	}
	d.bitmap[i/8] |= 1 << (i % 8)
	d.bitmapDirty = true
	vcn := i * d.blockSz / d.vcnSz
	ext, err := runExtents(d.allocRuns, c.v.ClusterSize, i*d.blockSz, d.blockSz)
	if err != nil {
		return 0, err
	}
	d.nodes[vcn] = &ixNode{vcn: vcn, extents: ext, dirty: true}
	return vcn, nil
}

// rootFits reports whether the directory's record still holds the root.
func (d *ixDir) rootFits() (bool, error) {
	re, ai, err := d.rootAttr()
	if err != nil {
		return false, err
	}
	old := re.attrs[ai]
	re.attrs[ai] = withResidentValue(old, d.rootValue(residentValue(old)))
	used := re.used()
	re.attrs[ai] = old
	reserve := rootReserve
	if !d.hasAlloc {
		// A later overflow adds $INDEX_ALLOCATION and $BITMAP; the root
		// then shrinks to one entry, so nothing more is needed now.
		reserve = 0
	}
	return used+reserve <= re.allocated(), nil
}

func (d *ixDir) rootAttr() (*recEdit, int, error) {
	for _, a := range d.f.Attrs {
		if a.Type == AttrIndexRoot && a.Name == i30 {
			re, err := d.c.edit(a.Record, d.f)
			if err != nil {
				return nil, 0, err
			}
			ai := re.find(AttrIndexRoot, i30)
			if ai < 0 {
				return nil, 0, formatErr(d.f.Record.DiskOffset(), "MFT record", ErrBadRecord, a.Record, "record %d lost its $INDEX_ROOT", a.Record)
			}
			return re, ai, nil
		}
	}
	return nil, 0, formatErr(d.f.Record.DiskOffset(), "MFT record", ErrNotDirectory, d.f.Number(), "record %d has no $I30 index root", d.f.Number())
}

// rootValue builds the $INDEX_ROOT value from the old one's first 16
// bytes (indexed type, collation, block size) and the in-memory entries.
func (d *ixDir) rootValue(old []byte) []byte {
	n := entriesLen(d.root)
	v := make([]byte, irHeaderOff+ihSize+n)
	copy(v, old[:irHeaderOff])
	h := v[irHeaderOff:]
	put32(h[ihEntriesOffsetOff:], ihSize)
	put32(h[ihIndexLengthOff:], uint32(ihSize+n))
	put32(h[ihAllocatedOff:], uint32(ihSize+n))
	if d.hasAlloc {
		h[ihFlagsOff] = ihFlagLarge
	}
	pos := ihSize
	for i := range d.root {
		pos += d.root[i].encode(h[pos:])
	}
	return v
}

// flush writes the directory's changes into its records and emits its
// changed INDX blocks.
func (d *ixDir) flush() error {
	c := d.c
	if d.rootDirty || d.allocNew {
		re, ai, err := d.rootAttr()
		if err != nil {
			return err
		}
		re.attrs[ai] = withResidentValue(re.attrs[ai], d.rootValue(residentValue(re.attrs[ai])))
	}
	if d.allocNew {
		re, err := c.edit(d.f.Number(), d.f)
		if err != nil {
			return err
		}
		a, err := nonResidentAttr(AttrIndexAllocation, i30, re.nextAttrID(), d.allocRuns, d.allocSize, d.allocData, d.allocData)
		if err != nil {
			return err
		}
		re.insert(a)
		re.insert(residentAttr(AttrBitmap, i30, re.nextAttrID(), false, d.bitmap))
		// The clusters-per-index-block byte of the root stays as mkntfs or
		// Windows wrote it.
	} else {
		if d.allocDirty {
			if err := d.replaceAttr(AttrIndexAllocation, func(a []byte) ([]byte, error) {
				return withRuns(a, d.allocRuns, d.allocSize, d.allocData, d.allocData)
			}); err != nil {
				return err
			}
		}
		if d.bitmapDirty {
			if err := d.replaceAttr(AttrBitmap, func(a []byte) ([]byte, error) { return withResidentValue(a, d.bitmap), nil }); err != nil {
				return err
			}
		}
	}
	for _, n := range d.nodes {
		if !n.dirty {
			continue
		}
		b, err := d.nodeBytes(n)
		if err != nil {
			return err
		}
		if err := protectFixups(b, n.extents[0].Offset, "INDX block"); err != nil {
			return err
		}
		c.writes = append(c.writes, splitWrite(b, n.extents, WriteIndex)...)
	}
	return nil
}

func (d *ixDir) replaceAttr(t AttrType, fn func([]byte) ([]byte, error)) error {
	for _, a := range d.f.Attrs {
		if a.Type != t || a.Name != i30 {
			continue
		}
		re, err := d.c.edit(a.Record, d.f)
		if err != nil {
			return err
		}
		i := re.find(t, i30)
		if i < 0 {
			break
		}
		re.attrs[i], err = fn(re.attrs[i])
		return err
	}
	return formatErr(d.f.Record.DiskOffset(), "MFT record", ErrBadRecord, d.f.Number(), "directory %d has no %s %s", d.f.Number(), t, i30)
}

// nodeBytes builds the fixed-up INDX block: a read block keeps its header
// and update sequence number, a new one gets a fresh header.
func (d *ixDir) nodeBytes(n *ixNode) ([]byte, error) {
	var b []byte
	if n.raw != nil {
		b = bytes.Clone(n.raw)
	} else {
		b = make([]byte, d.blockSz)
		copy(b, indxSignature)
		put16(b[usaOffsetOff:], indxUSAOff)
		put16(b[usaCountOff:], uint16(d.usaCount))
		put64(b[indxVCNOff:], uint64(n.vcn))
		h := b[indxHeaderOff:]
		put32(h[ihEntriesOffsetOff:], uint32(d.entriesOff))
		put32(h[ihAllocatedOff:], uint32(d.blockSz-indxHeaderOff))
	}
	h := b[indxHeaderOff:]
	eo := int(le32(h[ihEntriesOffsetOff:]))
	if l := entriesLen(n.entries); l > d.capacity(n) {
		return nil, formatErr(n.extents[0].Offset, "INDX block", ErrBadIndex, l, "entries overflow block VCN %d", n.vcn)
	}
	clear(h[eo:])
	pos := eo
	for i := range n.entries {
		pos += n.entries[i].encode(h[pos:])
	}
	put32(h[ihIndexLengthOff:], uint32(pos))
	h[ihFlagsOff] = 0
	if hasChildren(n.entries) {
		h[ihFlagsOff] = ihFlagLarge
	}
	return b, nil
}

// runExtents maps the byte range [off, off+n) of a stream with the given
// runs to volume extents.
func runExtents(runs []Run, cs, off, n int64) ([]Extent, error) {
	var out []Extent
	for n > 0 {
		vcn := off / cs
		var r *Run
		for i := range runs {
			if runs[i].VCN <= vcn && vcn < runs[i].VCN+runs[i].Length {
				r = &runs[i]
				break
			}
		}
		if r == nil || r.Sparse {
			return nil, formatErr(0, "runlist", ErrBadRunlist, vcn, "no allocated run maps VCN %d", vcn)
		}
		in := off - r.VCN*cs
		k := min(n, r.Length*cs-in)
		pos := r.LCN*cs + in
		if l := len(out); l > 0 && out[l-1].Offset+out[l-1].Length == pos {
			out[l-1].Length += k
		} else {
			out = append(out, Extent{Offset: pos, Length: k})
		}
		off += k
		n -= k
	}
	return out, nil
}

// name is the entry's key name, for messages.
func (e *ixEntry) name() string {
	fn, err := parseFileName(e.key, 0)
	if err != nil {
		return ""
	}
	return fn.Name
}
