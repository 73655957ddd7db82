package registry

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf16"
)

// Key node ("nk") layout, offsets within the cell data.
const (
	nkFlagsOffset                = 2
	nkLastWrittenOffset          = 4
	nkParentOffset               = 16
	nkSubkeyCountOffset          = 20
	nkVolatileSubkeyCountOffset  = 24
	nkSubkeyListOffset           = 28
	nkVolatileSubkeyListOffset   = 32
	nkValueCountOffset           = 36
	nkValueListOffset            = 40
	nkSecurityOffset             = 44
	nkClassNameOffset            = 48
	nkMaxSubkeyNameLengthOffset  = 52
	nkMaxSubkeyClassLengthOffset = 56
	nkMaxValueNameLengthOffset   = 60
	nkMaxValueDataSizeOffset     = 64
	nkNameLengthOffset           = 72
	nkClassNameLengthOffset      = 74
	nkNameOffset                 = 76
	nkFixedSize                  = nkNameOffset

	// nkMaxSubkeyNameMask selects the length in the largest-subkey-name field;
	// Windows 10 keeps flags in the upper bits.
	nkMaxSubkeyNameMask = 0xFFFF
)

// Key node flags.
const (
	KeyVolatile     = 0x0001
	KeyHiveExit     = 0x0002
	KeyHiveEntry    = 0x0004 // the hive's root key
	KeyNoDelete     = 0x0008
	KeySymLink      = 0x0010
	KeyCompName     = 0x0020 // the name is stored as Latin-1 bytes, not UTF-16LE
	KeyPredefHandle = 0x0040
)

// nk is a decoded key node record.
type nk struct {
	flags            uint16
	lastWritten      uint64
	parent           uint32
	subkeyCount      uint32
	subkeyList       uint32
	valueCount       uint32
	valueList        uint32
	security         uint32
	className        uint32
	classNameLength  uint16
	maxSubkeyName    uint32
	maxSubkeyClass   uint32
	maxValueName     uint32
	maxValueDataSize uint32
	name             []byte // raw, as stored
}

func (h *Hive) readNK(off uint32) (*nk, error) {
	b, err := h.record(off, sigNK, nkFixedSize)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	r := &nk{
		flags:            le.Uint16(b[nkFlagsOffset:]),
		lastWritten:      le.Uint64(b[nkLastWrittenOffset:]),
		parent:           le.Uint32(b[nkParentOffset:]),
		subkeyCount:      le.Uint32(b[nkSubkeyCountOffset:]),
		subkeyList:       le.Uint32(b[nkSubkeyListOffset:]),
		valueCount:       le.Uint32(b[nkValueCountOffset:]),
		valueList:        le.Uint32(b[nkValueListOffset:]),
		security:         le.Uint32(b[nkSecurityOffset:]),
		className:        le.Uint32(b[nkClassNameOffset:]),
		classNameLength:  le.Uint16(b[nkClassNameLengthOffset:]),
		maxSubkeyName:    le.Uint32(b[nkMaxSubkeyNameLengthOffset:]),
		maxSubkeyClass:   le.Uint32(b[nkMaxSubkeyClassLengthOffset:]),
		maxValueName:     le.Uint32(b[nkMaxValueNameLengthOffset:]),
		maxValueDataSize: le.Uint32(b[nkMaxValueDataSizeOffset:]),
	}
	nameLen := int(le.Uint16(b[nkNameLengthOffset:]))
	if nameLen > len(b)-nkNameOffset {
		return nil, formatErr(abs(off)+cellSizeFieldSize+nkNameLengthOffset, "nk", nameLen, "key name longer than its cell (%d bytes left)", len(b)-nkNameOffset)
	}
	r.name = b[nkNameOffset : nkNameOffset+nameLen]
	return r, nil
}

// Key is one registry key; it is a view into its Hive.
type Key struct {
	Name        string
	LastWritten time.Time
	Flags       uint16

	h     *Hive
	off   uint32
	rec   *nk
	path  string
	depth int
}

