package registry

import (
	"encoding/binary"
	"time"
	"unicode/utf16"
)

// Cell offsets (relative to the first bin) of the hand-built minimal hive.
const (
	minSK        = 0x20
	minRoot      = 0x100
	minSubkeys   = 0x180
	minChild     = 0x1a0
	minValues    = 0x220
	minVKDword   = 0x230
	minVKString  = 0x250
	minData      = 0x270
	minChildName = "Services"
	minFree      = 0x290
)

// minimalHive hand-builds a small, valid hive: a root key with one subkey
// ("Services") that holds an inline REG_DWORD "Start" = 3 and a REG_SZ
// default value "atapi", all sharing one sk. Every field is set explicitly
// from the format specification so tests do not depend on kvmify's writer.
func minimalHive() []byte {
	const binSize = hbinAlignment
	b := make([]byte, BaseBlockSize+binSize)
	le := binary.LittleEndian
	stamp := timeToFiletime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))

	// Base block.
	bb := &BaseBlock{
		PrimarySequence: 1, SecondarySequence: 1, LastWritten: filetimeToTime(stamp),
		MajorVersion: 1, MinorVersion: 5, FileType: FileTypePrimary, FileFormat: FileFormatMemory,
		RootCellOffset: minRoot, HiveBinsDataSize: binSize, ClusteringFactor: 1,
	}
	bb.Encode(b)

	// The one bin.
	bin := b[BaseBlockSize:]
	copy(bin[hbinSignatureOffset:], hbinSignature[:])
	le.PutUint32(bin[hbinOffsetOffset:], 0)
	le.PutUint32(bin[hbinSizeOffset:], binSize)

	cell := func(off uint32, size int32) []byte {
		le.PutUint32(bin[off:], uint32(size))
		if size < 0 {
			size = -size
		}
		return bin[off+cellSizeFieldSize : off+uint32(size)]
	}

	// sk: a ring of one, used by both keys; an empty self-relative descriptor.
	sk := cell(minSK, -0xe0)
	copy(sk, sigSK[:])
	le.PutUint32(sk[skFlinkOffset:], minSK)
	le.PutUint32(sk[skBlinkOffset:], minSK)
	le.PutUint32(sk[skReferenceCountOffset:], 2)
	le.PutUint32(sk[skDescriptorSizeOffset:], 20)
	sk[skDescriptorOffset] = 1      // revision
	sk[skDescriptorOffset+3] = 0x80 // control: self-relative

	nkCell := func(off uint32, size int32, name string, flags uint16, parent, subCount, subList, valCount, valList uint32) {
		n := cell(off, size)
		copy(n, sigNK[:])
		le.PutUint16(n[nkFlagsOffset:], flags|KeyCompName)
		le.PutUint64(n[nkLastWrittenOffset:], stamp)
		le.PutUint32(n[nkParentOffset:], parent)
		le.PutUint32(n[nkSubkeyCountOffset:], subCount)
		le.PutUint32(n[nkSubkeyListOffset:], subList)
		le.PutUint32(n[nkVolatileSubkeyListOffset:], noCell)
		le.PutUint32(n[nkValueCountOffset:], valCount)
		le.PutUint32(n[nkValueListOffset:], valList)
		le.PutUint32(n[nkSecurityOffset:], minSK)
		le.PutUint32(n[nkClassNameOffset:], noCell)
		le.PutUint16(n[nkNameLengthOffset:], uint16(len(name)))
		copy(n[nkNameOffset:], name)
	}
	nkCell(minRoot, -0x80, "ROOT", KeyHiveEntry|KeyNoDelete, 0, 1, minSubkeys, 0, noCell)
	le.PutUint32(bin[minRoot+cellSizeFieldSize+nkMaxSubkeyNameLengthOffset:], 2*uint32(len(minChildName)))

	// lh list with the one subkey.
	lh := cell(minSubkeys, -0x20)
	copy(lh, sigLH[:])
	le.PutUint16(lh[listCountOffset:], 1)
	le.PutUint32(lh[listElementsOffset:], minChild)
	le.PutUint32(lh[listElementsOffset+4:], lhHash(nameUnits([]byte(minChildName), true)))

	nkCell(minChild, -0x80, minChildName, 0, minRoot, 0, noCell, 2, minValues)
	le.PutUint32(bin[minChild+cellSizeFieldSize+nkMaxValueNameLengthOffset:], 2*uint32(len("Start")))
	le.PutUint32(bin[minChild+cellSizeFieldSize+nkMaxValueDataSizeOffset:], 12) // "atapi\0" in UTF-16

	vl := cell(minValues, -0x10)
	le.PutUint32(vl[0:], minVKDword)
	le.PutUint32(vl[4:], minVKString)

	vkCell := func(off uint32, name string, size, dataOff uint32, typ ValueType) {
		v := cell(off, -0x20)
		copy(v, sigVK[:])
		le.PutUint16(v[vkNameLengthOffset:], uint16(len(name)))
		le.PutUint32(v[vkDataSizeOffset:], size)
		le.PutUint32(v[vkDataOffset:], dataOff)
		le.PutUint32(v[vkTypeOffset:], uint32(typ))
		le.PutUint16(v[vkFlagsOffset:], ValueCompName)
		copy(v[vkNameOffset:], name)
	}
	vkCell(minVKDword, "Start", vkDataInline|4, 3, RegDword)
	str := utf16Bytes(append(utf16.Encode([]rune("atapi")), 0))
	vkCell(minVKString, "", uint32(len(str)), minData, RegSZ)
	copy(cell(minData, -0x20), str)

	// The rest of the bin is one free cell.
	cell(minFree, int32(binSize-minFree))
	return b
}
