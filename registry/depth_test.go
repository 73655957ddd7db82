package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// chainHive hand-builds a hive whose keys nest n levels deep (root → k1 →
// … → kn), every key with an lh list of its one subkey, all in one bin.
func chainHive(n int) []byte {
	const (
		skSize  = 0x30
		nkSize  = 0x60
		lhSize  = 0x10
		perKey  = nkSize + lhSize
		skAt    = hbinHeaderSize
		firstNK = skAt + skSize
	)
	used := firstNK + (n+1)*perKey
	binSize := (used + 8 + hbinAlignment - 1) / hbinAlignment * hbinAlignment
	b := make([]byte, BaseBlockSize+binSize)
	le := binary.LittleEndian
	bb := &BaseBlock{
		PrimarySequence: 1, SecondarySequence: 1, MajorVersion: 1, MinorVersion: 5,
		FileFormat: FileFormatMemory, RootCellOffset: firstNK, HiveBinsDataSize: uint32(binSize), ClusteringFactor: 1,
	}
	bb.Encode(b)
	bin := b[BaseBlockSize:]
	copy(bin, hbinSignature[:])
	le.PutUint32(bin[hbinSizeOffset:], uint32(binSize))
	cell := func(off, size int) []byte {
		le.PutUint32(bin[off:], uint32(-int32(size)))
		return bin[off+cellSizeFieldSize : off+size]
	}
	sk := cell(skAt, skSize)
	copy(sk, sigSK[:])
	le.PutUint32(sk[skFlinkOffset:], skAt)
	le.PutUint32(sk[skBlinkOffset:], skAt)
	le.PutUint32(sk[skReferenceCountOffset:], uint32(n+1))
	for i := 0; i <= n; i++ {
		off := firstNK + i*perKey
		name := fmt.Sprintf("k%d", i)
		k := cell(off, nkSize)
		copy(k, sigNK[:])
		flags := uint16(KeyCompName)
		parent := off - perKey
		if i == 0 {
			flags |= KeyHiveEntry
			parent = 0
		}
		le.PutUint16(k[nkFlagsOffset:], flags)
		le.PutUint32(k[nkParentOffset:], uint32(parent))
		le.PutUint32(k[nkSubkeyListOffset:], noCell)
		le.PutUint32(k[nkVolatileSubkeyListOffset:], noCell)
		le.PutUint32(k[nkValueListOffset:], noCell)
		le.PutUint32(k[nkSecurityOffset:], skAt)
		le.PutUint32(k[nkClassNameOffset:], noCell)
		le.PutUint16(k[nkNameLengthOffset:], uint16(len(name)))
		copy(k[nkNameOffset:], name)
		lh := cell(off+nkSize, lhSize)
		if i == n {
			// The last key has no subkeys: its list cell is not needed,
			// so it becomes free space.
			le.PutUint32(bin[off+nkSize:], lhSize)
			continue
		}
		child := off + perKey
		childName := fmt.Sprintf("k%d", i+1)
		le.PutUint32(k[nkSubkeyCountOffset:], 1)
		le.PutUint32(k[nkSubkeyListOffset:], uint32(off+nkSize))
		le.PutUint32(k[nkMaxSubkeyNameLengthOffset:], uint32(2*len(childName)))
		copy(lh, sigLH[:])
		le.PutUint16(lh[listCountOffset:], 1)
		le.PutUint32(lh[listElementsOffset:], uint32(child))
		le.PutUint32(lh[listElementsOffset+4:], lhHash(nameUnits([]byte(childName), true)))
	}
	le.PutUint32(bin[used:], uint32(binSize-used))
	return b
}

func TestDepthLimit(t *testing.T) {
	ok, err := Open(chainHive(maxDepth))
	if err != nil {
		t.Fatal(err)
	}
	if err := ok.Check(); err != nil {
		t.Fatalf("a %d-level chain must pass Check: %v", maxDepth, err)
	}
	var deepest int
	if err := ok.Walk(func(k *Key) error { deepest = max(deepest, k.depth); return nil }); err != nil || deepest != maxDepth {
		t.Fatalf("walk: depth %d, %v", deepest, err)
	}

	deep, err := Open(chainHive(maxDepth + 1))
	if err != nil {
		t.Fatal(err)
	}
	err = deep.Walk(func(*Key) error { return nil })
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrLimit) {
		t.Errorf("walk of %d levels: got %v, want an ErrLimit FormatError", maxDepth+1, err)
	}
	if err := deep.Check(); !errors.Is(err, ErrFormat) {
		t.Errorf("Check of %d levels: got %v", maxDepth+1, err)
	}
}
