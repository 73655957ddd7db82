package ntfs

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kvmify/kvmify/disk"
)

// Creation sentinels, matched with errors.Is.
var (
	ErrExists      = errors.New("file exists and is never replaced")
	ErrBadName     = errors.New("name not valid on NTFS under Windows")
	ErrMFTFull     = errors.New("no free MFT record and the MFT cannot grow here")
	ErrRecordFull  = errors.New("attributes do not fit the MFT record")
	ErrCompressDir = errors.New("directory compresses or encrypts new files")
)

// firstFreeRecord is where the search for a free MFT record starts.
// Records 0-15 are the system files and 16-23 are kept for $MFT's own
// extension records (Linux-NTFS documentation of the MFT layout); Windows
// gives new files the lowest free record from 24 on. That Windows starts
// at 24 rests on observed volumes, not on a source we could read; ntfs-3g
// starts at 64 instead.
const firstFreeRecord = 24

// $STANDARD_INFORMATION value layout.
const (
	siCreationOff   = 0
	siModifiedOff   = 8
	siMFTChangedOff = 16
	siAccessedOff   = 24
	siFileAttrOff   = 32
	siOwnerIDOff    = 48
	siSecurityIDOff = 52
	siSizeV12       = 48 // NTFS 1.2: no owner or security id
	siSizeV30       = 72
	// FileAttrArchive is FILE_ATTRIBUTE_ARCHIVE, which Windows sets on
	// every newly created file.
	FileAttrArchive = 0x0020
	fnTimesOff      = 8
	fnReparseOff    = 60
	maxNameUnits    = 255
	// ntfsEpochDelta is 1601-01-01 to 1970-01-01 in 100 ns units.
	ntfsEpochDelta = 116444736000000000
	// maxMFTBitmap bounds the $MFT $BITMAP read into memory (2^27 records).
	maxMFTBitmap = 16 << 20
	// siblingProbe bounds how many directory entries are tried when
	// looking for a sibling file to copy security from.
	siblingProbe = 64
)

// NewFile is one file PlanCreate creates: Name in the existing directory
// Dir (a path from the volume root, \ or / separated), holding Content.
type NewFile struct {
	Dir     string
	Name    string
	Content []byte
}

// CreateOptions tunes PlanCreate.
type CreateOptions struct {
	// Now is recorded as the files' creation, modification, MFT change and
	// access times and as their directories' modification times.
	Now time.Time
	// AllowUnsafeVolume plans even on a dirty, unclean or hibernated volume.
	AllowUnsafeVolume bool
}

// Created describes one file a plan creates.
type Created struct {
	Path       string // Dir\Name
	Record     uint64 // MFT record number
	Parent     uint64 // the directory's MFT record number
	Sequence   uint16 // the record's new sequence number
	Size       int64
	Runs       []Run // clusters of its $DATA (none for an empty file)
	Namespace  uint8 // of its one $FILE_NAME
	SecurityID uint32
	// SiblingRecord is the file whose security was copied (the directory
	// itself when it holds no plain file).
	SiblingRecord uint64
	Time          time.Time
}

// PlanCreate returns the writes that create files, in order, without
// applying any of them; later files see earlier files' records, clusters
// and index entries. For each file it
//   - takes the lowest free MFT record from 24 on ($MFT's $BITMAP); a
//     freed record keeps the sequence number Windows raised when freeing
//     it; with none free the MFT's data grows by a record, and its
//     allocation by 16 records when full;
//   - builds $STANDARD_INFORMATION (opts.Now, ARCHIVE, and the owner and
//     security id, or for an NTFS 1.2-style file its
//     $SECURITY_DESCRIPTOR, copied from a sibling file in the directory);
//   - builds one $FILE_NAME: namespace Win32+DOS for an 8.3 name, POSIX
//     otherwise (as ntfs-3g, and Windows 8+ without short names, do: no
//     short name is generated);
//   - builds a non-resident $DATA on clusters from $Bitmap, one extent
//     when a free one is large enough (an empty file gets an empty
//     resident $DATA);
//   - inserts the name into the directory's $I30 B+ tree, splitting full
//     blocks, moving an overflowing root into a block and growing
//     $INDEX_ALLOCATION and its $BITMAP as needed.
//
// Names that exist (case-insensitively) are refused with ErrExists and
// never replaced; compressed or encrypted directories with
// ErrCompressDir; an unsafe volume with ErrUnsafeVolume unless
// opts.AllowUnsafeVolume. What needs an $ATTRIBUTE_LIST (a record that
// overflows, an MFT or directory split over extension records) is refused
// with ErrRecordFull, ErrMFTFull or ErrUnsupported.
//
// Writes are sorted by offset and never overlap; MFT records and INDX
// blocks are written whole with new update sequence numbers, $MFTMirr
// along with any record it mirrors.
func (v *Volume) PlanCreate(files []NewFile, opts CreateOptions) ([]disk.Write, []Created, error) {
	if !opts.AllowUnsafeVolume {
		if err := v.checkSafe(); err != nil {
			return nil, nil, err
		}
	}
	if opts.Now.IsZero() {
		return nil, nil, errors.New("ntfs: PlanCreate needs the plan's clock (CreateOptions.Now)")
	}
	c := &creator{v: v, opts: opts, records: map[uint64]*recEdit{}, dirs: map[uint64]*ixDir{}}
	var out []Created
	for _, nf := range files {
		cr, err := c.create(nf)
		if err != nil {
			return nil, nil, fmt.Errorf("ntfs: creating %s in %s: %w", nf.Name, nf.Dir, err)
		}
		out = append(out, cr)
	}
	if err := c.flush(); err != nil {
		return nil, nil, err
	}
	sortWrites(c.writes)
	return c.writes, out, nil
}

