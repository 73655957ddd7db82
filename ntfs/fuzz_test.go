package ntfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// fuzzSeeds holds real structures from a volume mkntfs just made: the boot
// sector, MFT records, a root INDX block and the root's runlists.
type fuzzSeeds struct {
	boot     []byte
	records  [][]byte
	indx     [][]byte
	runlists [][]byte
}

func loadFuzzSeeds(f *testing.F) fuzzSeeds {
	var s fuzzSeeds
	mkntfs, err := exec.LookPath("mkntfs")
	if err != nil {
		return s
	}
	img := filepath.Join(f.TempDir(), "seed.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		f.Fatal(err)
	}
	if out, err := exec.Command(mkntfs, "-q", "-F", "-f", "-c", "4096", "-p", "0", "-H", "255", "-S", "63", img).CombinedOutput(); err != nil {
		f.Fatalf("mkntfs: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	v, err := Open(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		f.Fatal(err)
	}
	s.boot = raw[:bootSectorSize]
	for n := uint64(0); n < 16; n++ {
		ex, err := v.mft.diskExtents(int64(n)*v.RecordSize, v.RecordSize)
		if err != nil || len(ex) != 1 {
			continue
		}
		s.records = append(s.records, raw[ex[0].Offset:ex[0].Offset+ex[0].Length])
		if rec, err := v.ReadRecord(n); err == nil {
			for _, a := range rec.Attrs {
				if a.NonResident {
					s.runlists = append(s.runlists, rec.Raw[a.RunlistOffset:a.RecordOffset+a.Length])
				}
			}
		}
	}
	if root, err := v.OpenRecord(RecordRoot); err == nil {
		if ix, err := v.openIndex(root); err == nil && ix.alloc != nil {
			if ex, err := ix.alloc.diskExtents(0, ix.blockSize); err == nil && len(ex) == 1 {
				s.indx = append(s.indx, raw[ex[0].Offset:ex[0].Offset+ex[0].Length])
			}
		}
	}
	return s
}

func FuzzBootSector(f *testing.F) {
	s := loadFuzzSeeds(f)
	if s.boot != nil {
		f.Add(s.boot)
	}
	f.Add(make([]byte, bootSectorSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		bs, err := parseBoot(b, 1<<40)
		if err != nil {
			return
		}
		if bs.ClusterSize <= 0 || bs.MFTRecordSize < minRecordSize || bs.IndexRecordSize < minRecordSize {
			t.Fatalf("accepted boot sector with bad geometry: %+v", bs)
		}
	})
}

// fuzzVolume is a volume over 1 MiB of patterned bytes for parsers that
// need a cluster size and bounds.
func fuzzVolume(recordSize int64) *Volume {
	disk := fuzzDisk()
	return &Volume{r: bytes.NewReader(disk), size: int64(len(disk)), ClusterSize: 4096, RecordSize: recordSize,
		IndexRecordSize: 4096, SectorSize: 512, clusters: int64(len(disk)) / 4096, upcase: fuzzUpcase()}
}

func FuzzMFTRecord(f *testing.F) {
	s := loadFuzzSeeds(f)
	for _, r := range s.records {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < multiSectorMin || len(b) > maxRecordSize {
			return
		}
		v := fuzzVolume(int64(len(b)))
		// Half the time make the update sequence consistent first, so
		// mutations reach the attribute parsers instead of the fixup check.
		raw := append([]byte(nil), b...)
		if len(b)%2 == 0 {
			stampFixups(raw)
		}
		rec, err := v.parseRecord(raw, 0, nil)
		if err != nil {
			return
		}
		buf := make([]byte, 8192)
		for _, a := range rec.Attrs {
			st, err := v.newStream([]*Attr{a})
			if err != nil {
				continue
			}
			st.ReadAt(buf, 0)
			st.ReadAt(buf, st.Size()/2)
		}
		if f, err := v.fileFromRecord(rec); err == nil {
			f.FileNames()
			f.StreamNames()
			if s, err := f.Stream(""); err == nil {
				s.ReadAt(buf, 0)
			}
			if ix, err := v.openIndex(f); err == nil {
				ix.walk(func(*IndexEntry) {})
				ix.lookup("SYSTEM")
			}
		}
	})
}

