package windows

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
)

// hiveLayout asks ntfsinfo (ntfs-3g's tool, independent of package ntfs)
// where the SYSTEM hive lives: its MFT record number and the byte ranges of
// its clusters, relative to the partition.
func hiveLayout(t *testing.T, part string) (record uint64, ranges [][2]int64) {
	t.Helper()
	out, err := exec.Command("ntfsinfo", "-v", "-F", "Windows/System32/config/SYSTEM", part).CombinedOutput()
	if err != nil {
		t.Fatalf("ntfsinfo: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Dumping attribute \$DATA \(0x80\) from mft record (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ntfsinfo shows no $DATA:\n%s", out)
	}
	record, _ = strconv.ParseUint(string(m[1]), 10, 64)
	vol, err := exec.Command("ntfsinfo", "-m", part).CombinedOutput()
	if err != nil {
		t.Fatalf("ntfsinfo -m: %v\n%s", err, vol)
	}
	cm := regexp.MustCompile(`Cluster Size:\s+(\d+)`).FindSubmatch(vol)
	if cm == nil {
		t.Fatalf("ntfsinfo shows no cluster size:\n%s", vol)
	}
	cluster, _ := strconv.ParseInt(string(cm[1]), 10, 64)
	for _, r := range regexp.MustCompile(`(?m)^\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s*$`).FindAllSubmatch(out, -1) {
		lcn, _ := strconv.ParseInt(string(r[1]), 16, 64)
		n, _ := strconv.ParseInt(string(r[2]), 16, 64)
		ranges = append(ranges, [2]int64{lcn * cluster, (lcn + n) * cluster})
	}
	if len(ranges) == 0 {
		t.Fatalf("no runs in ntfsinfo output:\n%s", out)
	}
	return record, ranges
}

// mftRecordNumberOffset is where an NTFS 3.1 FILE record stores its own
// number.
const mftRecordNumberOffset = 0x2C

// TestPlanWritesOnNTFSDisk plans the XP boot fix on an mkntfs disk (with
// hivex as the editor), applies the plan's writes to a copy, and checks with
// ntfs-3g's tools that the hive reads back as the patched file, that every
// data write lies in the hive's clusters and every MFT write in its record,
// and that the source is untouched.
func TestPlanWritesOnNTFSDisk(t *testing.T) {
	for _, tool := range []string{"mkntfs", "ntfs-3g", "sfdisk", "ntfscat", "ntfsinfo"} {
		testutil.RequireTool(t, tool)
	}
	xp := diskCase{"xp-sp3-x86.SYSTEM", nil, ideDrivers, bootfix.TargetIDE, 24}
	t.Run("xp/registry-editor", func(t *testing.T) { planWritesOnDisk(t, xp, nil) })
	t.Run("xp/hivex-editor", func(t *testing.T) { planWritesOnDisk(t, xp, hivexEditor(t)) })
	t.Run("win7", func(t *testing.T) {
		planWritesOnDisk(t, diskCase{"win7-sp1-x64.SYSTEM", nil, []string{"msahci.sys", "disk.sys"}, bootfix.TargetAHCI, 48}, nil)
	})
	t.Run("win10-from-logs", func(t *testing.T) {
		planWritesOnDisk(t, diskCase{"win10-1709-x64.SYSTEM", []string{".LOG1", ".LOG2"}, []string{"storahci.sys", "disk.sys"}, bootfix.TargetAHCI, 64}, nil)
	})
}

// diskCase is a Windows-like disk to build for TestPlanWritesOnNTFSDisk.
type diskCase struct {
	hive    string
	logs    []string
	drivers []string
	target  bootfix.Target
	sizeMB  int
}

