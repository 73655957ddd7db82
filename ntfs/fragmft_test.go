package ntfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// fragmentedMFTVolume rebuilds the corpus's fragmented-MFT volume (the
// sectors go-ntfs recorded from a real Windows volume, each 0xOFFSET.bin
// holding the bytes at that volume offset) as a sparse file of the size its
// boot sector declares, and returns its path.
func fragmentedMFTVolume(t *testing.T) string {
	t.Helper()
	dir := testutil.CorpusFile(t, "ntfs-fragmented-mft")
	pieces, err := filepath.Glob(filepath.Join(dir, "0x*.bin"))
	if err != nil || len(pieces) == 0 {
		t.Fatalf("no 0xOFFSET.bin pieces in %s (%v)", dir, err)
	}
	boot, err := os.ReadFile(filepath.Join(dir, "0x00000000.bin"))
	if err != nil || len(boot) < bootSectorSize {
		t.Fatalf("boot sector piece: %v", err)
	}
	// The volume spans its declared sectors plus the backup boot sector.
	size := (int64(le64(boot[bootTotalSectorsOff:])) + 1) * int64(le16(boot[bootBytesPerSectorOff:]))
	path := filepath.Join(t.TempDir(), "fragmented-mft.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, p := range pieces {
		off, err := strconv.ParseInt(filepath.Base(p)[2:len(filepath.Base(p))-4], 16, 64)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// goldenRun matches a runs.golden line: go-ntfs's view of one $MFT run in
// clusters (line 0 is the whole-disk reader and has level 0).
var goldenRun = regexp.MustCompile(`^\d+\s+1 MappedReader: FileOffset (\d+) -> DiskOffset (\d+) \(Length (\d+),`)

// TestFragmentedMFTCorpus opens a real Windows volume whose $MFT runlist
// continues in extension record 15 through $ATTRIBUTE_LIST, and checks the
// merged runs against go-ntfs's 171 recorded runs.
func TestFragmentedMFTCorpus(t *testing.T) {
	path := fragmentedMFTVolume(t)
	gf, err := os.Open(filepath.Join(filepath.Dir(testutil.CorpusFile(t, "ntfs-fragmented-mft/runs.golden")), "runs.golden"))
	if err != nil {
		t.Fatal(err)
	}
	defer gf.Close()
	var want []Run
	sc := bufio.NewScanner(gf)
	for sc.Scan() {
		m := goldenRun.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		vcn, _ := strconv.ParseInt(m[1], 10, 64)
		lcn, _ := strconv.ParseInt(m[2], 10, 64)
		n, _ := strconv.ParseInt(m[3], 10, 64)
		want = append(want, Run{VCN: vcn, LCN: lcn, Length: n})
	}
	if len(want) != 171 {
		t.Fatalf("runs.golden holds %d runs, the corpus README says 171", len(want))
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	// The fixture holds only the records a reader of $MFT needs: Open gets
	// past the MFT and stops at $UpCase (record 10, zeros here) with its
	// location; the MFT itself is checked through openMFT.
	_, err = Open(f, fi.Size())
	var fe *FormatError
	if upcase := int64(786432*4096 + RecordUpCase*1024); !errors.As(err, &fe) || !errors.Is(err, ErrBadRecord) || fe.Offset != upcase {
		t.Errorf("Open of the fixture: got %v, want ErrBadRecord for the absent $UpCase at byte 0x%x", err, upcase)
	}
	v, err := openMFT(f, fi.Size())
	if err != nil {
		t.Fatalf("openMFT: %v", err)
	}
	got := v.MFT().Runs
	if len(got) != len(want) {
		t.Fatalf("$MFT has %d runs, go-ntfs recorded %d", len(got), len(want))
	}
	for i := range want {
		if got[i].VCN != want[i].VCN || got[i].LCN != want[i].LCN || got[i].Length != want[i].Length || got[i].Sparse {
			t.Fatalf("run %d: VCN %d LCN %d length %d, go-ntfs %d %d %d", i, got[i].VCN, got[i].LCN, got[i].Length, want[i].VCN, want[i].LCN, want[i].Length)
		}
	}
	if end := (want[170].VCN + want[170].Length) * v.ClusterSize; end < v.MFT().Size() {
		t.Errorf("runs map %d bytes of the %d-byte $MFT", end, v.MFT().Size())
	}
	if len(v.MFT().Fragments) < 2 || v.MFT().Fragments[1].Record != 15 {
		t.Errorf("$MFT fragments: want the second in record 15, got %d fragments", len(v.MFT().Fragments))
	}

	// $MFT as a file: its attribute list names records 15..17, read
	// through the merged runs; $BITMAP lives in the extension records.
	mf, err := v.OpenRecord(RecordMFT)
	if err != nil {
		t.Fatalf("OpenRecord($MFT): %v", err)
	}
	if len(mf.Extensions) == 0 {
		t.Error("$MFT opened without its extension records")
	}
	if names := mf.FileNames(); len(names) == 0 || names[0].Name != "$MFT" {
		t.Errorf("$MFT file names: %+v", names)
	}
	if _, err := mf.Stream(""); err != nil {
		t.Errorf("$MFT $DATA as a file stream: %v", err)
	}

	// Records past record 0's own runs are located through the runs of
	// extension record 15: the fixture holds no bytes there, so reading one
	// fails, but at the disk offset go-ntfs's runs give.
	for _, n := range []uint64{uint64(want[100].VCN) * 4, uint64(v.MFT().Size()/v.RecordSize) - 1} {
		vcn := int64(n) * v.RecordSize / v.ClusterSize
		var wantOff int64 = -1
		for _, r := range want {
			if vcn >= r.VCN && vcn < r.VCN+r.Length {
				wantOff = (r.LCN+vcn-r.VCN)*v.ClusterSize + int64(n)*v.RecordSize%v.ClusterSize
			}
		}
		_, err := v.ReadRecord(n)
		if !errors.As(err, &fe) || fe.Offset != wantOff {
			t.Errorf("record %d: %v, want a refusal at byte 0x%x", n, err, wantOff)
		}
	}

	// The root directory (record 5) is absent too: refused with its
	// location, never listed as empty.
	_, err = v.OpenRecord(RecordRoot)
	if root := 786432*v.ClusterSize + RecordRoot*v.RecordSize; !errors.As(err, &fe) || !errors.Is(err, ErrBadRecord) || fe.Offset != root {
		t.Errorf("root record of the fixture (absent): got %v, want ErrBadRecord at byte 0x%x", err, root)
	}
}

// TestFragmentedMFTNtfs3g checks that the ntfs-3g-made image really has the
// shape the oracle test relies on: $MFT with an $ATTRIBUTE_LIST and its
// $DATA runlist continued in an extension record (TestOracle then reads
// every file of it against ntfscat and every directory against ntfsls).
func TestFragmentedMFTNtfs3g(t *testing.T) {
	var img testImage
	for _, i := range allImages {
		if i.name == "frag-mft.img" {
			img = i
		}
	}
	o := openImage(t, img)
	mft := o.vol.MFT()
	records := map[uint64]bool{}
	for _, f := range mft.Fragments {
		records[f.Record] = true
	}
	if len(mft.Fragments) < 2 || len(records) < 2 {
		t.Fatalf("$MFT $DATA has %d fragments in %d records; the image was meant to continue it in an extension record", len(mft.Fragments), len(records))
	}
	if end := mft.Runs[len(mft.Runs)-1]; (end.VCN+end.Length)*o.vol.ClusterSize < mft.Size() {
		t.Errorf("$MFT runs stop at VCN %d, short of its %d bytes", end.VCN+end.Length, mft.Size())
	}
	f, err := o.vol.OpenRecord(RecordMFT)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.AttrList) == 0 {
		t.Error("$MFT has no attribute list")
	}
	// The last record of the MFT reads through the runs of the extension.
	last := uint64(mft.Size()/o.vol.RecordSize) - 1
	if _, err := o.vol.ReadRecord(last); err != nil && !errors.Is(err, ErrBadRecord) {
		t.Errorf("record %d: %v", last, err)
	}
	// ntfsinfo agrees on where the runlist continues.
	out, err := exec.Command("ntfsinfo", "-i", "0", o.partFile).Output()
	if err != nil {
		t.Fatalf("ntfsinfo: %v", err)
	}
	for r := range records {
		if r != 0 && !strings.Contains(string(out), fmt.Sprintf("$DATA (0x80) from mft record %d ", r)) {
			t.Errorf("ntfsinfo does not show $MFT $DATA in record %d:\n%s", r, out)
		}
	}
}
