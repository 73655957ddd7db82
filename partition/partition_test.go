package partition

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// sfdiskTable is the subset of `sfdisk --json` output the tests compare.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		SectorSize int64  `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// makeDisk writes a partition table with sfdisk into a new sparse file. With
// sectorSize 4096 it goes through a loop device of that logical sector size,
// since this sfdisk cannot be told the sector size of a plain file.
func makeDisk(t *testing.T, sizeMB int, script string, sectorSize int) (path string, oracle sfdiskTable) {
	t.Helper()
	sfdisk := testutil.RequireTool(t, "sfdisk")
	path = filepath.Join(t.TempDir(), "disk.img")
	if err := os.Truncate(mustCreate(t, path), int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	dev := path
	if sectorSize != 512 {
		losetup := testutil.RequireTool(t, "losetup")
		out, err := exec.Command(losetup, "-f", "--show", "-b", "4096", path).Output()
		if err != nil {
			if testutil.InCI() {
				t.Fatalf("losetup: %v", err)
			}
			t.Skipf("cannot attach a 4096-byte-sector loop device: %v", err)
		}
		dev = strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command(losetup, "-d", dev).Run() })
	}
	cmd := exec.Command(sfdisk, "-q", "--no-reread", dev)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	out, err := exec.Command(sfdisk, "--json", dev).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	if err := json.Unmarshal(out, &oracle); err != nil {
		t.Fatal(err)
	}
	return path, oracle
}

