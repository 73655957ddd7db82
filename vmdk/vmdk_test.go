package vmdk

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/container"
	"github.com/kvmify/kvmify/internal/container/containertest"
	"github.com/kvmify/kvmify/internal/testutil"
)

const testDiskSize = 24 << 20

func testDisk(t *testing.T) (dir, raw string) {
	dir = t.TempDir()
	raw = filepath.Join(dir, "disk.raw")
	testutil.SparseRandomDisk(t, raw, testDiskSize, 13)
	return dir, raw
}

func convert(t *testing.T, raw, out string, opts ...string) {
	t.Helper()
	testutil.QemuImg(t, append(append([]string{"convert", "-O", "vmdk"}, opts...), raw, out)...)
}

func checkOracle(t *testing.T, path, format string, files int) *Image {
	t.Helper()
	want, size := testutil.OracleSHA256(t, path)
	img, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	if img.Format() != format {
		t.Errorf("Format = %q, want %q", img.Format(), format)
	}
	if len(img.InputFiles()) != files {
		t.Errorf("InputFiles = %v, want %d files", img.InputFiles(), files)
	}
	before := testutil.HashFiles(t, img.InputFiles()...)
	containertest.Matches(t, img, want, size)
	before.Unchanged(t)
	return img
}

// writeDescriptor writes a text descriptor closed by a disk database and
// NUL-padded to a sector, as QEMU writes them (QEMU 7.2 counts an extent
// line twice when it ends the text).
func writeDescriptor(t *testing.T, path, text string) {
	t.Helper()
	b := []byte(text + "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n")
	b = append(b, make([]byte, 512-len(b)%512)...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOracle(t *testing.T) {
	dir, raw := testDisk(t)
	for _, tc := range []struct {
		sub   string
		files int
	}{
		{"monolithicSparse", 1},
		{"streamOptimized", 1},
		{"monolithicFlat", 2},
		{"twoGbMaxExtentSparse", 2},
		{"twoGbMaxExtentFlat", 2},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			p := filepath.Join(dir, tc.sub+".vmdk")
			convert(t, raw, p, "-o", "subformat="+tc.sub)
			checkOracle(t, p, "vmdk/"+tc.sub, tc.files)
		})
	}
	// A hand-written descriptor joining a flat extent at an offset and a
	// sparse extent. QEMU 7.2 counts the first extent of such a mixed
	// descriptor twice, so it is no oracle here: the expected disk is the
	// flat file's bytes followed by the raw disk the sparse extent was
	// converted from.
	flat := filepath.Join(dir, "part.bin")
	testutil.SparseRandomDisk(t, flat, 4<<20, 14)
	sparse := filepath.Join(dir, "monolithicSparse.vmdk")
	desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n\n" +
		"RW 4096 FLAT \"part.bin\" 2048\nRW 49152 SPARSE \"" + filepath.Base(sparse) + "\"\n"
	multi := filepath.Join(dir, "multi.vmdk")
	writeDescriptor(t, multi, desc)
	part, _ := os.ReadFile(flat)
	rawb, _ := os.ReadFile(raw)
	expectDisk(t, multi, append(append([]byte(nil), part[1<<20:3<<20]...), rawb...))

	// A ZERO extent between two flat ones. QEMU reads a ZERO extent from
	// the previous extent's file, so it is no oracle here: the expected
	// disk is built from the flat file and zeros.
	zdesc := "# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n" +
		"RW 2048 FLAT \"part.bin\" 0\nRDONLY 1024 ZERO\nRW 2048 FLAT \"part.bin\" 4096\n"
	zp := filepath.Join(dir, "zero.vmdk")
	writeDescriptor(t, zp, zdesc)
	expectDisk(t, zp, append(append(append([]byte(nil), part[:1<<20]...), make([]byte, 512<<10)...), part[2<<20:3<<20]...))
}

// expectDisk opens path and compares its whole disk with want.
func expectDisk(t *testing.T, path string, want []byte) {
	t.Helper()
	img, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s differs from its parts (size %d, want %d; err %v)", path, len(got), len(want), err)
	}
	containertest.ZeroExtents(t, img)
}

// TestFooter moves a streamOptimized image's grain directory pointer to a
// footer, as VMware's writers do (QEMU writes it in the header): gdOffset
// GD_AT_END in the header, then footer marker, header copy and
// end-of-stream marker at the end.
func TestFooter(t *testing.T) {
	dir, raw := testDisk(t)
	p := filepath.Join(dir, "so.vmdk")
	convert(t, raw, p, "-o", "subformat=streamOptimized")
	want, _ := testutil.OracleSHA256(t, p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	hdr := append([]byte(nil), b[:headerSize]...)
	for i := 56; i < 64; i++ {
		b[i] = 0xff // gdOffset = GD_AT_END
	}
	b = b[:len(b)-headerSize] // QEMU's end-of-stream marker
	marker := make([]byte, headerSize)
	marker[0] = 1             // val: the footer is one sector
	marker[12] = markerFooter // type
	b = append(b, marker...)
	b = append(b, hdr...)
	b = append(b, make([]byte, headerSize)...) // end-of-stream marker
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := testutil.ReaderSHA256(t, img, img.Size()); got != want {
		t.Fatalf("with a footer: sha256 %s, want %s", got, want)
	}
	// Without the footer the grain directory is lost: an error.
	os.Truncate(p, int64(len(b)-3*headerSize))
	if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("footer cut off: %v", err)
	} else {
		t.Log(err)
	}
}

