package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/container/containertest"
	"github.com/kvmify/kvmify/internal/testutil"
)

const testDiskSize = 24 << 20

func testDisk(t *testing.T) (dir, raw string) {
	dir = t.TempDir()
	raw = filepath.Join(dir, "disk.raw")
	testutil.SparseRandomDisk(t, raw, testDiskSize, 12)
	return dir, raw
}

func convert(t *testing.T, raw, out string, opts ...string) {
	t.Helper()
	testutil.QemuImg(t, append(append([]string{"convert", "-O", "vhdx"}, opts...), raw, out)...)
}

func checkOracle(t *testing.T, path string) *Image {
	t.Helper()
	want, size := testutil.OracleSHA256(t, path)
	before := testutil.HashFiles(t, path)
	img, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	if abs, _ := filepath.Abs(path); len(img.InputFiles()) != 1 || img.InputFiles()[0] != abs {
		t.Errorf("InputFiles = %v", img.InputFiles())
	}
	containertest.Matches(t, img, want, size)
	before.Unchanged(t)
	return img
}

func TestOracle(t *testing.T) {
	dir, raw := testDisk(t)
	for _, tc := range []struct {
		name string
		opts []string
	}{
		{"dynamic", nil},
		{"fixed", []string{"-o", "subformat=fixed"}},
		{"block-1M", []string{"-o", "block_size=1M"}},
		{"block-8M", []string{"-o", "block_size=8M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".vhdx")
			convert(t, raw, p, tc.opts...)
			checkOracle(t, p)
		})
	}
	// An odd size whose last block is partly past the disk, written by
	// qemu-io through QEMU's own VHDX driver (and its log).
	odd := filepath.Join(dir, "odd.vhdx")
	testutil.QemuImg(t, "create", "-f", "vhdx", "-o", "block_size=1M", odd, "5243392") // 5 MiB + 512
	qemuIO := testutil.RequireTool(t, "qemu-io")
	if out, err := exec.Command(qemuIO, "-f", "vhdx", "-c", "write -P 0x6b 5242368 1024", "-c", "write -P 0x11 1M 4k", odd).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	checkOracle(t, odd)
}

func TestTruncated(t *testing.T) {
	dir, raw := testDisk(t)
	p := filepath.Join(dir, "t.vhdx")
	convert(t, raw, p)
	fi, _ := os.Stat(p)
	if err := os.Truncate(p, fi.Size()-3<<20); err != nil {
		t.Fatal(err)
	}
	sum := testutil.FileSHA256(t, p)
	_, err := Open(p)
	if err == nil {
		t.Fatal("a truncated VHDX opened without error")
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "offset") || !errors.Is(err, ErrCorrupt) {
		t.Errorf("error names no file and offset, or is not ErrCorrupt: %v", err)
	}
	t.Log(err)
	if testutil.FileSHA256(t, p) != sum {
		t.Error("the image changed")
	}
	// Cut inside the headers.
	os.Truncate(p, 200<<10)
	if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("VHDX cut inside its region tables: %v", err)
	}
}

// patch rewrites bytes of a copy of an image (never a test's source).
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// fixHeaderChecksum recomputes the CRC-32C of the header at off.
func fixHeaderChecksum(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := b[off : off+headerSize]
	binary.LittleEndian.PutUint32(h[4:], 0)
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crcOf(h))
	patch(t, path, off+4, sum[:])
}

func crcOf(b []byte) uint32 {
	c := make([]byte, len(b))
	copy(c, b)
	binary.LittleEndian.PutUint32(c[4:], 0)
	return crc32.Checksum(c, castagnoli)
}

func TestRefused(t *testing.T) {
	dir, raw := testDisk(t)
	base := filepath.Join(dir, "base.vhdx")
	convert(t, raw, base)

	// A log that needs replay: LogGuid set in both headers (bytes 48-63),
	// checksums made valid again.
	logged := filepath.Join(dir, "log.vhdx")
	testutil.CopyFile(t, base, logged)
	for _, off := range []int64{header1Offset, header2Offset} {
		patch(t, logged, off+48, bytes.Repeat([]byte{0x42}, 16))
		fixHeaderChecksum(t, logged, off)
	}
	if _, err := Open(logged); !errors.Is(err, ErrLogReplay) {
		t.Errorf("VHDX with a log to replay: %v, want ErrLogReplay", err)
	} else {
		t.Log(err)
	}

	// A bad checksum on one header falls back to the other; on both it is
	// an error.
	badsum := filepath.Join(dir, "badsum.vhdx")
	testutil.CopyFile(t, base, badsum)
	patch(t, badsum, header1Offset+8, []byte{0xff})
	if _, err := Open(badsum); err != nil {
		t.Errorf("one bad header: %v", err)
	}
	patch(t, badsum, header2Offset+8, []byte{0xff})
	if _, err := Open(badsum); !errors.Is(err, ErrCorrupt) {
		t.Errorf("two bad headers: %v", err)
	}

	// A differencing disk (HasParent in File Parameters). qemu-img cannot
	// make one (QEMU's VHDX driver has no backing-file support), so the bit
	// is set in a copy; the metadata region has no checksum.
	diff := filepath.Join(dir, "diff.vhdx")
	testutil.CopyFile(t, base, diff)
	img, err := Open(base)
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	off := fileParametersOffset(t, base)
	patch(t, diff, off+4, []byte{2})
	if _, err := Open(diff); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "differencing") {
		t.Errorf("differencing VHDX: %v, want ErrUnsupported naming it", err)
	} else {
		t.Log(err)
	}

	if _, err := Open(raw); !errors.Is(err, ErrNotVHDX) {
		t.Errorf("raw file: %v, want ErrNotVHDX", err)
	}
	// A BAT entry pointing past the end of the file.
	past := filepath.Join(dir, "past.vhdx")
	testutil.CopyFile(t, base, past)
	batOff := regionOffset(t, base, guidBAT)
	var e [8]byte
	binary.LittleEndian.PutUint64(e[:], 1<<40|payloadFullyPresent)
	patch(t, past, batOff, e[:])
	if _, err := Open(past); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "past the end") {
		t.Errorf("BAT entry past EOF: %v", err)
	} else {
		t.Log(err)
	}
}

// regionOffset finds a region's file offset through the first region
// table.
func regionOffset(t *testing.T, path string, g guid) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rt := b[regionTable1Offset:]
	for i := 0; i < int(binary.LittleEndian.Uint32(rt[8:])); i++ {
		e := rt[16+i*regionEntrySize:]
		if guid(e[:16]) == g {
			return int64(binary.LittleEndian.Uint64(e[16:]))
		}
	}
	t.Fatalf("region %v not found", g)
	return 0
}

// fileParametersOffset is the absolute offset of the File Parameters item.
func fileParametersOffset(t *testing.T, path string) int64 {
	b, _ := os.ReadFile(path)
	base := regionOffset(t, path, guidMetadata)
	m := b[base:]
	for i := 0; i < int(binary.LittleEndian.Uint16(m[10:])); i++ {
		e := m[32+i*metadataEntrySize:]
		if guid(e[:16]) == guidFileParameters {
			return base + int64(binary.LittleEndian.Uint32(e[16:]))
		}
	}
	t.Fatal("File Parameters not found")
	return 0
}