func mustCreate(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func readTable(t *testing.T, path string) *Table {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := Read(f, fi.Size())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return tab
}

// compareWithSfdisk checks every partition sfdisk reports against ours.
func compareWithSfdisk(t *testing.T, tab *Table, o sfdiskTable) {
	t.Helper()
	if got, want := tab.SectorSize, o.PartitionTable.SectorSize; got != want {
		t.Errorf("sector size %d, sfdisk says %d", got, want)
	}
	if len(tab.Partitions) != len(o.PartitionTable.Partitions) {
		t.Fatalf("%d partitions, sfdisk lists %d: %+v", len(tab.Partitions), len(o.PartitionTable.Partitions), tab.Partitions)
	}
	ss := o.PartitionTable.SectorSize
	for i, op := range o.PartitionTable.Partitions {
		p := tab.Partitions[i]
		wantIdx := op.Node[strings.LastIndexAny(op.Node, "gp")+1:]
		if got := strings.TrimLeft(wantIdx, "0123456789"); got != "" {
			t.Fatalf("cannot parse node %q", op.Node)
		}
		if itoa(p.Index) != wantIdx {
			t.Errorf("partition %d: index %d, sfdisk node %s", i, p.Index, op.Node)
		}
		if p.Start != op.Start*ss || p.Size != op.Size*ss {
			t.Errorf("partition %d: start/size %d/%d, sfdisk %d/%d", p.Index, p.Start, p.Size, op.Start*ss, op.Size*ss)
		}
		if !strings.EqualFold(p.Type(), op.Type) && !strings.EqualFold(strings.TrimLeft(strings.TrimPrefix(p.Type(), "0x"), "0"), strings.TrimLeft(op.Type, "0")) {
			t.Errorf("partition %d: type %s, sfdisk %s", p.Index, p.Type(), op.Type)
		}
		if p.Name != op.Name {
			t.Errorf("partition %d: name %q, sfdisk %q", p.Index, p.Name, op.Name)
		}
		if p.Bootable != op.Bootable {
			t.Errorf("partition %d: bootable %v, sfdisk %v", p.Index, p.Bootable, op.Bootable)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestMBRWithLogicals(t *testing.T) {
	path, o := makeDisk(t, 64, "label: dos\nsize=8M, type=7, bootable\nsize=4M, type=83\ntype=5\nsize=6M, type=7\nsize=5M, type=b\nsize=3M, type=7\n", 512)
	tab := readTable(t, path)
	if tab.Scheme != SchemeMBR {
		t.Fatalf("scheme %v", tab.Scheme)
	}
	// sfdisk lists the extended container too; we list only data partitions.
	var data sfdiskTable
	data.PartitionTable.SectorSize = o.PartitionTable.SectorSize
	for _, p := range o.PartitionTable.Partitions {
		if p.Type != "5" {
			data.PartitionTable.Partitions = append(data.PartitionTable.Partitions, p)
		}
	}
	compareWithSfdisk(t, tab, data)
	if n := len(tab.Partitions); n != 5 || !tab.Partitions[4].Logical || tab.Partitions[4].Index != 7 {
		t.Errorf("logical numbering wrong: %+v", tab.Partitions)
	}
}

func TestGPT512(t *testing.T) {
	path, o := makeDisk(t, 64, "label: gpt\nsize=10M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"Basic data\"\nsize=5M\nsize=3M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"Données\"\n", 512)
	tab := readTable(t, path)
	if tab.Scheme != SchemeGPT || len(tab.Warnings) != 0 {
		t.Fatalf("scheme %v warnings %v", tab.Scheme, tab.Warnings)
	}
	compareWithSfdisk(t, tab, o)
	if !tab.Partitions[0].MayHoldNTFS() {
		t.Error("basic data partition not recognised as a possible NTFS one")
	}
}

func TestGPT4096(t *testing.T) {
	path, o := makeDisk(t, 64, "label: gpt\nsize=10M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"Basic data\"\nsize=5M\n", 4096)
	tab := readTable(t, path)
	if tab.SectorSize != 4096 {
		t.Fatalf("sector size %d, want 4096", tab.SectorSize)
	}
	compareWithSfdisk(t, tab, o)
}

func TestGPTBackupUsedWhenPrimaryCorrupt(t *testing.T) {
	path, o := makeDisk(t, 32, "label: gpt\nsize=10M, name=\"one\"\nsize=5M, name=\"two\"\n", 512)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside the primary header's disk GUID: its CRC no longer matches.
	if _, err := f.WriteAt([]byte{0xff, 0xee}, 512+56); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tab := readTable(t, path)
	if len(tab.Warnings) == 0 || !strings.Contains(tab.Warnings[0], "backup") {
		t.Fatalf("no warning about the backup header: %v", tab.Warnings)
	}
	compareWithSfdisk(t, tab, o)
}

func TestGPTBothHeadersCorrupt(t *testing.T) {
	path, _ := makeDisk(t, 8, "label: gpt\nsize=2M\n", 512)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.WriteAt([]byte{0xff}, 512+56)
	f.WriteAt([]byte{0xff}, fi.Size()-512+56)
	defer f.Close()
	_, err = Read(f, fi.Size())
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrChecksum) || fe.Offset != 512+gptHeaderCRCOff {
		t.Fatalf("want a checksum FormatError at the primary header, got %v", err)
	}
}

func TestEBRLoop(t *testing.T) {
	path, _ := makeDisk(t, 32, "label: dos\ntype=5\nsize=4M, type=7\nsize=4M, type=7\n", 512)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := Read(f, fi.Size())
	if err != nil || len(tab.Partitions) != 2 {
		t.Fatalf("before corruption: %v %+v", err, tab)
	}
	// Point the second EBR's link back at the first EBR (relative LBA 0 is
	// "end of chain", so aim at the second EBR itself).
	ext := parseMBR(readAt(t, f, 0))[0].StartingLBA
	first := parseMBR(readAt(t, f, int64(ext)*512))
	second := int64(ext) + int64(first[1].StartingLBA)
	link := make([]byte, 4)
	v := first[1].StartingLBA
	link[0], link[1], link[2], link[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	if _, err := f.WriteAt([]byte{mbrTypeExtCHS}, second*512+mbrTableOffset+mbrEntrySize+entryTypeOff); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(link, second*512+mbrTableOffset+mbrEntrySize+entryStartLBAOff); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0, 0, 1, 0}, second*512+mbrTableOffset+mbrEntrySize+entrySectorsOff)
	_, err = Read(f, fi.Size())
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Structure != "EBR" || fe.Offset != second*512 {
		t.Fatalf("want an EBR loop error at 0x%x, got %v", second*512, err)
	}
}

func readAt(t *testing.T, f *os.File, off int64) []byte {
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBareNTFS(t *testing.T) {
	mkntfs := testutil.RequireTool(t, "mkntfs")
	path := filepath.Join(t.TempDir(), "part.img")
	os.Truncate(mustCreate(t, path), 8<<20)
	if out, err := exec.Command(mkntfs, "-F", "-q", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("mkntfs: %v\n%s", err, out)
	}
	tab := readTable(t, path)
	if tab.Scheme != SchemeNone || len(tab.Partitions) != 1 || tab.Partitions[0].Start != 0 || tab.Partitions[0].Size != 8<<20 {
		t.Fatalf("bare partition misread: %+v", tab)
	}
}

func TestTruncatedAndEmpty(t *testing.T) {
	path, _ := makeDisk(t, 16, "label: dos\nsize=8M, type=7\n", 512)
	f, _ := os.Open(path)
	defer f.Close()
	// The table claims 8 MiB at 1 MiB; a 4 MiB view cuts it off.
	_, err := Read(f, 4<<20)
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated disk: %v", err)
	}
	_, err = Read(f, 100)
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("tiny disk: %v", err)
	}
	zero := filepath.Join(t.TempDir(), "zero")
	os.Truncate(mustCreate(t, zero), 1<<20)
	z, _ := os.Open(zero)
	defer z.Close()
	if _, err := Read(z, 1<<20); !errors.Is(err, ErrNoTable) {
		t.Errorf("zero disk: %v", err)
	}
}

// TestMBR4096 reads an MBR written for 4096-byte sectors: the sector size
// is inferred from where the partition's boot sector is found.
func TestMBR4096(t *testing.T) {
	path, o := makeDisk(t, 64, "label: dos\nsize=8M, type=7\nsize=4M, type=83\n", 4096)
	start := o.PartitionTable.Partitions[0].Start * 4096
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	boot := make([]byte, 512)
	copy(boot[oemIDOffset:], "NTFS    ")
	boot[bootSignatureOffset], boot[bootSignatureOffset+1] = 0x55, 0xaa
	if _, err := f.WriteAt(boot, start); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tab := readTable(t, path)
	compareWithSfdisk(t, tab, o)
}

// TestMBR4096ExtendedFirstEmpty: a 4Kn MBR disk whose first partition holds
// no file system yet; the sector size must come from the extended
// partition's boot record, and every logical partition must match sfdisk.
// The same layout on 512-byte sectors must still read as 512.
func TestMBR4096ExtendedFirstEmpty(t *testing.T) {
	const script = "label: dos\nsize=8M, type=83\ntype=5\nsize=8M, type=7\nsize=4M, type=83\n"
	for _, ss := range []int{4096, 512} {
		t.Run(itoa(ss), func(t *testing.T) {
			path, o := makeDisk(t, 64, script, ss)
			tab := readTable(t, path)
			// sfdisk lists the extended container too; we list only data partitions.
			var data sfdiskTable
			data.PartitionTable.SectorSize = o.PartitionTable.SectorSize
			for _, p := range o.PartitionTable.Partitions {
				if p.Type != "5" {
					data.PartitionTable.Partitions = append(data.PartitionTable.Partitions, p)
				}
			}
			compareWithSfdisk(t, tab, data)
			if len(tab.Partitions) != 3 || !tab.Partitions[1].Logical || !tab.Partitions[2].Logical {
				t.Errorf("partitions: %+v", tab.Partitions)
			}
		})
	}
}
