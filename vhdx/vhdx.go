// Package vhdx reads Microsoft VHDX images ([MS-VHDX]; Disk2vhd, Hyper-V)
// read-only: headers, region table, metadata and the block allocation
// table of fixed and dynamic disks. Differencing disks and images whose log
// needs replay are refused, as reading them as they are would give wrong
// data.
package vhdx

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/container"
)

// Payload block states (the low three bits of a BAT entry).
const (
	payloadNotPresent       = 0
	payloadUndefined        = 1
	payloadZero             = 2
	payloadUnmapped         = 3
	payloadFullyPresent     = 6
	payloadPartiallyPresent = 7
	batStateMask            = 7
	batOffsetShift          = 20 // FileOffsetMB is bits 20-63
)

// Image is an open VHDX image; it is safe for concurrent ReadAt.
type Image struct {
	f          *container.File
	size       int64
	blockSize  int64
	chunkRatio int64
	batOffset  int64
	bat        []uint64 // payload entries only, indexed by block
}

var _ disk.Extenter = (*Image)(nil)

// Open opens the VHDX image at path read-only.
func Open(path string) (*Image, error) {
	f, err := container.OpenFile(path)
	if err != nil {
		return nil, err
	}
	img, err := newImage(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

func newImage(f *container.File) (*Image, error) {
	bad := func(off int64, what string, v any, err error) error {
		return &FormatError{File: f.Path, Offset: off, What: what, Value: v, Err: err}
	}
	if f.Size < firstStructures {
		b := make([]byte, min(f.Size, 8))
		f.ReadAt(b, 0)
		if !Sniff(b) {
			return nil, bad(0, "file type identifier", nil, ErrNotVHDX)
		}
		return nil, bad(0, "file shorter than its headers and region tables", f.Size, ErrCorrupt)
	}
	first := make([]byte, firstStructures)
	if _, err := f.ReadAt(first, 0); err != nil {
		return nil, err
	}
	if !Sniff(first) {
		return nil, bad(0, "file type identifier", nil, ErrNotVHDX)
	}

	// The current header is the valid one with the higher sequence number.
	h1, ok1 := parseVHDXHeader(first[header1Offset:])
	h2, ok2 := parseVHDXHeader(first[header2Offset:])
	var h vhdxHeader
	hOff := int64(header1Offset)
	switch {
	case ok1 && (!ok2 || h1.SequenceNumber >= h2.SequenceNumber):
		h = h1
	case ok2:
		h, hOff = h2, header2Offset
	default:
		return nil, bad(header1Offset, "both headers have a bad signature or checksum", nil, ErrCorrupt)
	}
	if h.Version != 1 {
		return nil, bad(hOff+66, "header version", h.Version, ErrUnsupported)
	}
	if h.LogGuid != (guid{}) {
		return nil, bad(hOff+48, "header LogGuid is set: the log holds unapplied writes", h.LogGuid, ErrLogReplay)
	}

	// Region tables: the first with a good checksum is used; both are
	// written identical.
	var rt []byte
	rtOff := int64(regionTable1Offset)
	for _, off := range []int64{regionTable1Offset, regionTable2Offset} {
		b := first[off : off+regionTableSize]
		if string(b[:4]) == regionTableSig && checksumOK(b) {
			rt, rtOff = b, off
			break
		}
	}
	if rt == nil {
		return nil, bad(regionTable1Offset, "both region tables have a bad signature or checksum", nil, ErrCorrupt)
	}
	regions, err := parseRegions(rt, rtOff, f)
	if err != nil {
		return nil, err
	}
	batR, ok := regions[guidBAT]
	if !ok {
		return nil, bad(rtOff, "region table has no BAT region", nil, ErrCorrupt)
	}
	metaR, ok := regions[guidMetadata]
	if !ok {
		return nil, bad(rtOff, "region table has no metadata region", nil, ErrCorrupt)
	}

	img := &Image{f: f, batOffset: int64(batR.FileOffset)}
	if err := img.readMetadata(metaR); err != nil {
		return nil, err
	}

	// The BAT interleaves one sector bitmap entry after every chunkRatio
	// payload entries.
	blocks := (img.size + img.blockSize - 1) / img.blockSize
	entries := blocks + (blocks-1)/img.chunkRatio
	if blocks == 0 {
		entries = 0
	}
	if entries*8 > int64(batR.Length) {
		return nil, bad(img.batOffset, "BAT region too small for the disk", fmt.Sprintf("%d bytes for %d entries", batR.Length, entries), ErrCorrupt)
	}
	raw := make([]byte, entries*8)
	if _, err := f.ReadAt(raw, img.batOffset); err != nil {
		return nil, err
	}
	img.bat = make([]uint64, blocks)
	for b := range img.bat {
		i := int64(b) + int64(b)/img.chunkRatio
		e := binary.LittleEndian.Uint64(raw[i*8:])
		where := img.batOffset + i*8
		switch e & batStateMask {
		case payloadNotPresent, payloadUndefined, payloadZero, payloadUnmapped:
		case payloadFullyPresent:
			off := int64(e >> batOffsetShift * mib)
			// The block's bytes that belong to the disk must exist.
			need := min(img.blockSize, img.size-int64(b)*img.blockSize)
			if e>>batOffsetShift == 0 || e>>batOffsetShift > uint64(f.Size)/mib || off > f.Size-need {
				return nil, bad(where, fmt.Sprintf("BAT entry of block %d points past the end of the file (%d bytes)", b, f.Size), fmt.Sprintf("0x%x", e), ErrCorrupt)
			}
		case payloadPartiallyPresent:
			return nil, bad(where, fmt.Sprintf("BAT entry of block %d is partially present, which only a differencing disk may use", b), fmt.Sprintf("0x%x", e), ErrCorrupt)
		default:
			return nil, bad(where, fmt.Sprintf("BAT entry of block %d has an unknown state", b), fmt.Sprintf("0x%x", e), ErrCorrupt)
		}
		img.bat[b] = e
	}
	return img, nil
}

func parseRegions(rt []byte, rtOff int64, f *container.File) (map[guid]regionEntry, error) {
	le := binary.LittleEndian
	n := le.Uint32(rt[8:])
	if n > maxRegionEntries {
		return nil, &FormatError{File: f.Path, Offset: rtOff + 8, What: "region table EntryCount", Value: n, Err: ErrCorrupt}
	}
	regions := map[guid]regionEntry{}
	for i := range int64(n) {
		b := rt[16+i*regionEntrySize:]
		var r regionEntry
		copy(r.Guid[:], b)
		r.FileOffset = le.Uint64(b[16:])
		r.Length = le.Uint32(b[24:])
		r.Required = le.Uint32(b[28:])&1 != 0
		where := rtOff + 16 + i*regionEntrySize
		if r.Guid != guidBAT && r.Guid != guidMetadata {
			if r.Required {
				return nil, &FormatError{File: f.Path, Offset: where, What: "unknown required region", Value: r.Guid, Err: ErrUnsupported}
			}
			continue
		}
		if _, dup := regions[r.Guid]; dup {
			return nil, &FormatError{File: f.Path, Offset: where, What: "region listed twice", Value: r.Guid, Err: ErrCorrupt}
		}
		if r.FileOffset%mib != 0 || r.FileOffset < mib || r.Length%mib != 0 ||
			r.FileOffset > uint64(f.Size) || uint64(r.Length) > uint64(f.Size)-r.FileOffset {
			return nil, &FormatError{File: f.Path, Offset: where, What: "region not aligned or not inside the file",
				Value: fmt.Sprintf("%v at %d length %d", r.Guid, r.FileOffset, r.Length), Err: ErrCorrupt}
		}
		regions[r.Guid] = r
	}
	return regions, nil
}

// readMetadata reads the metadata table and the items the reader needs.
func (img *Image) readMetadata(r regionEntry) error {
	f := img.f
	base := int64(r.FileOffset)
	bad := func(off int64, what string, v any, err error) error {
		return &FormatError{File: f.Path, Offset: off, What: what, Value: v, Err: err}
	}
	if r.Length < metadataTableSize {
		return bad(base, "metadata region smaller than its table", r.Length, ErrCorrupt)
	}
	region := make([]byte, r.Length)
	if _, err := f.ReadAt(region, base); err != nil {
		return err
	}
	if string(region[:8]) != metadataTableSig {
		return bad(base, "metadata table signature", nil, ErrCorrupt)
	}
	le := binary.LittleEndian
	n := le.Uint16(region[10:])
	if n > maxMetadataEntries {
		return bad(base+10, "metadata EntryCount", n, ErrCorrupt)
	}
	items := map[guid][]byte{}
	for i := range int64(n) {
		b := region[32+i*metadataEntrySize:]
		var e metadataEntry
		copy(e.ItemId[:], b)
		e.Offset = le.Uint32(b[16:])
		e.Length = le.Uint32(b[20:])
		e.IsUser = le.Uint32(b[24:])&1 != 0
		e.IsRequired = le.Uint32(b[24:])&4 != 0
		where := base + 32 + i*metadataEntrySize
		if e.Length == 0 {
			continue
		}
		if e.Offset < metadataTableSize || uint64(e.Offset)+uint64(e.Length) > uint64(r.Length) {
			return bad(where, "metadata item not inside the metadata region", fmt.Sprintf("%v at %d length %d", e.ItemId, e.Offset, e.Length), ErrCorrupt)
		}
		data := region[e.Offset : e.Offset+e.Length]
		switch e.ItemId {
		case guidFileParameters, guidVirtualDiskSize, guidLogicalSector, guidPhysicalSector, guidPage83, guidParentLocator:
			if e.IsUser {
				continue
			}
			items[e.ItemId] = data
		default:
			if e.IsRequired {
				return bad(where, "unknown required metadata item", e.ItemId, ErrUnsupported)
			}
		}
	}
	get := func(g guid, n int, what string) ([]byte, error) {
		d, ok := items[g]
		if !ok || len(d) < n {
			return nil, bad(base, "metadata item "+what+" missing or short", nil, ErrCorrupt)
		}
		return d, nil
	}
	fp, err := get(guidFileParameters, 8, "File Parameters")
	if err != nil {
		return err
	}
	img.blockSize = int64(le.Uint32(fp))
	if img.blockSize < mib || img.blockSize > 256*mib || img.blockSize&(img.blockSize-1) != 0 {
		return bad(base, "BlockSize", img.blockSize, ErrCorrupt)
	}
	if le.Uint32(fp[4:])&2 != 0 {
		return bad(base, "File Parameters HasParent: differencing VHDX images are refused (no parent is followed)", nil, ErrUnsupported)
	}
	vs, err := get(guidVirtualDiskSize, 8, "Virtual Disk Size")
	if err != nil {
		return err
	}
	ls, err := get(guidLogicalSector, 4, "Logical Sector Size")
	if err != nil {
		return err
	}
	sector := int64(le.Uint32(ls))
	if sector != 512 && sector != 4096 {
		return bad(base, "LogicalSectorSize", sector, ErrCorrupt)
	}
	size := le.Uint64(vs)
	if size == 0 || size > maxVirtualSize || size%uint64(sector) != 0 {
		return bad(base, "VirtualDiskSize", size, ErrCorrupt)
	}
	img.size = int64(size)
	img.chunkRatio = (1 << 23) * sector / img.blockSize
	return nil
}

// Size is the logical disk size in bytes.
func (img *Image) Size() int64 { return img.size }

// Format names the container format.
func (img *Image) Format() string { return "vhdx" }

// InputFiles lists the absolute path of the image file.
func (img *Image) InputFiles() []string { return []string{img.f.Path} }

// Close closes the image file.
func (img *Image) Close() error { return img.f.Close() }

// ReadAt reads the logical disk; blocks not present read as zeros. Bytes
// past Size give io.EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	return container.ReadRange(p, off, img.size, img.blockSize, func(p []byte, b, within int64) error {
		e := img.bat[b]
		if e&batStateMask != payloadFullyPresent {
			clear(p)
			return nil
		}
		_, err := img.f.ReadAt(p, int64(e>>batOffsetShift)*mib+within)
		return err
	})
}

