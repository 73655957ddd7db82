package registry

import (
	"encoding/binary"
	"fmt"
	"slices"
	"unicode/utf16"
)

// SetValue creates or replaces the value called name ("" for the default
// value) of the existing key at path; a replaced value's old data cells are
// freed. Data of up to 4 bytes is stored inline, larger data in a cell, and
// data above 16344 bytes in big-data segments in hives of version 1.4 on.
func (e *Editor) SetValue(path, name string, typ ValueType, data []byte) error {
	nameBytes, comp, units := encodeName(name)
	if units > maxValueNameUnits {
		return fmt.Errorf("%w: value name of %d characters (at most %d)", ErrInvalidName, units, maxValueNameUnits)
	}
	if len(data) > maxValueData {
		return fmt.Errorf("registry: value %q: %d bytes of data exceed the %d a value can hold", name, len(data), maxValueData)
	}
	k, err := e.lookup(path)
	if err != nil {
		return err
	}
	offs, err := e.h.valueOffsets(k.rec.valueList, k.rec.valueCount, &cellSet{})
	if err != nil {
		return err
	}
	want := upcaseUnits(utf16.Encode([]rune(name)))
	existing := uint32(noCell)
	for _, off := range offs {
		r, err := e.h.readVK(off)
		if err != nil {
			return err
		}
		if compareUnits(upcaseUnits(nameUnits(r.name, r.flags&ValueCompName != 0)), want) == 0 {
			existing = off
			break
		}
	}
	// New data is stored before old data is freed, so a failure leaves the
	// value as it was.
	size, dataOff, err := e.storeData(data)
	if err != nil {
		return err
	}
	vkOff := existing
	if vkOff != noCell {
		if err := e.freeValueData(vkOff); err != nil {
			return err
		}
	} else {
		if vkOff, err = e.alloc.alloc(vkFixedSize + len(nameBytes)); err != nil {
			return err
		}
		b := e.cellBytes(vkOff)
		copy(b, sigVK[:])
		binary.LittleEndian.PutUint16(b[vkNameLengthOffset:], uint16(len(nameBytes)))
		if comp {
			binary.LittleEndian.PutUint16(b[vkFlagsOffset:], ValueCompName)
		}
		copy(b[vkNameOffset:], nameBytes)
		if err := e.appendValue(k.off, vkOff); err != nil {
			return err
		}
	}
	b, err := e.h.record(vkOff, sigVK, vkFixedSize)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint32(b[vkDataSizeOffset:], size)
	le.PutUint32(b[vkDataOffset:], dataOff)
	le.PutUint32(b[vkTypeOffset:], uint32(typ))

	kb, err := e.nkData(k.off)
	if err != nil {
		return err
	}
	if n := uint32(2 * units); le.Uint32(kb[nkMaxValueNameLengthOffset:]) < n {
		le.PutUint32(kb[nkMaxValueNameLengthOffset:], n)
	}
	if n := uint32(len(data)); le.Uint32(kb[nkMaxValueDataSizeOffset:]) < n {
		le.PutUint32(kb[nkMaxValueDataSizeOffset:], n)
	}
	return e.touch(k.off)
}

// appendValue adds the vk at vkOff to the end of key's value list, growing
// the list cell when it is full.
func (e *Editor) appendValue(key, vkOff uint32) error {
	r, err := e.h.readNK(key)
	if err != nil {
		return err
	}
	offs, err := e.h.valueOffsets(r.valueList, r.valueCount, &cellSet{})
	if err != nil {
		return err
	}
	offs = append(offs, vkOff)
	if err := e.writeValueList(key, r.valueList, r.valueCount, offs); err != nil {
		return err
	}
	return nil
}

// writeValueList stores offs as key's value list (in place when the old
// cell is big enough) and sets the key's value count.
func (e *Editor) writeValueList(key, oldList, oldCount uint32, offs []uint32) error {
	need := len(offs) * valueListElementSize
	list := uint32(noCell)
	var b []byte
	if oldCount != 0 && oldList != noCell {
		cb, err := e.h.cell(oldList, "value list")
		if err != nil {
			return err
		}
		if len(cb) >= need && need > 0 {
			list, b = oldList, cb
		} else if err := e.alloc.release(oldList); err != nil {
			return err
		}
	}
	if b == nil && need > 0 {
		n, err := e.alloc.alloc(need)
		if err != nil {
			return err
		}
		list, b = n, e.cellBytes(n)
	}
	le := binary.LittleEndian
	for i, o := range offs {
		le.PutUint32(b[i*valueListElementSize:], o)
	}
	kb, err := e.nkData(key)
	if err != nil {
		return err
	}
	le.PutUint32(kb[nkValueCountOffset:], uint32(len(offs)))
	le.PutUint32(kb[nkValueListOffset:], list)
	return nil
}

