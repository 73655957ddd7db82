package qcow2

import (
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
	testutil.SparseRandomDisk(t, raw, testDiskSize, 11)
	return dir, raw
}

// checkOracle reads the whole logical disk through Open and compares it
// with qemu-img's raw conversion, and proves no input file was written.
func checkOracle(t *testing.T, path string, wantFiles int) *Image {
	t.Helper()
	want, size := testutil.OracleSHA256(t, path)
	img, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	if len(img.InputFiles()) != wantFiles {
		t.Errorf("InputFiles = %v, want %d files", img.InputFiles(), wantFiles)
	}
	before := testutil.HashFiles(t, img.InputFiles()...)
	containertest.Matches(t, img, want, size)
	before.Unchanged(t)
	return img
}

func TestOracle(t *testing.T) {
	dir, raw := testDisk(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"compressed", []string{"-c"}},
		{"v2", []string{"-o", "compat=0.10"}},
		{"small-clusters", []string{"-o", "cluster_size=4096"}},
		{"big-clusters-compressed", []string{"-c", "-o", "cluster_size=2M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".qcow2")
			testutil.QemuImg(t, append(append([]string{"convert", "-O", "qcow2"}, tc.args...), raw, p)...)
			checkOracle(t, p, 1)
		})
	}
}

func TestBackingChain(t *testing.T) {
	dir, raw := testDisk(t)
	qemuIO := testutil.RequireTool(t, "qemu-io")
	base := filepath.Join(dir, "base.qcow2")
	testutil.QemuImg(t, "convert", "-c", "-O", "qcow2", raw, base)
	mid := filepath.Join(dir, "mid.qcow2")
	testutil.QemuImg(t, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid)
	top := filepath.Join(dir, "sub", "top.qcow2")
	os.Mkdir(filepath.Dir(top), 0o755)
	// A relative name resolved against the child's directory, no format
	// extension (the reader sniffs it).
	testutil.QemuImg(t, "create", "-f", "qcow2", "-b", "../mid.qcow2", "-F", "qcow2", "-o", "compat=1.1", top)
	for _, c := range []struct{ img, cmd string }{
		{mid, "write -P 0xab 1M 100k"},
		{top, "write -P 0xcd 1088k 300k"},
		{top, "write -z 5M 1M"},
	} {
		if out, err := exec.Command(qemuIO, "-f", "qcow2", "-c", c.cmd, c.img).CombinedOutput(); err != nil {
			t.Fatalf("qemu-io %s: %v\n%s", c.cmd, err, out)
		}
	}
	img := checkOracle(t, top, 3)
	if img.InputFiles()[2] != base {
		t.Errorf("InputFiles = %v, want the base last", img.InputFiles())
	}

	// A raw backing file, shorter than the overlay: its tail reads zeros.
	short := filepath.Join(dir, "short.raw")
	testutil.CopyFile(t, raw, short)
	os.Truncate(short, testDiskSize/2)
	over := filepath.Join(dir, "over-raw.qcow2")
	testutil.QemuImg(t, "create", "-f", "qcow2", "-b", "short.raw", "-F", "raw", over, "24M")
	checkOracle(t, over, 2)

	// A missing backing file is refused at Open, naming it.
	os.Remove(base)
	if _, err := Open(top); err == nil || !strings.Contains(err.Error(), "base.qcow2") {
		t.Fatalf("Open with a missing backing file: %v", err)
	}
}

func TestTruncated(t *testing.T) {
	dir, raw := testDisk(t)
	for _, tc := range []struct {
		name string
		args []string
	}{{"plain", nil}, {"compressed", []string{"-c"}}} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".qcow2")
			testutil.QemuImg(t, append(append([]string{"convert", "-O", "qcow2"}, tc.args...), raw, p)...)
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()*2/3); err != nil {
				t.Fatal(err)
			}
			sum := testutil.FileSHA256(t, p)
			img, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			_, err = img.ReadAt(make([]byte, img.Size()), 0)
			if err == nil {
				t.Fatal("reading a truncated qcow2 gave no error")
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "offset") {
				t.Errorf("error names no file and offset: %v", err)
			}
			if !errors.Is(err, container.ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v is neither ErrTruncated nor ErrCorrupt", err)
			}
			t.Log(err)
			if testutil.FileSHA256(t, p) != sum {
				t.Error("the image changed")
			}
		})
	}
}

func TestRefused(t *testing.T) {
	dir, raw := testDisk(t)
	// QEMU cannot make a LUKS image here (its PBKDF timing fails in
	// containers), so crypt_method (header offset 32) is set to 1 (AES) in
	// a copy of a plain image.
	enc := filepath.Join(dir, "enc.qcow2")
	testutil.QemuImg(t, "create", "-f", "qcow2", enc, "16M")
	f, err := os.OpenFile(enc, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0, 0, 0, 1}, 32)
	f.Close()
	if _, err := Open(enc); !errors.Is(err, ErrUnsupported) {
		t.Errorf("encrypted qcow2: %v, want ErrUnsupported", err)
	}
	for _, opt := range []string{"extended_l2=on", "compression_type=zstd"} {
		p := filepath.Join(dir, opt+".qcow2")
		testutil.QemuImg(t, "create", "-f", "qcow2", "-o", opt, p, "16M")
		_, err := Open(p)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("qcow2 with %s: %v, want ErrUnsupported", opt, err)
		}
		t.Log(err)
	}
	ext := filepath.Join(dir, "ext.qcow2")
	testutil.QemuImg(t, "create", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "ext.data"), ext, "16M")
	if _, err := Open(ext); !errors.Is(err, ErrUnsupported) {
		t.Errorf("qcow2 with an external data file: %v, want ErrUnsupported", err)
	}
	if _, err := Open(raw); !errors.Is(err, ErrNotQcow2) {
		t.Errorf("raw file: %v, want ErrNotQcow2", err)
	}
}

// TestConcurrentReads reads a compressed image (and its uncompressed
// backing chain) from many goroutines at once; run under -race it also
// checks the caches' locking.
func TestConcurrentReads(t *testing.T) {
	dir, raw := testDisk(t)
	p := filepath.Join(dir, "c.qcow2")
	// With 4 KiB clusters the 16 MiB cluster cache holds 4096 of the
	// disk's 6144 clusters, so the reads also evict and decode again.
	testutil.QemuImg(t, "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", raw, p)
	want := testutil.OracleRaw(t, p)
	img, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	testutil.ConcurrentReads(t, img, want, 8, 200)
}