var _ disk.FileRanger = (*Image)(nil)

// FileRange reports when [off, off+n) lies in present blocks stored one
// after another in the image file, so a server can send it with
// sendfile(2).
func (img *Image) FileRange(off, n int64) (*os.File, int64, bool) {
	if off < 0 || n <= 0 || off > img.size-n {
		return nil, 0, false
	}
	start := int64(-1)
	for pos := off; pos < off+n; {
		b := pos / img.blockSize
		e := img.bat[b]
		if e&batStateMask != payloadFullyPresent {
			return nil, 0, false
		}
		h := int64(e>>batOffsetShift)*mib + pos%img.blockSize
		if start < 0 {
			start = h
		} else if h != start+(pos-off) {
			return nil, 0, false
		}
		pos = min((b+1)*img.blockSize, off+n)
	}
	if !img.f.Contiguous(start, n) {
		return nil, 0, false
	}
	return img.f.OS(), start, true
}

// Extents reports blocks that are not present as holes and the rest as
// data.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if err := container.CheckRange(off, length, img.size); err != nil {
		return nil, fmt.Errorf("%s: %w", img.f.Path, err)
	}
	var out container.Extents
	for pos := off; pos < off+length; {
		b := pos / img.blockSize
		next := min((b+1)*img.blockSize, img.size)
		var fl disk.ExtentFlags
		if img.bat[b]&batStateMask != payloadFullyPresent {
			fl = container.Unallocated
		}
		out.Add(next-pos, fl)
		pos = next
	}
	return out, nil
}