// creator holds the state shared by the files of one PlanCreate.
type creator struct {
	v        *Volume
	opts     CreateOptions
	records  map[uint64]*recEdit
	dirs     map[uint64]*ixDir
	clusters *clusterBitmap
	mft      *mftBitmap
	dataGoal int64
	writes   []disk.Write
}

func (c *creator) bitmap() (*clusterBitmap, error) {
	if c.clusters == nil {
		bm, err := c.v.openBitmap()
		if err != nil {
			return nil, err
		}
		c.clusters = bm
	}
	return c.clusters, nil
}

// edit returns the editable copy of record n, taken from f when it is one
// of f's records.
func (c *creator) edit(n uint64, f *File) (*recEdit, error) {
	if re, ok := c.records[n]; ok {
		return re, nil
	}
	var rec *Record
	if f != nil {
		for _, r := range append([]*Record{f.Record}, f.Extensions...) {
			if r.Number == n {
				rec = r
			}
		}
	}
	if rec == nil {
		var err error
		if rec, err = c.v.ReadRecord(n); err != nil {
			return nil, err
		}
	}
	re, err := newRecEdit(rec)
	if err != nil {
		return nil, err
	}
	c.records[n] = re
	return re, nil
}

func ntfsTime(t time.Time) uint64 { return uint64(t.UnixNano()/100 + ntfsEpochDelta) }

