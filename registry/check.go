package registry

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// maxProblems bounds how many problems Check collects; the total is still
// counted.
const maxProblems = 1000

// CheckError lists the corruption Check found: invariant violations that
// make the hive unsafe to read or to edit. Leaked cells are not in it.
type CheckError struct {
	Problems []*FormatError // the first maxProblems found, in discovery order
	Total    int            // how many were found in all
}

func (e *CheckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "registry: hive check found %d problem(s)", e.Total)
	for i, p := range e.Problems {
		if i == 3 {
			b.WriteString("; …")
			break
		}
		b.WriteString("; ")
		b.WriteString(strings.TrimPrefix(p.Error(), "registry: "))
	}
	return b.String()
}

// Unwrap makes a CheckError match ErrFormat.
func (e *CheckError) Unwrap() error { return ErrFormat }

// CheckReport is everything a check found, split by consequence.
// Problems are corruption (a reference to the wrong place, a broken count
// or order): they block editing and recovery. Leaks are allocated cells
// that nothing references: their space is lost until the hive is
// reorganised, but nothing reads them, so they block nothing. Windows
// leaves them too: its own recovery of yarp's NewDirtyHive1
// (RecoveredHive_Windows10) holds 8 of them.
type CheckReport struct {
	Problems []*FormatError // the first maxProblems, in discovery order
	Total    int            // corruption found in all
	Leaks    []*FormatError // the first maxProblems leaked cells, matching ErrLeakedCell
	// LeakTotal counts the leaked cells and LeakedBytes their sizes
	// (size fields included).
	LeakTotal   int
	LeakedBytes int64
}

// Err returns a *CheckError when the report holds corruption, else nil
// (leaks alone are not an error).
func (r *CheckReport) Err() error {
	if r.Total == 0 {
		return nil
	}
	return &CheckError{Problems: r.Problems, Total: r.Total}
}

// Slot kinds: what starts at each 8-byte position of the hive bins.
const (
	slotNone  = iota // inside a cell or a bin header
	slotFree         // a free cell starts here
	slotAlloc        // an allocated cell starts here
)

// Cell roles, recorded for each allocated cell that something references.
const (
	roleNone = iota
	roleNK
	roleSubkeyList
	roleValueList
	roleVK
	roleData
	roleDB
	roleDBList
	roleSegment
	roleSK
	roleClass
)

var roleNames = [...]string{
	roleNone: "unreferenced", roleNK: "nk", roleSubkeyList: "subkey list",
	roleValueList: "value list", roleVK: "vk", roleData: "value data", roleDB: "db",
	roleDBList: "db segment list", roleSegment: "db segment", roleSK: "sk", roleClass: "class name",
}

type checker struct {
	h      *Hive
	kind   []byte // slot kind per 8-byte position
	used   []byte // role per 8-byte position
	skRefs map[uint32]uint32
	report CheckReport
	cur    maxLengths // of the key being checked
}

// maxLengths are the largest name, class and data sizes found below a key,
// in bytes (names counted as UTF-16).
type maxLengths struct {
	subkeyName, subkeyClass, valueName, valueData uint32
}

// Check verifies the hive's structural invariants: cells tile every bin
// exactly; every reference from the root down (subkey lists, value lists,
// value data, big data, security, class names) lands on an allocated cell of
// the right kind that nothing else uses; subkey lists are sorted as Windows
// sorts them with correct lf/lh hints and hashes; counts match; the security
// (sk) list is a consistent ring whose reference counts equal the keys using
// each sk. It returns nil or a *CheckError. Leaked cells (allocated,
// unreferenced) are not an error; CheckReport lists them.
func (h *Hive) Check() error { return h.CheckReport().Err() }

// CheckReport runs the checks of Check and also lists leaked cells.
func (h *Hive) CheckReport() *CheckReport {
	slots := len(h.hbins) / cellAlignment
	c := &checker{h: h, kind: make([]byte, slots), used: make([]byte, slots), skRefs: map[uint32]uint32{}}
	c.tile()
	c.keys()
	c.securityRing()
	c.leaks()
	return &c.report
}

