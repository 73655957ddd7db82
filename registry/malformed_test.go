package registry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestMinimalHive checks the hand-built hive against hivex and Check, so the
// malformed variants below start from something known to be valid.
func TestMinimalHive(t *testing.T) {
	data := minimalHive()
	h, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	k, err := h.Lookup(`services`)
	if err != nil {
		t.Fatal(err)
	}
	v, err := k.Value("START")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := v.Uint32(); err != nil || n != 3 {
		t.Errorf("Start = %d, %v; want 3", n, err)
	}
	d, err := k.Value("")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := d.String(); err != nil || s != "atapi" {
		t.Errorf("default = %q, %v; want atapi", s, err)
	}
	if _, err := h.Lookup(`Services\nope`); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing key: %v", err)
	}
	path := filepath.Join(t.TempDir(), "minimal")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := hivexDump(t, path)
	got := kvmifyDump(t, h)
	sort.Strings(want)
	sort.Strings(got)
	diffSorted(t, got, want)
}

// mutation edits a copy of a valid hive into a malformed one.
type mutation struct {
	name   string
	mutate func(b []byte) []byte
	// wantOffset is the absolute offset the error must name.
	wantOffset int64
}

func put32(b []byte, off int64, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// cellData is the absolute offset of a cell's data (after its size field).
func cellData(off uint32) int64 { return abs(off) + cellSizeFieldSize }

func TestMalformedMinimal(t *testing.T) {
	for _, m := range []mutation{
		{"truncated file", func(b []byte) []byte { return b[:BaseBlockSize+100] }, regfHiveBinsDataSizeOffset},
		{"truncated base block", func(b []byte) []byte { return b[:300] }, 0},
		{"bad hbin signature", func(b []byte) []byte { b[BaseBlockSize] = 'X'; return b }, BaseBlockSize},
		{"hbin offset field", func(b []byte) []byte { put32(b, BaseBlockSize+hbinOffsetOffset, 0x1000); return b }, BaseBlockSize + hbinOffsetOffset},
		{"hbin size not 4K multiple", func(b []byte) []byte { put32(b, BaseBlockSize+hbinSizeOffset, 0x1001); return b }, BaseBlockSize + hbinSizeOffset},
		{"hbin larger than data", func(b []byte) []byte { put32(b, BaseBlockSize+hbinSizeOffset, 0x2000); return b }, BaseBlockSize + hbinSizeOffset},
		{"root cell size zero", func(b []byte) []byte { put32(b, abs(minRoot), 0); return b }, abs(minRoot)},
		{"root cell size odd", func(b []byte) []byte { put32(b, abs(minRoot), uint32(0x100000000-0x7c)); return b }, abs(minRoot)},
		{"root cell past bin end", func(b []byte) []byte { put32(b, abs(minRoot), uint32(0x100000000-0x2000)); return b }, abs(minRoot)},
		{"root offset outside bins", func(b []byte) []byte { setRoot(b, 0x10000); return b }, abs(0x10000)},
		{"root offset misaligned", func(b []byte) []byte { setRoot(b, minRoot+4); return b }, abs(minRoot + 4)},
		{"root is free", func(b []byte) []byte { put32(b, abs(minRoot), 0x58); return b }, abs(minRoot)},
		{"root is not nk", func(b []byte) []byte { setRoot(b, minSK); return b }, cellData(minSK)},
		{"nk name length huge", func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[cellData(minChild)+nkNameLengthOffset:], 0xFFFF)
			return b
		}, cellData(minChild) + nkNameLengthOffset},
		{"subkey list points to itself", func(b []byte) []byte { put32(b, cellData(minSubkeys)+listElementsOffset, minSubkeys); return b }, abs(minSubkeys)},
		{"subkey points to root (loop)", func(b []byte) []byte { setChildSubkeys(b, minSubkeys); return b }, abs(minChild)}, // the key met again on its own path
		{"lh count huge", func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[cellData(minSubkeys)+listCountOffset:], 0xFFFF)
			return b
		}, cellData(minSubkeys) + listCountOffset},
		{"subkey count wrong", func(b []byte) []byte { put32(b, cellData(minRoot)+nkSubkeyCountOffset, 0xFFFFFFFF); return b }, abs(minRoot)},
		{"value count huge", func(b []byte) []byte { put32(b, cellData(minChild)+nkValueCountOffset, 0x40000000); return b }, abs(minValues)},
		{"value list entry misaligned", func(b []byte) []byte { put32(b, cellData(minValues), minVKDword+2); return b }, abs(minVKDword + 2)},
		{"value list entry past bins", func(b []byte) []byte { put32(b, cellData(minValues), 0x7FFFFFF8); return b }, abs(0x7FFFFFF8)},
		{"inline data too long", func(b []byte) []byte { put32(b, cellData(minVKDword)+vkDataSizeOffset, vkDataInline|5); return b }, cellData(minVKDword) + vkDataSizeOffset},
		{"data size beyond cell", func(b []byte) []byte { put32(b, cellData(minVKString)+vkDataSizeOffset, 0x100); return b }, abs(minData)},
		{"data cell is free", func(b []byte) []byte { put32(b, abs(minData), 0x20); return b }, abs(minData)},
	} {
		t.Run(m.name, func(t *testing.T) {
			b := m.mutate(minimalHive())
			err := openAndWalk(b)
			var fe *FormatError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want a FormatError", err)
			}
			if fe.Offset != m.wantOffset {
				t.Errorf("error %q names offset 0x%x, want 0x%x", err, fe.Offset, m.wantOffset)
			}
		})
	}
}

// setRoot changes the root cell offset and keeps the checksum valid so the
// mutation is the only fault.
func setRoot(b []byte, off uint32) {
	put32(b, regfRootCellOffset, off)
	put32(b, regfChecksumOffset, BaseBlockChecksum(b))
}