func planWritesOnDisk(t *testing.T, dc diskCase, edit HiveEditor) {
	dir := t.TempDir()
	root := testutil.WindowsTree(t, dc.hive, dc.logs, dc.drivers...)
	img := testutil.MkDisk(t, root, dc.sizeMB)
	srcSum := testutil.FileSHA256(t, img)
	src, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := Find(bytes.NewReader(src), int64(len(src)), OpenNTFS)
	if err != nil || len(vols) != 1 || len(vols[0].Installs) != 1 {
		t.Fatalf("Find: %v %+v", err, vols)
	}
	v := vols[0]
	p, err := PlanPatch(v.Installs[0], dc.target, PlanOptions{PartitionStart: v.Partition.Start, Edit: edit, Disk: bytes.NewReader(src)})
	if err != nil {
		t.Fatal(err)
	}
	if !p.After.OK || len(p.Writes) == 0 || len(p.Extents) == 0 {
		t.Fatalf("plan: after %s %q, %d writes, %d extents, notes %q", p.After.Verdict(), p.After.Reason, len(p.Writes), len(p.Extents), p.Notes)
	}

	var bytesChanged int64
	for _, e := range p.Extents {
		bytesChanged += e.Length
	}
	t.Logf("%d writes, %d extents, %d bytes", len(p.Writes), len(p.Extents), bytesChanged)
	hivexReadBack(t, p.PatchedHive, p.Changes)
	part := filepath.Join(dir, "part.img")
	if err := os.WriteFile(part, src[v.Partition.Start:v.Partition.Start+v.Partition.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	record, ranges := hiveLayout(t, part)
	for _, w := range p.Writes {
		off := w.Offset - v.Partition.Start
		switch w.What {
		case "data":
			in := false
			for _, r := range ranges {
				in = in || (off >= r[0] && off+int64(len(w.Data)) <= r[1])
			}
			if !in {
				t.Errorf("data write at partition offset %d (+%d) is outside the hive's clusters %v", off, len(w.Data), ranges)
			}
		case "mft-record":
			if n := binary.LittleEndian.Uint32(src[w.Offset+mftRecordNumberOffset:]); uint64(n) != record {
				t.Errorf("MFT write at %d is in record %d, want the hive's record %d", w.Offset, n, record)
			}
		case "NTFS boot sector heads (firmware geometry)", "NTFS boot sector sectors per track (firmware geometry)",
			"NTFS backup boot sector heads (firmware geometry)", "NTFS backup boot sector sectors per track (firmware geometry)":
			// XP only: mkdisk.sh's mkntfs says 255 heads, SeaBIOS reports
			// 16 for so small a disk. The backup boot sector follows the
			// volume's last sector and gets the same fields.
			g := FirmwareGeometry(int64(len(src)), src[:sectorSize])
			want := g.Heads
			if off%sectorSize != bpbHeads {
				want = g.SectorsPerTrack
			}
			if dc.target != bootfix.TargetIDE || p.Geometry == nil || uint32(binary.LittleEndian.Uint16(w.Data)) != want {
				t.Errorf("geometry write %s at partition offset %d = %x, firmware %s", w.What, off, w.Data, g)
			}
		default:
			t.Errorf("unexpected %s write at %d (+%d): the hive keeps its size", w.What, w.Offset, len(w.Data))
		}
	}

	patched := append([]byte(nil), src...)
	for _, w := range p.Writes {
		copy(patched[w.Offset:], w.Data)
	}
	if err := os.WriteFile(part, patched[v.Partition.Start:v.Partition.Start+v.Partition.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ntfscat", part, "Windows/System32/config/SYSTEM").Output()
	if err != nil {
		t.Fatalf("ntfscat on the patched partition: %v", err)
	}
	if !bytes.Equal(out, p.PatchedHive) {
		t.Errorf("ntfs-3g reads back %d bytes that differ from the %d-byte patched hive", len(out), len(p.PatchedHive))
	}
	for _, d := range dc.drivers {
		if b, err := exec.Command("ntfscat", part, "Windows/System32/drivers/"+d).Output(); err != nil || string(b) != testutil.DummyDriver {
			t.Errorf("%s after patch: %q %v", d, b, err)
		}
	}
	again, err := Find(bytes.NewReader(patched), int64(len(patched)), OpenNTFS)
	if err != nil || len(again) != 1 || len(again[0].Installs) != 1 {
		t.Fatalf("Find on the patched disk: %v %+v", err, again)
	}
	if in := again[0].Installs[0]; in.HiveState != HiveClean {
		t.Errorf("patched hive on disk is %s, want clean", in.HiveState)
	}
	if pr, _ := again[0].Installs[0].Prediction(dc.target); !pr.OK {
		t.Errorf("patched disk still predicts %s: %s", pr.Verdict(), pr.Reason)
	}
	if s := testutil.FileSHA256(t, img); s != srcSum {
		t.Errorf("source image changed")
	}
}