func (c *checker) problem(off uint32, structure string, value any, format string, args ...any) {
	c.report.Total++
	if len(c.report.Problems) < maxProblems {
		c.report.Problems = append(c.report.Problems, formatErr(abs(off), structure, value, format, args...))
	}
}

// tile walks the cells of every bin and records where cells start.
func (c *checker) tile() {
	for _, bin := range c.h.bins {
		off := bin.cellsStart()
		for off < bin.end() {
			raw := int32(binary.LittleEndian.Uint32(c.h.hbins[off:]))
			size, kind := uint32(raw), byte(slotFree)
			if raw < 0 {
				size, kind = uint32(-int64(raw)), slotAlloc
			}
			if size == 0 || size%cellAlignment != 0 || uint64(off)+uint64(size) > uint64(bin.end()) {
				c.problem(off, "cell", raw, "cell size breaks the tiling of the bin at 0x%x", abs(bin.offset))
				break
			}
			c.kind[off/cellAlignment] = kind
			off += size
		}
	}
}

// ref checks that off is an allocated cell not yet used by another reference
// (sk cells are shared by design) and returns its data.
func (c *checker) ref(from uint32, off uint32, role byte) ([]byte, bool) {
	name := roleNames[role]
	if off%cellAlignment != 0 || int(off/cellAlignment) >= len(c.kind) {
		c.problem(from, name, off, "reference to 0x%x lies outside the hive bins or is misaligned", abs(off))
		return nil, false
	}
	slot := off / cellAlignment
	switch c.kind[slot] {
	case slotNone:
		c.problem(from, name, off, "reference to 0x%x is not the start of a cell", abs(off))
		return nil, false
	case slotFree:
		c.problem(from, name, off, "reference to 0x%x lands on a free cell", abs(off))
		return nil, false
	}
	if u := c.used[slot]; u != roleNone && !(u == roleSK && role == roleSK) {
		c.problem(off, name, off, "cell already used as %s", roleNames[u])
		return nil, false
	}
	c.used[slot] = role
	b, err := c.h.cell(off, name)
	if err != nil {
		c.problem(off, name, off, "%v", err)
		return nil, false
	}
	return b, true
}

// refRecord is ref plus a signature and minimum size check.
func (c *checker) refRecord(from, off uint32, role byte, sig [2]byte, minSize int) ([]byte, bool) {
	b, ok := c.ref(from, off, role)
	if !ok {
		return nil, false
	}
	if len(b) < minSize || [2]byte(b[:2]) != sig {
		c.problem(off, roleNames[role], string(b[:min(2, len(b))]), "expected a %s record of at least %d bytes", sig[:], minSize)
		return nil, false
	}
	return b, true
}

// keys checks every key reachable from the root, iteratively so that deep
// or looping trees cannot exhaust the stack.
func (c *checker) keys() {
	rootOff := c.h.base.RootCellOffset
	if _, ok := c.refRecord(rootOff, rootOff, roleNK, sigNK, nkFixedSize); !ok {
		return
	}
	type item struct {
		off, parent uint32
		depth       int
	}
	stack := []item{{off: rootOff, parent: noCell}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		r, err := c.h.readNK(it.off)
		if err != nil {
			c.problem(it.off, "nk", nil, "%v", err)
			continue
		}
		isRoot := it.parent == noCell
		if isRoot && r.flags&KeyHiveEntry == 0 {
			c.problem(it.off, "nk", r.flags, "root key lacks the hive-entry flag")
		}
		if !isRoot && r.parent != it.parent {
			c.problem(it.off, "nk", r.parent, "parent field does not point to the parent key at 0x%x", abs(it.parent))
		}
		if it.depth > maxDepth {
			c.problem(it.off, "nk", it.depth, "key nesting deeper than %d levels", maxDepth)
			continue
		}
		c.security(it.off, r)
		c.class(it.off, r)
		c.values(it.off, r)
		for _, sub := range c.subkeys(it.off, r) {
			stack = append(stack, item{off: sub, parent: it.off, depth: it.depth + 1})
		}
		c.maxima(it.off, r)
	}
}

