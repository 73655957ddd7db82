package registry

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Key value ("vk") layout, offsets within the cell data.
const (
	vkNameLengthOffset = 2
	vkDataSizeOffset   = 4
	vkDataOffset       = 8
	vkTypeOffset       = 12
	vkFlagsOffset      = 16
	vkNameOffset       = 20
	vkFixedSize        = vkNameOffset

	// vkDataInline in the data size marks data stored in the data offset field itself.
	vkDataInline = 0x80000000
	// vkInlineMax is how many bytes fit in the data offset field.
	vkInlineMax = 4

	// ValueCompName marks a value name stored as Latin-1 bytes, not UTF-16LE.
	ValueCompName = 0x0001
)

// Big data ("db") layout: values larger than bigDataSegmentSize in hives of
// version 1.4 and later are split into segments listed by a db record.
const (
	dbSegmentCountOffset = 2
	dbSegmentListOffset  = 4
	dbFixedSize          = 8

	bigDataSegmentSize = 16344
)

// ValueType is a registry value's data type.
type ValueType uint32

// Registry value types.
const (
	RegNone                     ValueType = 0
	RegSZ                       ValueType = 1
	RegExpandSZ                 ValueType = 2
	RegBinary                   ValueType = 3
	RegDword                    ValueType = 4
	RegDwordBigEndian           ValueType = 5
	RegLink                     ValueType = 6
	RegMultiSZ                  ValueType = 7
	RegResourceList             ValueType = 8
	RegFullResourceDescriptor   ValueType = 9
	RegResourceRequirementsList ValueType = 10
	RegQword                    ValueType = 11
)

var valueTypeNames = [...]string{
	RegNone:                     "REG_NONE",
	RegSZ:                       "REG_SZ",
	RegExpandSZ:                 "REG_EXPAND_SZ",
	RegBinary:                   "REG_BINARY",
	RegDword:                    "REG_DWORD",
	RegDwordBigEndian:           "REG_DWORD_BIG_ENDIAN",
	RegLink:                     "REG_LINK",
	RegMultiSZ:                  "REG_MULTI_SZ",
	RegResourceList:             "REG_RESOURCE_LIST",
	RegFullResourceDescriptor:   "REG_FULL_RESOURCE_DESCRIPTOR",
	RegResourceRequirementsList: "REG_RESOURCE_REQUIREMENTS_LIST",
	RegQword:                    "REG_QWORD",
}

// String returns the Windows name of t, or its number in hex when unknown.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("0x%x", uint32(t))
}

// Value is one registry value with its data read into memory.
type Value struct {
	Name  string // "" for the key's default value
	Type  ValueType
	Flags uint16

	off  uint32
	data []byte
}

// Offset returns the value's vk cell offset (relative to the first hive bin).
func (v Value) Offset() uint32 { return v.off }

// Raw returns the value's bytes exactly as stored, trimmed to its data size;
// the slice is the caller's.
func (v Value) Raw() []byte { return append([]byte(nil), v.data...) }

// Data is Raw.
func (v Value) Data() []byte { return v.Raw() }

// String decodes REG_SZ, REG_EXPAND_SZ and REG_LINK data from UTF-16LE, up to
// the first NUL.
func (v Value) String() (string, error) {
	switch v.Type {
	case RegSZ, RegExpandSZ, RegLink:
	default:
		return "", fmt.Errorf("registry: value %q is %v, not a string", v.Name, v.Type)
	}
	s := decodeUTF16(v.data)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return s, nil
}

// Strings decodes REG_MULTI_SZ data: NUL-separated UTF-16LE strings, ended
// by an empty string.
func (v Value) Strings() ([]string, error) {
	if v.Type != RegMultiSZ {
		return nil, fmt.Errorf("registry: value %q is %v, not REG_MULTI_SZ", v.Name, v.Type)
	}
	var out []string
	for _, s := range strings.Split(decodeUTF16(v.data), "\x00") {
		if s == "" {
			break
		}
		out = append(out, s)
	}
	return out, nil
}

// Uint32 decodes REG_DWORD (little-endian) and REG_DWORD_BIG_ENDIAN data.
func (v Value) Uint32() (uint32, error) {
	if len(v.data) < 4 {
		return 0, fmt.Errorf("registry: value %q has %d bytes, too short for a dword", v.Name, len(v.data))
	}
	switch v.Type {
	case RegDword:
		return binary.LittleEndian.Uint32(v.data), nil
	case RegDwordBigEndian:
		return binary.BigEndian.Uint32(v.data), nil
	}
	return 0, fmt.Errorf("registry: value %q is %v, not a dword", v.Name, v.Type)
}

// Uint64 decodes REG_QWORD data.
func (v Value) Uint64() (uint64, error) {
	if v.Type != RegQword {
		return 0, fmt.Errorf("registry: value %q is %v, not REG_QWORD", v.Name, v.Type)
	}
	if len(v.data) < 8 {
		return 0, fmt.Errorf("registry: value %q has %d bytes, too short for a qword", v.Name, len(v.data))
	}
	return binary.LittleEndian.Uint64(v.data), nil
}