// setChildSubkeys gives the child key a subkey list (the root's own list),
// creating a parent → child → parent cycle.
func setChildSubkeys(b []byte, list uint32) {
	put32(b, cellData(minChild)+nkSubkeyCountOffset, 1)
	put32(b, cellData(minChild)+nkSubkeyListOffset, list)
}

// openAndWalk runs everything a reader does: open, walk, read values, check.
func openAndWalk(b []byte) error {
	h, err := Open(b)
	if err != nil {
		return err
	}
	return h.Walk(func(k *Key) error {
		if _, err := k.ClassName(); err != nil {
			return err
		}
		_, err := k.Values()
		return err
	})
}

// TestMalformedCheck damages a hive in ways a reader tolerates but Check
// must report.
func TestMalformedCheck(t *testing.T) {
	for _, m := range []mutation{
		{"bad lh hash", func(b []byte) []byte { put32(b, cellData(minSubkeys)+listElementsOffset+4, 1); return b }, cellData(minSubkeys) - cellSizeFieldSize},
		{"sk refcount", func(b []byte) []byte { put32(b, cellData(minSK)+skReferenceCountOffset, 7); return b }, abs(minSK)},
		{"wrong parent", func(b []byte) []byte { put32(b, cellData(minChild)+nkParentOffset, minSK); return b }, abs(minChild)},
		{"tiling broken", func(b []byte) []byte { put32(b, abs(minFree), 0x18); return b }, abs(minFree + 0x18)},
		{"max value name too small", func(b []byte) []byte { put32(b, cellData(minChild)+nkMaxValueNameLengthOffset, 2); return b }, abs(minChild)},
		{"max value data too small", func(b []byte) []byte { put32(b, cellData(minChild)+nkMaxValueDataSizeOffset, 4); return b }, abs(minChild)},
		{"sk descriptor too big", func(b []byte) []byte { put32(b, cellData(minSK)+skDescriptorSizeOffset, 0x1000); return b }, abs(minSK)},
		{"duplicate value name", func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[cellData(minVKString)+vkNameLengthOffset:], 5)
			copy(b[cellData(minVKString)+vkNameOffset:], "sTaRt")
			return b
		}, abs(minVKString)},
		{"root flag missing", func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[cellData(minRoot)+nkFlagsOffset:], KeyCompName)
			return b
		}, abs(minRoot)},
	} {
		t.Run(m.name, func(t *testing.T) {
			h, err := Open(m.mutate(minimalHive()))
			if err != nil {
				t.Fatal(err)
			}
			err = h.Check()
			var ce *CheckError
			if !errors.As(err, &ce) || !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want a CheckError", err)
			}
			for _, p := range ce.Problems {
				if p.Offset == m.wantOffset {
					return
				}
			}
			t.Errorf("no problem at 0x%x in %v", m.wantOffset, err)
		})
	}
}

// TestMalformedRealHive mutates a copy of a real hive: an ri list whose
// element points back at the ri itself, and a hive truncated mid-bin.
func TestMalformedRealHive(t *testing.T) {
	orig, err := os.ReadFile(testutil.CorpusFile(t, "yarp-olddirty.recovered-by-win7"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	var riOff uint32
	err = h.Walk(func(k *Key) error {
		if k.rec.subkeyCount > 0 {
			if sig, _, err := h.readList(k.rec.subkeyList); err == nil && sig == sigRI {
				riOff = k.rec.subkeyList
			}
		}
		return nil
	})
	if err != nil || riOff == 0 {
		t.Fatalf("no ri list found (%v)", err)
	}
	b := bytes.Clone(orig)
	put32(b, cellData(riOff)+listElementsOffset, riOff)
	var fe *FormatError
	if err := openAndWalk(b); !errors.As(err, &fe) || fe.Offset != abs(riOff) {
		t.Errorf("ri loop: got %v, want a FormatError at 0x%x", err, abs(riOff))
	}
	if h2, err := Open(b); err == nil {
		if err := h2.Check(); err == nil {
			t.Errorf("Check accepted an ri loop")
		}
	}

	if err := openAndWalk(orig[:len(orig)/2]); !errors.As(err, &fe) || fe.Offset != regfHiveBinsDataSizeOffset {
		t.Errorf("truncated: got %v", err)
	}
}

// TestMalformedNoHugeAllocation checks that hostile counts do not make the
// reader allocate far beyond the input size.
func TestMalformedNoHugeAllocation(t *testing.T) {
	b := minimalHive()
	put32(b, cellData(minChild)+nkValueCountOffset, 0xFFFFFFFF)
	put32(b, cellData(minRoot)+nkSubkeyCountOffset, 0xFFFFFFFF)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if err := openAndWalk(b); err == nil {
			t.Fatal("hostile counts accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 100*uint64(len(b)) {
		t.Errorf("allocated %d bytes for a %d-byte hive", n, len(b))
	}
}

// TestBadChecksumIsDirty: a base block whose checksum does not match still
// opens, but reports itself dirty (Windows would recover it from the logs).
func TestBadChecksumIsDirty(t *testing.T) {
	b := minimalHive()
	h, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if dirty, _ := h.Dirty(); dirty {
		t.Fatal("clean hand-built hive reported dirty")
	}
	b[regfFileNameOffset] ^= 0x55
	if h, err = Open(b); err != nil {
		t.Fatal(err)
	}
	dirty, why := h.Dirty()
	if !dirty || !bytes.Contains([]byte(why), []byte("checksum")) || !errors.Is(h.DirtyErr(), ErrDirtyHive) {
		t.Errorf("Dirty() = %v %q, DirtyErr %v", dirty, why, h.DirtyErr())
	}
}