func (c *checker) security(from uint32, r *nk) {
	b, ok := c.refRecord(from, r.security, roleSK, sigSK, skFixedSize)
	if !ok {
		return
	}
	c.skRefs[r.security]++
	if c.skRefs[r.security] == 1 {
		if n := binary.LittleEndian.Uint32(b[skDescriptorSizeOffset:]); uint64(n) > uint64(len(b)-skDescriptorOffset) {
			c.problem(r.security, "sk", n, "security descriptor size exceeds its cell (%d bytes)", len(b))
		}
	}
}

func (c *checker) class(from uint32, r *nk) {
	if r.classNameLength == 0 {
		return
	}
	if b, ok := c.ref(from, r.className, roleClass); ok && len(b) < int(r.classNameLength) {
		c.problem(r.className, "class name", r.classNameLength, "class name length exceeds its cell (%d bytes)", len(b))
	}
}

// subkeys checks a key's subkey list and returns the subkeys' offsets, each
// already verified to be a fresh nk cell.
func (c *checker) subkeys(from uint32, r *nk) []uint32 {
	if r.subkeyCount == 0 {
		return nil
	}
	b, ok := c.ref(from, r.subkeyList, roleSubkeyList)
	if !ok {
		return nil
	}
	var leaves []uint32
	if len(b) >= 2 && [2]byte(b[:2]) == sigRI {
		_, entries, err := c.h.readList(r.subkeyList)
		if err != nil {
			c.problem(r.subkeyList, "ri", nil, "%v", err)
			return nil
		}
		for _, e := range entries {
			if lb, ok := c.ref(r.subkeyList, e.off, roleSubkeyList); ok {
				if len(lb) >= 2 && [2]byte(lb[:2]) == sigRI {
					c.problem(e.off, "ri", nil, "ri list nested in an ri list")
					continue
				}
				leaves = append(leaves, e.off)
			}
		}
	} else {
		leaves = []uint32{r.subkeyList}
	}
	var (
		out  []uint32
		prev []uint16
	)
	for _, leaf := range leaves {
		sig, entries, err := c.h.readList(leaf)
		if err != nil {
			c.problem(leaf, "subkey list", nil, "%v", err)
			continue
		}
		if len(entries) == 0 {
			c.problem(leaf, string(sig[:]), 0, "empty subkey list")
		}
		for i, e := range entries {
			if _, ok := c.refRecord(leaf, e.off, roleNK, sigNK, nkFixedSize); !ok {
				continue
			}
			sub, err := c.h.readNK(e.off)
			if err != nil {
				c.problem(e.off, "nk", nil, "%v", err)
				continue
			}
			units := nameUnits(sub.name, sub.flags&KeyCompName != 0)
			switch sig {
			case sigLH:
				if want := lhHash(units); e.hash != want {
					c.problem(leaf, "lh", e.hash, "element %d: hash of %q should be 0x%08x", i, decodeName(sub.name, sub.flags&KeyCompName != 0), want)
				}
			case sigLF:
				// A hint of a name that starts with characters beyond ASCII
				// depends on the code page of the Windows that wrote it
				// (yarp's CompHive holds U+009F hinted as 0x81, its
				// ExtendedASCIIHive U+00EB as 0xEB, and names above U+00FF
				// are hinted 0), so it is not checked: it only speeds up
				// lookups and kvmify never relies on it.
				if want := lfHint(units); e.hash != want && asciiHintable(units) {
					c.problem(leaf, "lf", e.hash, "element %d: name hint of %q should be 0x%08x", i, decodeName(sub.name, sub.flags&KeyCompName != 0), want)
				}
			}
			c.cur.subkeyName = max(c.cur.subkeyName, uint32(2*len(units)))
			c.cur.subkeyClass = max(c.cur.subkeyClass, uint32(sub.classNameLength))
			up := upcaseUnits(units)
			if prev != nil && compareUnits(prev, up) >= 0 {
				c.problem(leaf, string(sig[:]), i, "subkey %q is not sorted after its predecessor", decodeName(sub.name, sub.flags&KeyCompName != 0))
			}
			prev = up
			out = append(out, e.off)
		}
	}
	if uint32(len(out)) != r.subkeyCount {
		c.problem(from, "nk", r.subkeyCount, "subkey count differs from the %d keys in its lists", len(out))
	}
	return out
}

