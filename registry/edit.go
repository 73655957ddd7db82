package registry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
)

// Editing errors, for errors.Is.
var (
	// ErrHasSubkeys marks an attempt to delete a key that still has subkeys.
	ErrHasSubkeys = errors.New("registry: key has subkeys")
	// ErrInvalidName marks a key or value name the registry cannot store.
	ErrInvalidName = errors.New("registry: invalid name")
	// ErrRootKey marks an attempt to delete the hive's root key.
	ErrRootKey = errors.New("registry: cannot delete the root key")
)

// Name and data limits Windows enforces (in UTF-16 units for names).
const (
	maxKeyNameUnits   = 255
	maxValueNameUnits = 16383
	// maxValueData bounds a value: 65535 big-data segments, the most a db
	// record's 16-bit count can list.
	maxValueData = 0xFFFF * bigDataSegmentSize
	// defaultMaxLeaf is how many subkeys one lf/lh/li list holds before the
	// editor splits it in two under an ri list; Windows' own leaves in the
	// corpus hives hold up to 995 entries.
	defaultMaxLeaf = 1000
)

// Editor changes a hive in memory: it works on a private copy of the hive
// file's bytes, and Save returns the new file with the byte ranges that
// differ from the original. Paths are relative to the root and matched
// case-insensitively, like Hive.Lookup. Errors matching ErrNotFound,
// ErrInvalidName, ErrHasSubkeys or ErrRootKey are found before anything
// changes; any other error (a size limit hit half-way) may leave an edit
// half done, and the Editor should then be discarded. An Editor is not safe
// for concurrent use.
type Editor struct {
	// Now gives the time written into last-written timestamps and the base
	// block; it defaults to time.Now and is a field so tests can pin it.
	Now func() time.Time

	orig    []byte // the input file, never modified
	buf     []byte // the edited file
	base    *BaseBlock
	bins    []hbin
	h       *Hive // a view over buf, rebuilt when bins change
	alloc   allocator
	maxLeaf int
}

// Range is a span of bytes of the hive file.
type Range struct {
	Off, Len int64
}

// SaveResult is an edited hive file and where it differs from the original.
type SaveResult struct {
	Data []byte // the whole new hive file
	// Changed lists the byte ranges of Data that differ from the original
	// file (or lie beyond its end), sorted, with ranges less than 16 equal
	// bytes apart merged; every byte outside them is identical to the input.
	Changed []Range
	Size    int64 // len(Data); equals the input's length unless bins had to grow the file
}

// NewEditor starts editing a copy of h; h itself is never modified. A dirty
// hive is refused (ErrDirtyHive): recover it from its logs first. So is a hive
// that fails Check (a *CheckError): edits keep a consistent hive consistent,
// and on an inconsistent one a new cell could overwrite a referenced one.
// Leaked cells (allocated, unreferenced) do not block editing and are left
// exactly as they are: the allocator only ever uses free cells, since
// nothing proves that a leaked cell is not referenced by something the
// checker does not model.
func NewEditor(h *Hive) (*Editor, error) {
	if err := h.DirtyErr(); err != nil {
		return nil, err
	}
	if err := h.Check(); err != nil {
		return nil, err
	}
	size := BaseBlockSize + int(h.base.HiveBinsDataSize)
	e := &Editor{
		Now:     time.Now,
		orig:    h.data,
		buf:     append(make([]byte, 0, len(h.data)+hbinAlignment), h.data...),
		bins:    append([]hbin(nil), h.bins...),
		maxLeaf: defaultMaxLeaf,
	}
	base, err := ParseBaseBlock(e.buf[:size])
	if err != nil {
		return nil, err
	}
	e.base = base
	e.alloc.ed = e
	e.refresh()
	if err := e.alloc.scanFree(); err != nil {
		return nil, err
	}
	return e, nil
}

// refresh rebuilds the hive view after buf or the bin list changed.
func (e *Editor) refresh() {
	end := BaseBlockSize + int(e.base.HiveBinsDataSize)
	e.h = &Hive{data: e.buf, hbins: e.buf[BaseBlockSize:end], base: e.base, bins: e.bins}
}

// Hive returns a view of the edited hive for reading; it reflects every edit
// so far but becomes stale after the next edit, and its base block is only
// brought up to date by Save.
func (e *Editor) Hive() *Hive { return e.h }

// Save finishes the edits: both sequence numbers become the old primary
// sequence number plus one, the timestamp and hive bins size are set and the
// checksum recomputed. The result's Data is a copy, so editing may continue;
// Changed is always relative to the hive NewEditor was given.
func (e *Editor) Save() (*SaveResult, error) {
	seq := e.base.PrimarySequence + 1
	e.base.PrimarySequence, e.base.SecondarySequence = seq, seq
	e.base.LastWritten = e.Now()
	e.base.Encode(e.buf[:BaseBlockSize])
	data := bytes.Clone(e.buf)
	return &SaveResult{Data: data, Changed: diffRanges(e.orig, data), Size: int64(len(data))}, nil
}

