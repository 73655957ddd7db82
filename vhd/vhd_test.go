package vhd

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/container/containertest"
	"github.com/kvmify/kvmify/internal/testutil"
)

// testDiskSize is not a multiple of the CHS geometry, so the CHS and
// CurrentSize rules give different sizes.
const testDiskSize = 24 << 20

func testDisk(t *testing.T) (dir, raw string) {
	dir = t.TempDir()
	raw = filepath.Join(dir, "disk.raw")
	testutil.SparseRandomDisk(t, raw, testDiskSize, 15)
	return dir, raw
}

func convert(t *testing.T, raw, out string, opts ...string) {
	t.Helper()
	testutil.QemuImg(t, append(append([]string{"convert", "-O", "vpc"}, opts...), raw, out)...)
}

func checkOracle(t *testing.T, path, format string) *Image {
	t.Helper()
	want, size := testutil.OracleSHA256(t, path, "vpc")
	before := testutil.HashFiles(t, path)
	img, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	if img.Format() != format {
		t.Errorf("Format = %q, want %q", img.Format(), format)
	}
	if abs, _ := filepath.Abs(path); len(img.InputFiles()) != 1 || img.InputFiles()[0] != abs {
		t.Errorf("InputFiles = %v", img.InputFiles())
	}
	containertest.Matches(t, img, want, size)
	before.Unchanged(t)
	return img
}

// patchFooter rewrites footer fields in a copy (both footers of a dynamic
// disk) and fixes the checksums.
func patchFooter(t *testing.T, path string, edit func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := []int{len(b) - footerSize}
	if string(b[:8]) == footerCookie {
		offs = append(offs, 0)
	}
	for _, o := range offs {
		ft := b[o : o+footerSize]
		edit(ft)
		binary.BigEndian.PutUint32(ft[footerChecksumAt:], checksum(ft, footerChecksumAt))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOracle(t *testing.T) {
	dir, raw := testDisk(t)
	for _, tc := range []struct {
		name, format string
		opts         []string
	}{
		{"dynamic", "vhd/dynamic", nil},
		{"fixed", "vhd/fixed", []string{"-o", "subformat=fixed"}},
		{"dynamic-force-size", "vhd/dynamic", []string{"-o", "force_size=on"}},
		{"fixed-force-size", "vhd/fixed", []string{"-o", "subformat=fixed,force_size=on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".vhd")
			convert(t, raw, p, tc.opts...)
			checkOracle(t, p, tc.format)
		})
	}
	// QEMU writes CurrentSize equal to the geometry's size (just over
	// 24 MiB here). With CurrentSize set back to 24 MiB, a Hyper-V creator
	// sizes the disk by CurrentSize and a QEMU creator by the geometry.
	for _, c := range []struct {
		creator string
		want    int64
	}{{"win ", testDiskSize}, {"qemu", 25171968}} {
		p := filepath.Join(dir, strings.TrimSpace(c.creator)+".vhd")
		convert(t, raw, p)
		patchFooter(t, p, func(b []byte) {
			copy(b[28:], c.creator)
			binary.BigEndian.PutUint64(b[48:], testDiskSize)
		})
		if img := checkOracle(t, p, "vhd/dynamic"); img.Size() != c.want {
			t.Errorf("creator %q: size %d, want %d", c.creator, img.Size(), c.want)
		}
	}
}

func TestBroken(t *testing.T) {
	dir, raw := testDisk(t)
	for _, sub := range []string{"dynamic", "fixed"} {
		p := filepath.Join(dir, "cut-"+sub+".vhd")
		convert(t, raw, p, "-o", "subformat="+sub)
		b, _ := os.ReadFile(p)
		// Cut the data short but keep a valid footer at the end, as a copy
		// interrupted and "repaired" might.
		cut := append(append([]byte(nil), b[:len(b)/2]...), b[len(b)-footerSize:]...)
		os.WriteFile(p, cut, 0o644)
		sum := testutil.FileSHA256(t, p)
		_, err := Open(p)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s VHD cut short: %v", sub, err)
		} else {
			t.Log(err)
		}
		if testutil.FileSHA256(t, p) != sum {
			t.Error("the image changed")
		}
	}
	// Differencing disks are refused.
	diff := filepath.Join(dir, "diff.vhd")
	convert(t, raw, diff)
	patchFooter(t, diff, func(b []byte) { binary.BigEndian.PutUint32(b[60:], diskTypeDiff) })
	if _, err := Open(diff); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "differencing") {
		t.Errorf("differencing VHD: %v", err)
	} else {
		t.Log(err)
	}
	// A damaged footer checksum.
	bad := filepath.Join(dir, "badsum.vhd")
	convert(t, raw, bad, "-o", "subformat=fixed")
	b, _ := os.ReadFile(bad)
	b[len(b)-footerSize+40] ^= 1
	os.WriteFile(bad, b, 0o644)
	if _, err := Open(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad footer checksum: %v", err)
	}
	if _, err := Open(raw); !errors.Is(err, ErrNotVHD) {
		t.Errorf("raw file: %v", err)
	}
}