func (c *creator) create(nf NewFile) (Created, error) {
	v := c.v
	if err := validName(nf.Name); err != nil {
		return Created{}, err
	}
	dir, _, err := v.Lookup(nf.Dir)
	if err != nil {
		return Created{}, err
	}
	if !dir.IsDirectory() {
		return Created{}, &PathError{Path: nf.Dir, Err: ErrNotDirectory}
	}
	dirOff := dir.Record.DiskOffset()
	if dir.Number() != RecordRoot && dir.Number() < firstUserRecord {
		return Created{}, formatErr(dirOff, "MFT record", ErrNotPlannable, dir.Number(), "directory %d is an NTFS system directory", dir.Number())
	}
	dirRec, err := c.edit(dir.Number(), dir)
	if err != nil {
		return Created{}, err
	}
	si := dirRec.find(AttrStandardInformation, "")
	if si < 0 {
		return Created{}, formatErr(dirOff, "MFT record", ErrBadRecord, dir.Number(), "directory %d has no $STANDARD_INFORMATION", dir.Number())
	}
	dirSI := residentValue(dirRec.attrs[si])
	if len(dirSI) < siSizeV12 {
		return Created{}, formatErr(dirOff, "$STANDARD_INFORMATION", ErrBadAttribute, len(dirSI), "directory %d: value too short", dir.Number())
	}
	if fa := le32(dirSI[siFileAttrOff:]); fa&(FileAttrCompressed|FileAttrEncrypted) != 0 {
		return Created{}, formatErr(dirOff, "$STANDARD_INFORMATION", ErrCompressDir, fa, "directory %s is compressed or encrypted; new files there would have to be too", nf.Dir)
	}
	ix, err := c.openDir(dir)
	if err != nil {
		return Created{}, err
	}
	sib, err := c.sibling(ix)
	if err != nil {
		return Created{}, err
	}

	num, seq, usn, err := c.allocRecord()
	if err != nil {
		return Created{}, err
	}
	now := ntfsTime(c.opts.Now)
	cs := v.ClusterSize
	size := int64(len(nf.Content))
	need := (size + cs - 1) / cs
	runs, _, err := c.allocData(nf.Content)
	if err != nil {
		return Created{}, err
	}
	// A Win32 name needs a DOS partner name (ntfs-3g refuses to unlink a
	// Win32 name without one); generating short names is not done here, so
	// other names go to the POSIX namespace, as ntfs-3g creates them.
	ns := uint8(NamespacePOSIX)
	if is83(nf.Name) {
		ns = NamespaceWin32DOS
	}
	fn := fileNameValue(dir.Number()|uint64(dir.Record.Sequence)<<48, now, need*cs, size, nf.Name, ns)

	re := c.newRecord(num, seq, usn, dirRec)
	// The record may lie past the MFT's old allocation.
	if re.extents, err = runExtents(c.mft.runs, cs, int64(num)*v.RecordSize, v.RecordSize); err != nil {
		return Created{}, err
	}
	siVal := make([]byte, len(sib.si))
	for _, o := range []int{siCreationOff, siModifiedOff, siMFTChangedOff, siAccessedOff} {
		put64(siVal[o:], now)
	}
	put32(siVal[siFileAttrOff:], FileAttrArchive)
	var secID uint32
	if len(siVal) >= siSizeV30 {
		copy(siVal[siOwnerIDOff:siSecurityIDOff+4], sib.si[siOwnerIDOff:siSecurityIDOff+4])
		secID = le32(siVal[siSecurityIDOff:])
	}
	re.attrs = append(re.attrs, residentAttr(AttrStandardInformation, "", re.nextAttrID(), false, siVal))
	re.attrs = append(re.attrs, residentAttr(AttrFileName, "", re.nextAttrID(), true, fn))
	switch {
	case sib.sd != nil && sib.sdNonResident:
		sdRuns, alloc, err := c.allocData(sib.sd)
		if err != nil {
			return Created{}, err
		}
		a, err := nonResidentAttr(AttrSecurityDescriptor, "", re.nextAttrID(), sdRuns, alloc, int64(len(sib.sd)), int64(len(sib.sd)))
		if err != nil {
			return Created{}, err
		}
		re.attrs = append(re.attrs, a)
	case sib.sd != nil:
		re.attrs = append(re.attrs, residentAttr(AttrSecurityDescriptor, "", re.nextAttrID(), false, sib.sd))
	}
	if need == 0 {
		re.attrs = append(re.attrs, residentAttr(AttrData, "", re.nextAttrID(), false, nil))
	} else {
		a, err := nonResidentAttr(AttrData, "", re.nextAttrID(), runs, need*cs, size, size)
		if err != nil {
			return Created{}, err
		}
		re.attrs = append(re.attrs, a)
	}
	if u := re.used(); u > re.allocated() {
		return Created{}, formatErr(re.extents[0].Offset, "MFT record", ErrRecordFull, u, "new record %d for %q needs %d bytes, it has %d", num, nf.Name, u, re.allocated())
	}

	if err := ix.insert(ixEntry{ref: num | uint64(seq)<<48, key: fn, name16: utf16.Encode([]rune(nf.Name)), sub: -1}); err != nil {
		return Created{}, err
	}
	// The directory was modified now (its index changed).
	dirRec.attrs[si] = withResidentValue(dirRec.attrs[si], dirSI)
	dirSI = residentValue(dirRec.attrs[si])
	put64(dirSI[siModifiedOff:], now)
	put64(dirSI[siMFTChangedOff:], now)

	return Created{
		Path: strings.TrimRight(nf.Dir, `\/`) + `\` + nf.Name, Record: num, Parent: dir.Number(), Sequence: seq, Size: size,
		Runs: runs, Namespace: ns, SecurityID: secID, SiblingRecord: sib.record, Time: c.opts.Now,
	}, nil
}

// allocData takes clusters for content from $Bitmap (after the last ones
// this plan took, one extent when a free one is large enough) and plans
// its writes; it returns the runs and the allocated size.
func (c *creator) allocData(content []byte) ([]Run, int64, error) {
	cs := c.v.ClusterSize
	need := (int64(len(content)) + cs - 1) / cs
	if need == 0 {
		return nil, 0, nil
	}
	bm, err := c.bitmap()
	if err != nil {
		return nil, 0, err
	}
	picked, err := bm.allocate(need, c.dataGoal)
	if err != nil {
		return nil, 0, err
	}
	runs := appendRuns(nil, picked)
	last := runs[len(runs)-1]
	c.dataGoal = last.LCN + last.Length
	return runs, need * cs, c.planContent(runs, content)
}

// planContent writes content onto runs, whole clusters, zero-padded.
func (c *creator) planContent(runs []Run, content []byte) error {
	cs := c.v.ClusterSize
	for _, r := range runs {
		b := make([]byte, r.Length*cs)
		from := r.VCN * cs
		copy(b, content[min(from, int64(len(content))):])
		c.writes = append(c.writes, disk.Write{Offset: r.LCN * cs, Data: b, What: WriteData})
	}
	return nil
}

func fileNameValue(parent, now uint64, alloc, size int64, name string, ns uint8) []byte {
	n16 := encodeUTF16(name)
	b := make([]byte, fnNameOff+len(n16))
	put64(b[fnParentOff:], parent)
	for i := 0; i < 4; i++ {
		put64(b[fnTimesOff+8*i:], now)
	}
	put64(b[fnAllocatedSizeOff:], uint64(alloc))
	put64(b[fnDataSizeOff:], uint64(size))
	put32(b[fnAttributesOff:], FileAttrArchive)
	b[fnNameLengthOff] = byte(len(n16) / 2)
	b[fnNamespaceOff] = ns
	copy(b[fnNameOff:], n16)
	return b
}

// siblingInfo is what a new file copies from a file beside it.
type siblingInfo struct {
	record uint64
	si     []byte // its $STANDARD_INFORMATION value
	sd     []byte // its $SECURITY_DESCRIPTOR, if it has one and no $Secure id
	// sdNonResident: the descriptor was stored in clusters, so the copy
	// is too.
	sdNonResident bool
}

// maxSecurityDescriptor bounds a copied security descriptor (Windows caps
// descriptors at 64 KiB).
const maxSecurityDescriptor = 64 << 10

// sibling finds a plain file in the directory (the first in index order)
// whose security a new file takes, as Windows gives files created in one
// directory the same inherited descriptor and so the same $Secure id. A
// directory without files lends its own $STANDARD_INFORMATION; that
// differs from what Windows would inherit for a file, which is a choice
// of ours, not Windows' behaviour.
func (c *creator) sibling(ix *ixDir) (siblingInfo, error) {
	if ix.sib != nil {
		return *ix.sib, nil
	}
	var cands []uint64
	err := ix.src.walk(func(e *IndexEntry) {
		if len(cands) < siblingProbe && e.Key.Attributes&FileAttrDirectory == 0 && e.Record >= firstFreeRecord {
			cands = append(cands, e.Record)
		}
	})
	if err != nil {
		return siblingInfo{}, err
	}
	var info *siblingInfo
	for _, n := range cands {
		f, err := c.v.OpenRecord(n)
		if err != nil || f.IsDirectory() {
			continue
		}
		if s, err := fileSecurity(f); err == nil {
			info = &s
			break
		}
	}
	if info == nil {
		s, err := fileSecurity(ix.f)
		if err != nil {
			return siblingInfo{}, err
		}
		info = &s
	}
	ix.sib = info
	return *info, nil
}

func fileSecurity(f *File) (siblingInfo, error) {
	s := siblingInfo{record: f.Number()}
	var sd *Attr
	for _, a := range f.Attrs {
		switch a.Type {
		case AttrStandardInformation:
			if len(a.Value) == siSizeV12 || len(a.Value) >= siSizeV30 {
				s.si = a.Value[:min(len(a.Value), siSizeV30)]
			}
		case AttrSecurityDescriptor:
			sd = a
		}
	}
	switch {
	case s.si == nil:
		return s, formatErr(f.Record.DiskOffset(), "MFT record", ErrBadRecord, f.Number(), "record %d has no usable $STANDARD_INFORMATION", f.Number())
	case len(s.si) >= siSizeV30 || sd == nil:
		// Security lives in $Secure (or nowhere).
	case sd.NonResident:
		st, err := f.stream(AttrSecurityDescriptor, "")
		if err != nil {
			return s, err
		}
		if st.Size() > maxSecurityDescriptor || st.Compressed() || st.Encrypted() {
			return s, formatErr(st.headerOffset, "$SECURITY_DESCRIPTOR", ErrUnsupported, st.Size(), "record %d's security descriptor is not a plain one of at most %d bytes", f.Number(), maxSecurityDescriptor)
		}
		s.sd = make([]byte, st.Size())
		if _, err := st.ReadAt(s.sd, 0); err != nil && len(s.sd) > 0 {
			return s, err
		}
		s.sdNonResident = true
	default:
		s.sd = sd.Value
	}
	return s, nil
}

// newRecord starts a FILE record for number num, its header laid out like
// the template record's (update sequence array position and length).
func (c *creator) newRecord(num uint64, seq, usn uint16, tmpl *recEdit) *recEdit {
	v := c.v
	usaOff := int(le16(tmpl.head[usaOffsetOff:]))
	usaCount := int(le16(tmpl.head[usaCountOff:]))
	first := align8(usaOff + 2*usaCount)
	head := make([]byte, first)
	copy(head, recSignature)
	put16(head[usaOffsetOff:], uint16(usaOff))
	put16(head[usaCountOff:], uint16(usaCount))
	put16(head[recSequenceOff:], seq)
	put16(head[recLinkCountOff:], 1)
	put16(head[recFirstAttrOff:], uint16(first))
	put16(head[recFlagsOff:], recFlagInUse)
	put32(head[recBytesAllocatedOff:], uint32(v.RecordSize))
	if usaOff >= recHeaderV31 {
		put32(head[recNumberOff:], uint32(num))
	}
	put16(head[usaOff:], usn)
	re := &recEdit{num: num, size: int(v.RecordSize), head: head}
	c.records[num] = re
	return re
}

// validName refuses names Windows cannot create.
func validName(name string) error {
	bad := func(why string) error {
		return formatErr(0, "file name", ErrBadName, name, "%s", why)
	}
	if !utf8.ValidString(name) {
		return bad("not valid UTF-8")
	}
	n := len(utf16.Encode([]rune(name)))
	switch {
	case n == 0:
		return bad("empty")
	case n > maxNameUnits:
		return bad("longer than 255 UTF-16 units")
	case name == "." || name == "..":
		return bad("a directory alias")
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return bad("ends in a dot or space, which Win32 strips")
	}
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) {
			return bad("holds a character Win32 forbids")
		}
	}
	return nil
}

// is83 reports whether name is a valid DOS 8.3 name once upcased: a base
// of 1-8 and an optional extension of 1-3 characters from the DOS set.
// Windows then stores a single $FILE_NAME in the Win32+DOS namespace, even
// for a lower-case name (as seen on XP volumes: "atapi.sys" has one name
// of namespace 3); that rule rests on observed volumes and the issue's
// description, not on a Windows source.
func is83(name string) bool {
	base, ext, dot := strings.Cut(name, ".")
	if len(base) < 1 || len(base) > 8 || len(ext) > 3 || (dot && len(ext) == 0) || strings.Contains(ext, ".") {
		return false
	}
	for _, r := range base + ext {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'()-@^_`{}~", r):
		default:
			return false
		}
	}
	return true
}