// diffPage is the unit diffRanges compares before looking at single bytes.
const diffPage = 4096

// diffMergeGap is the largest run of equal bytes diffRanges folds into the
// surrounding changed ranges: rewritten cells often match their old content
// here and there, and a few extra bytes are cheaper for the block layer than
// thousands of tiny ranges.
const diffMergeGap = 16

// diffRanges lists the byte ranges where b differs from a (b at least as long
// as a), sorted and merged across gaps of at most diffMergeGap equal bytes,
// with b's tail beyond a as one range.
func diffRanges(a, b []byte) []Range {
	var out []Range
	add := func(off, n int64) {
		if k := len(out); k > 0 && off-(out[k-1].Off+out[k-1].Len) <= diffMergeGap {
			out[k-1].Len = off + n - out[k-1].Off
			return
		}
		out = append(out, Range{off, n})
	}
	for p := 0; p < len(a); p += diffPage {
		end := min(p+diffPage, len(a))
		if bytes.Equal(a[p:end], b[p:end]) {
			continue
		}
		for i := p; i < end; {
			if a[i] == b[i] {
				i++
				continue
			}
			j := i
			for j < end && a[j] != b[j] {
				j++
			}
			add(int64(i), int64(j-i))
			i = j
		}
	}
	if len(b) > len(a) {
		add(int64(len(a)), int64(len(b)-len(a)))
	}
	return out
}

// encodeName stores a key or value name the way Windows does: Latin-1 bytes
// with the compressed-name flag when every character fits, else UTF-16LE.
func encodeName(name string) (b []byte, comp bool, units int) {
	r := []rune(name)
	comp = true
	for _, c := range r {
		if c > 0xFF {
			comp = false
			break
		}
	}
	if comp {
		b = make([]byte, len(r))
		for i, c := range r {
			b[i] = byte(c)
		}
		return b, true, len(r)
	}
	u := utf16.Encode(r)
	return utf16Bytes(u), false, len(u)
}

