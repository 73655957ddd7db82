package ntfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// loadBare reads a whole bare test image into memory so each case can
// corrupt its own copy.
func loadBare(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testImages(t), "bare-4k.img"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openBytes(b []byte) (*Volume, error) { return Open(bytes.NewReader(b), int64(len(b))) }

// wantFormatError asserts err is a FormatError for sentinel at offset
// (offset < 0: any offset) and returns it.
func wantFormatError(t *testing.T, err error, sentinel error, structure string, offset int64) *FormatError {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FormatError (%v), got %v", sentinel, err)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("error %v is not %v", err, sentinel)
	}
	if structure != "" && fe.Structure != structure {
		t.Errorf("error names structure %q, want %q (%v)", fe.Structure, structure, err)
	}
	if offset >= 0 && fe.Offset != offset {
		t.Errorf("error at offset 0x%x, want 0x%x (%v)", fe.Offset, offset, err)
	}
	return fe
}

func TestBadInputTruncated(t *testing.T) {
	img := loadBare(t)
	_, err := openBytes(img[:100])
	wantFormatError(t, err, ErrTruncated, "boot sector", 0)
	// Cut before the MFT: the boot sector is fine, record 0 is not there.
	v, err := openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	mftOff := v.Boot().MFTCluster * v.ClusterSize
	_, err = openBytes(img[:mftOff+100])
	wantFormatError(t, err, ErrTruncated, "boot sector", bootMFTClusterOff)
	_, err = openBytes(img[:mftOff+v.RecordSize+100])
	wantFormatError(t, err, ErrTruncated, "", -1)
	// Cut inside the fragmented hive: the volume opens, the read fails.
	s, err := v.OpenStream("Windows/System32/config/SYSTEM")
	if err != nil {
		t.Fatal(err)
	}
	last := s.Runs[len(s.Runs)-1]
	cut := last.LCN * v.ClusterSize
	if cut < 2*v.ClusterSize*16 {
		t.Skip("hive's last run too early in the volume to cut there")
	}
	short, err := openBytes(img[:cut])
	if err != nil {
		t.Fatalf("volume cut at 0x%x: %v", cut, err)
	}
	s2, err := short.OpenStream("Windows/System32/config/SYSTEM")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, s2.Size())
	_, err = s2.ReadAt(buf, 0)
	want := int64(-1)
	for _, r := range s.Runs {
		if (r.LCN+r.Length)*v.ClusterSize > cut {
			want = r.LCN * v.ClusterSize
			break
		}
	}
	wantFormatError(t, err, ErrTruncated, "", want)
}

func TestBadInputZeroedBootSector(t *testing.T) {
	img := loadBare(t)
	clear(img[:bootSectorSize])
	_, err := openBytes(img)
	wantFormatError(t, err, ErrNotNTFS, "boot sector", bootOEMIDOff)

	img = loadBare(t)
	img[bootSectorsPerClusterOff] = 3
	_, err = openBytes(img)
	wantFormatError(t, err, ErrNotNTFS, "boot sector", bootSectorsPerClusterOff)

	img = loadBare(t)
	copy(img[bootOEMIDOff:], "-FVE-FS-")
	_, err = openBytes(img)
	wantFormatError(t, err, ErrBitLocker, "boot sector", bootOEMIDOff)
}

func TestBadInputTornRecord(t *testing.T) {
	img := loadBare(t)
	v, err := openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := v.Lookup("hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	// Change the last two bytes of the record's second sector: the update
	// sequence check must catch the torn write.
	stride := int64(len(f.Record.Raw)) / int64(le16(f.Record.Raw[usaCountOff:])-1)
	tear := f.Record.Extents[0].Offset + 2*stride - 2
	img[tear] ^= 0xff
	v, err = openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = v.Lookup("hello.txt")
	fe := wantFormatError(t, err, ErrBadFixup, "MFT record", tear)
	if !bytes.Contains([]byte(fe.Msg), []byte("record "+uitoa(f.Number()))) {
		t.Errorf("error does not name record %d: %v", f.Number(), err)
	}
}

func TestBadInputRunlistPastVolume(t *testing.T) {
	img := loadBare(t)
	v, err := openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := v.Lookup("Windows/System32/config/SYSTEM")
	if err != nil {
		t.Fatal(err)
	}
	var data *Attr
	for _, a := range f.Attrs {
		if a.Type == AttrData && a.Name == "" {
			data = a
		}
	}
	// Make the first run's LCN delta the largest positive value its field
	// can hold; the field stays inside one sector, clear of the fixups.
	r := data.Runs[0]
	rec := f.Record.Raw
	h := rec[r.Offset]
	lenSize, offSize := int(h&0x0f), int(h>>4)
	field := r.Offset + 1 + lenSize
	recOff := f.Record.Extents[0].Offset
	for i := 0; i < offSize; i++ {
		img[recOff+int64(field+i)] = 0xff
	}
	img[recOff+int64(field+offSize-1)] = 0x7f
	v, err = openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = v.Lookup("Windows/System32/config/SYSTEM")
	wantFormatError(t, err, ErrBadRunlist, "runlist", recOff+int64(r.Offset))
}

func TestBadInputIndexLoop(t *testing.T) {
	img := loadBare(t)
	v, err := openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	dir, _, err := v.Lookup("many")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := v.IndexEntries(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Find a leaf INDX block and turn its terminal entry into one whose
	// subnode is the block itself.
	var node *IndexNode
	for _, e := range entries {
		if e.NodeVCN < 0 {
			continue
		}
		n, err := v.IndexNode(dir, e.NodeVCN)
		if err != nil {
			t.Fatal(err)
		}
		term := n.Entries[len(n.Entries)-1]
		end := term.Offset + term.Length + 8
		stride := len(n.Raw) / int(le16(n.Raw[usaCountOff:])-1)
		hdrAlloc := int(le32(n.Raw[indxHeaderOff+ihAllocatedOff:]))
		if term.Subnode < 0 && (term.Offset+term.Length)/stride == (end-1)/stride && end%stride <= stride-2 && end%stride != 0 &&
			end <= indxHeaderOff+hdrAlloc && len(n.Extents) == 1 {
			node = n
			break
		}
	}
	if node == nil {
		t.Skip("no leaf block with room for the crafted entry")
	}
	term := node.Entries[len(node.Entries)-1]
	base := node.Extents[0].Offset
	put := func(off int, v uint64, n int) {
		for i := 0; i < n; i++ {
			img[base+int64(off+i)] = byte(v >> (8 * i))
		}
	}
	put(term.Offset+ieLengthOff, uint64(term.Length+8), 2)
	put(term.Offset+ieFlagsOff, ieFlagLast|ieFlagSubnode, 2)
	put(term.Offset+term.Length, uint64(node.VCN), 8)
	put(indxHeaderOff+ihIndexLengthOff, uint64(le32(node.Raw[indxHeaderOff+ihIndexLengthOff:])+8), 4)
	v, err = openBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	dir, _, err = v.Lookup("many")
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.ReadDir(dir)
	fe := wantFormatError(t, err, ErrBadIndex, "$INDEX_ALLOCATION", -1)
	if fe.Value != node.VCN {
		t.Errorf("loop reported at VCN %v, want %d", fe.Value, node.VCN)
	}
	// A lookup of a name past every entry of that block must also stop.
	last := node.Entries[len(node.Entries)-2].Key.Name + "~"
	if _, _, err := v.Lookup("many/" + last); err != nil && !errors.Is(err, ErrBadIndex) && !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup through the loop: %v", err)
	}
}