func (c *checker) values(from uint32, r *nk) {
	if r.valueCount == 0 {
		return
	}
	b, ok := c.ref(from, r.valueList, roleValueList)
	if !ok {
		return
	}
	if uint64(r.valueCount)*valueListElementSize > uint64(len(b)) {
		c.problem(r.valueList, "value list", r.valueCount, "value count exceeds the list cell (%d bytes)", len(b))
		return
	}
	names := make(map[string]bool, r.valueCount)
	for i := uint32(0); i < r.valueCount; i++ {
		off := binary.LittleEndian.Uint32(b[i*valueListElementSize:])
		if _, ok := c.refRecord(r.valueList, off, roleVK, sigVK, vkFixedSize); !ok {
			continue
		}
		v, err := c.h.readVK(off)
		if err != nil {
			c.problem(off, "vk", nil, "%v", err)
			continue
		}
		units := nameUnits(v.name, v.flags&ValueCompName != 0)
		c.cur.valueName = max(c.cur.valueName, uint32(2*len(units)))
		c.cur.valueData = max(c.cur.valueData, v.dataSize&^vkDataInline)
		up := string(utf16Bytes(upcaseUnits(units)))
		if names[up] {
			c.problem(off, "vk", decodeName(v.name, v.flags&ValueCompName != 0), "duplicate value name")
		}
		names[up] = true
		c.valueData(off, v)
	}
}

func (c *checker) valueData(from uint32, v *vk) {
	size := v.dataSize &^ vkDataInline
	if v.dataSize&vkDataInline != 0 {
		if size > vkInlineMax {
			c.problem(from, "vk", v.dataSize, "inline data larger than %d bytes", vkInlineMax)
		}
		return
	}
	if size == 0 {
		return
	}
	if size > bigDataSegmentSize && c.h.base.MinorVersion >= MinorVersionBigData {
		db, ok := c.refRecord(from, v.dataOff, roleDB, sigDB, dbFixedSize)
		if !ok {
			return
		}
		count := uint32(binary.LittleEndian.Uint16(db[dbSegmentCountOffset:]))
		if need := (size + bigDataSegmentSize - 1) / bigDataSegmentSize; count != need {
			c.problem(v.dataOff, "db", count, "%d segments for %d bytes, want %d", count, size, need)
		}
		listOff := binary.LittleEndian.Uint32(db[dbSegmentListOffset:])
		list, ok := c.ref(v.dataOff, listOff, roleDBList)
		if !ok {
			return
		}
		if uint64(count)*valueListElementSize > uint64(len(list)) {
			c.problem(listOff, "db segment list", count, "segment count exceeds the list cell (%d bytes)", len(list))
			return
		}
		left := size
		for i := uint32(0); i < count; i++ {
			seg := binary.LittleEndian.Uint32(list[i*valueListElementSize:])
			sb, ok := c.ref(listOff, seg, roleSegment)
			n := min(left, bigDataSegmentSize)
			if ok && uint32(len(sb)) < n {
				c.problem(seg, "db segment", len(sb), "segment cell shorter than its %d bytes of data", n)
			}
			left -= n
		}
		return
	}
	if b, ok := c.ref(from, v.dataOff, roleData); ok && uint64(size) > uint64(len(b)) {
		c.problem(v.dataOff, "value data", size, "data size exceeds the data cell (%d bytes)", len(b))
	}
}