// splitPath breaks a key path into its non-empty components.
func splitPath(path string) []string {
	var out []string
	for _, c := range strings.Split(path, `\`) {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// lookup finds the key at path in the edited hive.
func (e *Editor) lookup(path string) (*Key, error) { return e.h.Lookup(path) }

// nkData returns the writable data of the key node at off.
func (e *Editor) nkData(off uint32) ([]byte, error) { return e.h.record(off, sigNK, nkFixedSize) }

// touch sets a key's last-written time to now.
func (e *Editor) touch(off uint32) error {
	b, err := e.nkData(off)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b[nkLastWrittenOffset:], timeToFiletime(e.Now()))
	return nil
}

// CreateKey creates the key at path (relative to the root) and any missing
// parents; an existing key is not an error. New keys share their parent's
// security descriptor.
func (e *Editor) CreateKey(path string) error {
	comps := splitPath(path)
	for _, name := range comps {
		if err := validKeyName(name); err != nil {
			return err
		}
	}
	k, err := e.h.Root()
	if err != nil {
		return err
	}
	for _, name := range comps {
		sub, err := k.Subkey(name)
		if errors.Is(err, ErrNotFound) {
			off, cerr := e.createSubkey(k.off, name)
			if cerr != nil {
				return fmt.Errorf("registry: creating key %q under %q: %w", name, k.path, cerr)
			}
			sub, err = e.h.key(off, joinPath(k.path, name), k.depth+1)
		}
		if err != nil {
			return err
		}
		k = sub
	}
	return nil
}

// validKeyName checks a key name against Windows' rules: 1 to 255 UTF-16
// units, no backslash.
func validKeyName(name string) error {
	_, _, units := encodeName(name)
	if units == 0 || units > maxKeyNameUnits || strings.ContainsRune(name, '\\') {
		return fmt.Errorf("%w: key name %q (1 to %d characters, no backslash)", ErrInvalidName, name, maxKeyNameUnits)
	}
	return nil
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + `\` + name
}

// createSubkey writes a new, empty key node called name under the key at
// parent and links it into the parent's subkey list.
func (e *Editor) createSubkey(parent uint32, name string) (uint32, error) {
	if err := validKeyName(name); err != nil {
		return 0, err
	}
	nameBytes, comp, units := encodeName(name)
	pr, err := e.h.readNK(parent)
	if err != nil {
		return 0, err
	}
	sk := pr.security
	if err := e.skAddRef(sk, 1); err != nil {
		return 0, err
	}
	off, err := e.alloc.alloc(nkFixedSize + len(nameBytes))
	if err != nil {
		return 0, err
	}
	b := e.cellBytes(off)
	le := binary.LittleEndian
	copy(b, sigNK[:])
	var flags uint16
	if comp {
		flags |= KeyCompName
	}
	le.PutUint16(b[nkFlagsOffset:], flags)
	le.PutUint64(b[nkLastWrittenOffset:], timeToFiletime(e.Now()))
	le.PutUint32(b[nkParentOffset:], parent)
	le.PutUint32(b[nkSubkeyListOffset:], noCell)
	le.PutUint32(b[nkVolatileSubkeyListOffset:], noCell)
	le.PutUint32(b[nkValueListOffset:], noCell)
	le.PutUint32(b[nkSecurityOffset:], sk)
	le.PutUint32(b[nkClassNameOffset:], noCell)
	le.PutUint16(b[nkNameLengthOffset:], uint16(len(nameBytes)))
	copy(b[nkNameOffset:], nameBytes)

	if err := e.insertSubkey(parent, off, nameUnits(nameBytes, comp)); err != nil {
		return 0, err
	}
	pb, err := e.nkData(parent)
	if err != nil {
		return 0, err
	}
	le.PutUint32(pb[nkSubkeyCountOffset:], le.Uint32(pb[nkSubkeyCountOffset:])+1)
	msn := le.Uint32(pb[nkMaxSubkeyNameLengthOffset:])
	if want := uint32(2 * units); msn&nkMaxSubkeyNameMask < want {
		le.PutUint32(pb[nkMaxSubkeyNameLengthOffset:], msn&^nkMaxSubkeyNameMask|want)
	}
	return off, e.touch(parent)
}

// DeleteKey deletes the key at path with its values; a key that still has
// subkeys is refused with ErrHasSubkeys, and the root with ErrRootKey.
func (e *Editor) DeleteKey(path string) error {
	comps := splitPath(path)
	if len(comps) == 0 {
		return ErrRootKey
	}
	k, err := e.lookup(path)
	if err != nil {
		return err
	}
	if k.rec.subkeyCount != 0 {
		return fmt.Errorf("%w: %q has %d", ErrHasSubkeys, k.path, k.rec.subkeyCount)
	}
	parent := k.rec.parent
	if _, err := e.nkData(parent); err != nil {
		return err
	}
	if err := e.removeSubkey(parent, k.off); err != nil {
		return err
	}
	vals, err := k.h.valueOffsets(k.rec.valueList, k.rec.valueCount, &cellSet{})
	if err != nil {
		return err
	}
	for _, v := range vals {
		if err := e.freeValue(v); err != nil {
			return err
		}
	}
	if k.rec.valueCount != 0 && k.rec.valueList != noCell {
		if err := e.alloc.release(k.rec.valueList); err != nil {
			return err
		}
	}
	if k.rec.classNameLength != 0 && k.rec.className != noCell {
		if err := e.alloc.release(k.rec.className); err != nil {
			return err
		}
	}
	if err := e.skAddRef(k.rec.security, -1); err != nil {
		return err
	}
	if err := e.alloc.release(k.off); err != nil {
		return err
	}
	pb, err := e.nkData(parent)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint32(pb[nkSubkeyCountOffset:], le.Uint32(pb[nkSubkeyCountOffset:])-1)
	return e.touch(parent)
}

// cellBytes returns the data of a cell the editor just allocated (no record
// to check yet).
func (e *Editor) cellBytes(off uint32) []byte {
	size := uint32(-int32(binary.LittleEndian.Uint32(e.h.hbins[off:])))
	return e.h.hbins[off+cellSizeFieldSize : off+size]
}

// skAddRef changes the reference count of the sk cell at off by delta; when
// it reaches zero the cell is unlinked from the security ring and freed.
func (e *Editor) skAddRef(off uint32, delta int) error {
	b, err := e.h.record(off, sigSK, skFixedSize)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	n := int64(le.Uint32(b[skReferenceCountOffset:])) + int64(delta)
	if n < 0 || n > 0xFFFFFFFF {
		return formatErr(abs(off)+cellSizeFieldSize+skReferenceCountOffset, "sk", n-int64(delta), "reference count out of range")
	}
	le.PutUint32(b[skReferenceCountOffset:], uint32(n))
	if n > 0 {
		return nil
	}
	flink, blink := le.Uint32(b[skFlinkOffset:]), le.Uint32(b[skBlinkOffset:])
	if flink == off || blink == off {
		return formatErr(abs(off), "sk", off, "last security descriptor of the hive lost its last reference")
	}
	nb, err := e.h.record(flink, sigSK, skFixedSize)
	if err != nil {
		return err
	}
	pb, err := e.h.record(blink, sigSK, skFixedSize)
	if err != nil {
		return err
	}
	le.PutUint32(nb[skBlinkOffset:], blink)
	le.PutUint32(pb[skFlinkOffset:], flink)
	return e.alloc.release(off)
}