// vk is a decoded key value record.
type vk struct {
	name     []byte
	dataSize uint32 // including the inline flag
	dataOff  uint32
	typ      uint32
	flags    uint16
	inline   [vkInlineMax]byte
}

func (h *Hive) readVK(off uint32) (*vk, error) {
	b, err := h.record(off, sigVK, vkFixedSize)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	r := &vk{
		dataSize: le.Uint32(b[vkDataSizeOffset:]),
		dataOff:  le.Uint32(b[vkDataOffset:]),
		typ:      le.Uint32(b[vkTypeOffset:]),
		flags:    le.Uint16(b[vkFlagsOffset:]),
	}
	copy(r.inline[:], b[vkDataOffset:vkDataOffset+vkInlineMax])
	nameLen := int(le.Uint16(b[vkNameLengthOffset:]))
	if nameLen > len(b)-vkNameOffset {
		return nil, formatErr(abs(off)+cellSizeFieldSize+vkNameLengthOffset, "vk", nameLen, "value name longer than its cell (%d bytes left)", len(b)-vkNameOffset)
	}
	r.name = b[vkNameOffset : vkNameOffset+nameLen]
	return r, nil
}

// values reads every value of k, with its data.
func (k *Key) values(seen *cellSet) ([]Value, error) {
	offs, err := k.h.valueOffsets(k.rec.valueList, k.rec.valueCount, seen)
	if err != nil {
		return nil, err
	}
	out := make([]Value, 0, len(offs))
	for _, off := range offs {
		if !seen.claim(off) {
			return nil, formatErr(abs(off), "vk", off, "value referenced twice (reference loop)")
		}
		r, err := k.h.readVK(off)
		if err != nil {
			return nil, err
		}
		data, err := k.h.valueData(off, r, seen)
		if err != nil {
			return nil, err
		}
		out = append(out, Value{
			Name:  decodeName(r.name, r.flags&ValueCompName != 0),
			Type:  ValueType(r.typ),
			Flags: r.flags,
			off:   off,
			data:  data,
		})
	}
	return out, nil
}

// valueData returns a fresh copy of the data of the value at off.
func (h *Hive) valueData(off uint32, r *vk, seen *cellSet) ([]byte, error) {
	size := r.dataSize &^ vkDataInline
	if r.dataSize&vkDataInline != 0 {
		if size > vkInlineMax {
			return nil, formatErr(abs(off)+cellSizeFieldSize+vkDataSizeOffset, "vk", r.dataSize, "inline data larger than %d bytes", vkInlineMax)
		}
		return append([]byte(nil), r.inline[:size]...), nil
	}
	if size == 0 {
		return []byte{}, nil
	}
	if !seen.claim(r.dataOff) {
		return nil, formatErr(abs(r.dataOff), "value data", r.dataOff, "data cell referenced twice")
	}
	if size > bigDataSegmentSize && h.base.MinorVersion >= MinorVersionBigData {
		return h.bigData(r.dataOff, size, seen)
	}
	b, err := h.cell(r.dataOff, "value data")
	if err != nil {
		return nil, err
	}
	if uint64(size) > uint64(len(b)) {
		return nil, formatErr(abs(r.dataOff), "value data", size, "data size exceeds the data cell (%d bytes)", len(b))
	}
	return append([]byte(nil), b[:size]...), nil
}

// bigData assembles a value stored in db segments.
func (h *Hive) bigData(off, size uint32, seen *cellSet) ([]byte, error) {
	b, err := h.record(off, sigDB, dbFixedSize)
	if err != nil {
		return nil, err
	}
	count := uint32(binary.LittleEndian.Uint16(b[dbSegmentCountOffset:]))
	need := (size + bigDataSegmentSize - 1) / bigDataSegmentSize
	if count < need {
		return nil, formatErr(abs(off)+cellSizeFieldSize+dbSegmentCountOffset, "db", count, "%d segments cannot hold %d bytes", count, size)
	}
	if uint64(size) > uint64(len(h.hbins)) {
		return nil, formatErr(abs(off), "db", size, "big data size exceeds the hive bins")
	}
	listOff := binary.LittleEndian.Uint32(b[dbSegmentListOffset:])
	if !seen.claim(listOff) {
		return nil, formatErr(abs(listOff), "db segment list", listOff, "segment list referenced twice")
	}
	list, err := h.cell(listOff, "db segment list")
	if err != nil {
		return nil, err
	}
	if uint64(count)*valueListElementSize > uint64(len(list)) {
		return nil, formatErr(abs(listOff), "db segment list", count, "segment count exceeds the list cell (%d bytes)", len(list))
	}
	out := make([]byte, 0, size)
	for i := uint32(0); i < need; i++ {
		seg := binary.LittleEndian.Uint32(list[i*valueListElementSize:])
		if !seen.claim(seg) {
			return nil, formatErr(abs(seg), "db segment", seg, "segment referenced twice")
		}
		sb, err := h.cell(seg, "db segment")
		if err != nil {
			return nil, err
		}
		n := min(size-uint32(len(out)), bigDataSegmentSize)
		if uint64(n) > uint64(len(sb)) {
			return nil, formatErr(abs(seg), "db segment", len(sb), "segment cell shorter than its %d bytes of data", n)
		}
		out = append(out, sb[:n]...)
	}
	return out, nil
}