// maxima checks the key node's largest-length fields: Windows keeps them as
// upper bounds (they are not shrunk on deletion), so each must be zero or at
// least the real maximum.
func (c *checker) maxima(off uint32, r *nk) {
	got := maxLengths{r.maxSubkeyName & nkMaxSubkeyNameMask, r.maxSubkeyClass, r.maxValueName, r.maxValueDataSize}
	want := c.cur
	c.cur = maxLengths{}
	for _, f := range []struct {
		name      string
		got, want uint32
	}{
		{"largest subkey name length", got.subkeyName, want.subkeyName},
		{"largest subkey class name length", got.subkeyClass, want.subkeyClass},
		{"largest value name length", got.valueName, want.valueName},
		{"largest value data size", got.valueData, want.valueData},
	} {
		// Windows XP leaves these fields zero on keys it copies into a
		// LastKnownGood control set (seen in xp-sp3-x86.SYSTEM's
		// ControlSet003), so zero means "not maintained", not a fault.
		if f.got < f.want && f.got != 0 {
			c.problem(off, "nk", f.got, "%s is below the actual %d", f.name, f.want)
		}
	}
}

// securityRing follows the sk list from the root's sk: every sk in the ring
// must link back (blink), every sk used by a key must be in the ring, and
// each reference count must equal the number of keys using it.
func (c *checker) securityRing() {
	root, err := c.h.readNK(c.h.base.RootCellOffset)
	if err != nil || len(c.skRefs) == 0 {
		return
	}
	start := root.security
	inRing := map[uint32]bool{}
	off := start
	for {
		if inRing[off] {
			c.problem(off, "sk", off, "sk list loops back to this cell without returning to the root's sk at 0x%x", abs(start))
			break
		}
		inRing[off] = true
		b, err := c.h.record(off, sigSK, skFixedSize)
		if err != nil {
			c.problem(off, "sk", nil, "%v", err)
			break
		}
		if c.used[off/cellAlignment] != roleSK {
			c.problem(off, "sk", off, "sk in the security list is not used by any key")
			c.used[off/cellAlignment] = roleSK
		}
		refs := binary.LittleEndian.Uint32(b[skReferenceCountOffset:])
		if refs != c.skRefs[off] {
			c.problem(off, "sk", refs, "reference count should be %d (keys using this sk)", c.skRefs[off])
		}
		next := binary.LittleEndian.Uint32(b[skFlinkOffset:])
		nb, err := c.h.record(next, sigSK, skFixedSize)
		if err != nil {
			c.problem(off, "sk", next, "flink: %v", err)
			break
		}
		if back := binary.LittleEndian.Uint32(nb[skBlinkOffset:]); back != off {
			c.problem(next, "sk", back, "blink does not point back to 0x%x", abs(off))
		}
		if next == start {
			break
		}
		off = next
	}
	for sk := range c.skRefs {
		if !inRing[sk] {
			c.problem(sk, "sk", sk, "sk used by keys is not in the security list")
		}
	}
}

// leaks reports allocated cells that nothing references.
func (c *checker) leaks() {
	for i, k := range c.kind {
		if k != slotAlloc || c.used[i] != roleNone {
			continue
		}
		off := uint32(i * cellAlignment)
		size := int64(-int32(binary.LittleEndian.Uint32(c.h.hbins[off:])))
		c.report.LeakTotal++
		c.report.LeakedBytes += size
		if len(c.report.Leaks) < maxProblems {
			e := formatErr(abs(off), "cell", nil, "allocated cell of %d bytes is not referenced (leaked: space lost, not corruption)", size)
			e.Err = ErrLeakedCell
			c.report.Leaks = append(c.report.Leaks, e)
		}
	}
}

// asciiHintable reports whether the first lfHintChars characters of a name
// are ASCII, so that its lf hint is predictable.
func asciiHintable(units []uint16) bool {
	for i := 0; i < lfHintChars && i < len(units); i++ {
		if units[i] > 0x7f {
			return false
		}
	}
	return true
}