func TestParent(t *testing.T) {
	dir, raw := testDisk(t)
	base := filepath.Join(dir, "base.vmdk")
	convert(t, raw, base, "-o", "subformat=streamOptimized")
	child := filepath.Join(dir, "child.vmdk")
	testutil.QemuImg(t, "create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", child)
	qemuIO := testutil.RequireTool(t, "qemu-io")
	if out, err := exec.Command(qemuIO, "-f", "vmdk", "-c", "write -P 0xee 3M 200k", child).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	checkOracle(t, child, "vmdk/monolithicSparse", 2)
	os.Remove(base)
	if _, err := Open(child); err == nil || !strings.Contains(err.Error(), "base.vmdk") {
		t.Errorf("missing parent: %v", err)
	}
}

func TestBroken(t *testing.T) {
	dir, raw := testDisk(t)
	// A flat extent cut short: refused at Open, naming the extent.
	flat := filepath.Join(dir, "flat.vmdk")
	convert(t, raw, flat, "-o", "subformat=monolithicFlat")
	ext := filepath.Join(dir, "flat-flat.vmdk")
	os.Truncate(ext, testDiskSize-1<<20)
	if _, err := Open(flat); err == nil || !strings.Contains(err.Error(), ext) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated flat extent: %v", err)
	} else {
		t.Log(err)
	}
	// A sparse extent cut short: reading its lost grains fails, naming it.
	for _, sub := range []string{"monolithicSparse", "streamOptimized", "twoGbMaxExtentSparse"} {
		p := filepath.Join(dir, "cut-"+sub+".vmdk")
		convert(t, raw, p, "-o", "subformat="+sub)
		victim := p
		if sub == "twoGbMaxExtentSparse" {
			victim = strings.TrimSuffix(p, ".vmdk") + "-s001.vmdk"
		}
		fi, _ := os.Stat(victim)
		os.Truncate(victim, fi.Size()*2/3)
		sum := testutil.FileSHA256(t, victim)
		img, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = img.ReadAt(make([]byte, img.Size()), 0)
		img.Close()
		if !(errors.Is(err, container.ErrTruncated) || errors.Is(err, ErrCorrupt)) || !strings.Contains(err.Error(), victim) {
			t.Errorf("%s with a truncated extent: %v", sub, err)
		} else {
			t.Log(err)
		}
		if testutil.FileSHA256(t, victim) != sum {
			t.Error("the image changed")
		}
	}
	// Bytes flipped inside a compressed grain: a named error, never other
	// bytes.
	so := filepath.Join(dir, "flip.vmdk")
	convert(t, raw, so, "-o", "subformat=streamOptimized")
	fi, _ := os.Stat(so)
	f, _ := os.OpenFile(so, os.O_WRONLY, 0)
	f.WriteAt(bytes.Repeat([]byte{0x5a}, 64), fi.Size()/2)
	f.Close()
	img, err := Open(so)
	if err != nil {
		t.Fatal(err)
	}
	_, err = img.ReadAt(make([]byte, img.Size()), 0)
	img.Close()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), so) {
		t.Errorf("flipped compressed grain: %v", err)
	} else {
		t.Log(err)
	}
	// A missing extent file is named.
	two := filepath.Join(dir, "two.vmdk")
	convert(t, raw, two, "-o", "subformat=twoGbMaxExtentFlat")
	os.Remove(filepath.Join(dir, "two-f001.vmdk"))
	if _, err := Open(two); err == nil || !strings.Contains(err.Error(), "two-f001.vmdk") {
		t.Errorf("missing extent: %v", err)
	}
	if _, err := Open(raw); !errors.Is(err, ErrNotVMDK) {
		t.Errorf("raw file: %v", err)
	}
}

// TestConcurrentReads reads a streamOptimized image from many goroutines
// at once; run under -race it also checks the caches' locking.
func TestConcurrentReads(t *testing.T) {
	dir, raw := testDisk(t)
	p := filepath.Join(dir, "so.vmdk")
	convert(t, raw, p, "-o", "subformat=streamOptimized")
	want := testutil.OracleRaw(t, p)
	img, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	testutil.ConcurrentReads(t, img, want, 8, 200)
}