// bigDataSegmentSlack is the room left after each big-data segment's data.
const bigDataSegmentSlack = 4

// storeData writes value data and returns the vk's data size and data
// offset fields.
func (e *Editor) storeData(data []byte) (size, off uint32, err error) {
	n := uint32(len(data))
	if n <= vkInlineMax {
		var in [vkInlineMax]byte
		copy(in[:], data)
		return n | vkDataInline, binary.LittleEndian.Uint32(in[:]), nil
	}
	if n <= bigDataSegmentSize || e.base.MinorVersion < MinorVersionBigData {
		off, err := e.alloc.alloc(len(data))
		if err != nil {
			return 0, 0, err
		}
		copy(e.cellBytes(off), data)
		return n, off, nil
	}
	count := (len(data) + bigDataSegmentSize - 1) / bigDataSegmentSize
	segs := make([]uint32, count)
	for i := range segs {
		chunk := data[i*bigDataSegmentSize : min(len(data), (i+1)*bigDataSegmentSize)]
		// Each segment cell gets 4 bytes beyond its data: libhivex reads a
		// segment as its cell size minus 8 (true of the 16344-byte segments
		// Windows writes), so a tighter cell would lose the last bytes there.
		if segs[i], err = e.alloc.alloc(len(chunk) + bigDataSegmentSlack); err != nil {
			return 0, 0, err
		}
		copy(e.cellBytes(segs[i]), chunk)
	}
	list, err := e.alloc.alloc(count * valueListElementSize)
	if err != nil {
		return 0, 0, err
	}
	lb := e.cellBytes(list)
	le := binary.LittleEndian
	for i, s := range segs {
		le.PutUint32(lb[i*valueListElementSize:], s)
	}
	db, err := e.alloc.alloc(dbFixedSize)
	if err != nil {
		return 0, 0, err
	}
	b := e.cellBytes(db)
	copy(b, sigDB[:])
	le.PutUint16(b[dbSegmentCountOffset:], uint16(count))
	le.PutUint32(b[dbSegmentListOffset:], list)
	return n, db, nil
}

// DeleteValue deletes the value called name of the key at path.
func (e *Editor) DeleteValue(path, name string) error {
	k, err := e.lookup(path)
	if err != nil {
		return err
	}
	v, err := k.Value(name)
	if err != nil {
		return err
	}
	offs, err := e.h.valueOffsets(k.rec.valueList, k.rec.valueCount, &cellSet{})
	if err != nil {
		return err
	}
	i := slices.Index(offs, v.off)
	offs = slices.Delete(offs, i, i+1)
	if err := e.freeValue(v.off); err != nil {
		return err
	}
	if err := e.writeValueList(k.off, k.rec.valueList, k.rec.valueCount, offs); err != nil {
		return err
	}
	return e.touch(k.off)
}

// freeValue frees a vk cell and its data.
func (e *Editor) freeValue(off uint32) error {
	if err := e.freeValueData(off); err != nil {
		return err
	}
	return e.alloc.release(off)
}

// freeValueData frees the data cells of the vk at off (none for inline or
// empty data).
func (e *Editor) freeValueData(off uint32) error {
	r, err := e.h.readVK(off)
	if err != nil {
		return err
	}
	size := r.dataSize &^ vkDataInline
	if r.dataSize&vkDataInline != 0 || size == 0 {
		return nil
	}
	if size > bigDataSegmentSize && e.base.MinorVersion >= MinorVersionBigData {
		db, err := e.h.record(r.dataOff, sigDB, dbFixedSize)
		if err != nil {
			return err
		}
		le := binary.LittleEndian
		count := uint32(le.Uint16(db[dbSegmentCountOffset:]))
		listOff := le.Uint32(db[dbSegmentListOffset:])
		list, err := e.h.cell(listOff, "db segment list")
		if err != nil {
			return err
		}
		if uint64(count)*valueListElementSize > uint64(len(list)) {
			return formatErr(abs(listOff), "db segment list", count, "segment count exceeds the list cell (%d bytes)", len(list))
		}
		segs := make([]uint32, count)
		for i := range segs {
			segs[i] = le.Uint32(list[i*valueListElementSize:])
		}
		for _, s := range append(segs, listOff, r.dataOff) {
			if err := e.alloc.release(s); err != nil {
				return err
			}
		}
		return nil
	}
	return e.alloc.release(r.dataOff)
}