// flush turns the held records, directories and bitmaps into writes.
func (c *creator) flush() error {
	for _, d := range c.dirs {
		if err := d.flush(); err != nil {
			return err
		}
	}
	if c.mft != nil {
		if err := c.mft.flush(c); err != nil {
			return err
		}
	}
	mirror, err := c.v.mirrorRecords()
	if err != nil {
		return err
	}
	for n, re := range c.records {
		raw, err := re.bytes()
		if err != nil {
			return err
		}
		if err := protectFixups(raw, re.extents[0].Offset, "MFT record"); err != nil {
			return err
		}
		c.writes = append(c.writes, splitWrite(raw, re.extents, WriteMFTRecord)...)
		if n < uint64(len(mirror)) {
			c.writes = append(c.writes, splitWrite(raw, mirror[n], WriteMFTMirr)...)
		}
	}
	if c.clusters != nil {
		w, err := c.clusters.writes()
		if err != nil {
			return err
		}
		c.writes = append(c.writes, w...)
	}
	return nil
}

// WriteMFTMirr names writes to $MFTMirr.
const WriteMFTMirr = "mft-mirror"

// mirrorRecords returns the disk extents of each record $MFTMirr holds.
func (v *Volume) mirrorRecords() ([][]Extent, error) {
	f, err := v.OpenRecord(RecordMFTMirr)
	if err != nil {
		return nil, err
	}
	s, err := f.Stream("")
	if err != nil {
		return nil, err
	}
	if s.Resident() {
		return nil, formatErr(s.headerOffset, "$MFTMirr", ErrUnsupported, nil, "$MFTMirr is resident")
	}
	var out [][]Extent
	for off := int64(0); off+v.RecordSize <= s.Size(); off += v.RecordSize {
		ext, err := s.diskExtents(off, v.RecordSize)
		if err != nil {
			return nil, err
		}
		out = append(out, ext)
	}
	return out, nil
}