func FuzzRunlist(f *testing.F) {
	s := loadFuzzSeeds(f)
	for _, r := range s.runlists {
		f.Add(r)
	}
	f.Add([]byte{0x21, 0x10, 0x00, 0x01, 0x11, 0x08, 0xf0, 0x01, 0x04, 0x00})
	const clusters = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		runs, n, err := decodeRunlist(b, 0, clusters, 0)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		next := int64(0)
		for _, r := range runs {
			if r.VCN != next || r.Length <= 0 || (!r.Sparse && (r.LCN < 0 || r.LCN+r.Length > clusters)) {
				t.Fatalf("bad run %+v after VCN %d", r, next)
			}
			next += r.Length
		}
	})
}

func FuzzIndex(f *testing.F) {
	s := loadFuzzSeeds(f)
	for _, b := range s.indx {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < multiSectorMin || len(b) > maxRecordSize || !fixupsFit(b) {
			return
		}
		raw := append([]byte(nil), b...)
		stampFixups(raw)
		if err := applyFixups(raw, 0, "INDX block"); err != nil {
			return // an array overlapping a sector end cannot be stamped
		}
		entries, err := parseIndexEntries(raw, indxHeaderOff, 0, 0, 0)
		if err != nil {
			return
		}
		if len(entries) == 0 || !entries[len(entries)-1].Last {
			t.Fatalf("entries without a terminal entry: %+v", entries)
		}
		for _, e := range entries {
			if e.Offset < 0 || e.Offset+e.Length > len(raw) {
				t.Fatalf("entry outside the block: %+v", e)
			}
		}
	})
}

func FuzzLZNT1(f *testing.F) {
	f.Add([]byte{0x05, 0xb0, 0x00, 'a', 'b', 'c', 0x02, 0x20})
	f.Add([]byte{0x03, 0x30, 'a', 'b', 'c', 'd'})
	f.Fuzz(func(t *testing.T, b []byte) {
		dst := make([]byte, 16*4096)
		n, err := decompressLZNT1(dst, b, 0)
		if err == nil && (n < 0 || n > len(dst)) {
			t.Fatalf("produced %d bytes into %d", n, len(dst))
		}
	})
}

// fixupsFit reports whether b's update sequence header describes an array
// that fits b and divides it into sectors, as applyFixups requires.
func fixupsFit(b []byte) bool {
	usaOff, usaCount := int(le16(b[usaOffsetOff:])), int(le16(b[usaCountOff:]))
	if usaCount < 2 || usaOff%2 != 0 || usaOff+2*usaCount > len(b) {
		return false
	}
	stride := len(b) / (usaCount - 1)
	return stride*(usaCount-1) == len(b) && stride >= multiSectorMin && stride&(stride-1) == 0
}

// stampFixups protects b as a writer would: each sector's last two bytes
// move into the update sequence array and the sequence number replaces
// them. It leaves b alone when its header does not fit.
func stampFixups(b []byte) {
	if len(b) < usaCountOff+2 || !fixupsFit(b) {
		return
	}
	usaOff, usaCount := int(le16(b[usaOffsetOff:])), int(le16(b[usaCountOff:]))
	stride := len(b) / (usaCount - 1)
	for i := 1; i < usaCount; i++ {
		end := i*stride - 2
		// The array may overlap a sector end; stamping in order keeps it
		// consistent with what applyFixups checks.
		b[usaOff+2*i], b[usaOff+2*i+1] = b[end], b[end+1]
		b[end], b[end+1] = b[usaOff], b[usaOff+1]
	}
}

// fuzzDisk is built once: fuzz iterations only read it.
var fuzzDisk = sync.OnceValue(func() []byte {
	disk := make([]byte, 1<<20)
	for i := range disk {
		disk[i] = byte(i * 7)
	}
	return disk
})

// fuzzUpcase is an identity $UpCase table with ASCII folded, as a real
// volume's would fold it.
var fuzzUpcase = sync.OnceValue(func() []uint16 {
	u := make([]uint16, upcaseEntries)
	for i := range u {
		u[i] = uint16(i)
		if i >= 'a' && i <= 'z' {
			u[i] -= 'a' - 'A'
		}
	}
	return u
})