// key decodes the nk cell at off; path is the key's path below the root.
func (h *Hive) key(off uint32, path string, depth int) (*Key, error) {
	r, err := h.readNK(off)
	if err != nil {
		return nil, err
	}
	return &Key{
		Name:        decodeName(r.name, r.flags&KeyCompName != 0),
		LastWritten: filetimeToTime(r.lastWritten),
		Flags:       r.flags,
		h:           h,
		off:         off,
		rec:         r,
		path:        path,
		depth:       depth,
	}, nil
}

// Path returns the key's backslash-separated path below the root, without
// the root's own name ("" for the root).
func (k *Key) Path() string { return k.path }

// Offset returns the key's cell offset (relative to the first hive bin).
func (k *Key) Offset() uint32 { return k.off }

// SubkeyCount returns the stable subkey count recorded in the key node.
func (k *Key) SubkeyCount() uint32 { return k.rec.subkeyCount }

// ValueCount returns the value count recorded in the key node.
func (k *Key) ValueCount() uint32 { return k.rec.valueCount }

// ClassName returns the key's class name, or "" when it has none.
func (k *Key) ClassName() (string, error) {
	if k.rec.className == noCell || k.rec.classNameLength == 0 {
		return "", nil
	}
	b, err := k.h.cell(k.rec.className, "class name")
	if err != nil {
		return "", err
	}
	if int(k.rec.classNameLength) > len(b) {
		return "", formatErr(abs(k.rec.className), "class name", k.rec.classNameLength, "class name length exceeds its cell (%d bytes)", len(b))
	}
	return decodeUTF16(b[:k.rec.classNameLength]), nil
}

// Subkeys returns the key's subkeys in stored order.
func (k *Key) Subkeys() ([]*Key, error) { return k.subkeys(&cellSet{}) }

func (k *Key) subkeys(seen *cellSet) ([]*Key, error) {
	if k.rec.subkeyCount == 0 {
		return nil, nil
	}
	offs, err := k.h.subkeyOffsets(k.rec.subkeyList, seen)
	if err != nil {
		return nil, err
	}
	if uint32(len(offs)) != k.rec.subkeyCount {
		return nil, formatErr(abs(k.off), "nk", k.rec.subkeyCount, "subkey count differs from the %d entries of its subkey list", len(offs))
	}
	out := make([]*Key, 0, len(offs))
	prefix := k.path
	if prefix != "" {
		prefix += `\`
	}
	for _, e := range offs {
		if !seen.claim(e.off) {
			return nil, formatErr(abs(e.off), "nk", e.off, "key listed twice in one subkey list")
		}
		r, err := k.h.readNK(e.off)
		if err != nil {
			return nil, err
		}
		name := decodeName(r.name, r.flags&KeyCompName != 0)
		out = append(out, &Key{
			Name:        name,
			LastWritten: filetimeToTime(r.lastWritten),
			Flags:       r.flags,
			h:           k.h,
			off:         e.off,
			rec:         r,
			path:        prefix + name,
			depth:       k.depth + 1,
		})
	}
	return out, nil
}

// Subkey returns the direct subkey called name (case-insensitive, with
// Windows' upcase rules), or an error matching ErrNotFound.
func (k *Key) Subkey(name string) (*Key, error) {
	subs, err := k.Subkeys()
	if err != nil {
		return nil, err
	}
	want := upcaseUnits(utf16.Encode([]rune(name)))
	for _, s := range subs {
		if compareUnits(upcaseUnits(utf16.Encode([]rune(s.Name))), want) == 0 {
			return s, nil
		}
	}
	return nil, fmt.Errorf("key %q: subkey %q: %w", k.path, name, ErrNotFound)
}

// Values returns the key's values in stored order.
func (k *Key) Values() ([]Value, error) { return k.values(&cellSet{}) }

// Value returns the value called name ("" for the default value;
// case-insensitive), or an error matching ErrNotFound.
func (k *Key) Value(name string) (Value, error) {
	vs, err := k.Values()
	if err != nil {
		return Value{}, err
	}
	want := upcaseUnits(utf16.Encode([]rune(name)))
	for _, v := range vs {
		if compareUnits(upcaseUnits(utf16.Encode([]rune(v.Name))), want) == 0 {
			return v, nil
		}
	}
	return Value{}, fmt.Errorf("key %q: value %q: %w", k.path, name, ErrNotFound)
}
