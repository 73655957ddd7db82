//go:build linux

package fusemount_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/fusemount"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

// requireFUSE skips (fails under CI) where FUSE mounts cannot be made.
func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if testutil.InCI() {
			t.Fatal("FUSE mount tests need root")
		}
		t.Skip("FUSE mount tests need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if testutil.InCI() {
			t.Fatalf("/dev/fuse: %v", err)
		}
		t.Skipf("/dev/fuse: %v", err)
	}
}

type fixture struct {
	src, srcHash string
	ov           *overlay.Overlay
	mnt          *fusemount.Mount
	dir          string
	content      []byte
}

func newFixture(t *testing.T, size int, files []fusemount.StaticFile) *fixture {
	t.Helper()
	requireFUSE(t)
	tmp := t.TempDir()
	content := make([]byte, size)
	rand.Read(content)
	src := filepath.Join(tmp, "src.img")
	if err := os.WriteFile(src, content, 0o444); err != nil {
		t.Fatal(err)
	}
	s, err := disk.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ov, err := overlay.Open(filepath.Join(tmp, "ov"), s, overlay.Options{SourcePath: src})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "mnt")
	os.Mkdir(dir, 0o755)
	m, err := fusemount.New(dir, fusemount.Options{Disk: ov, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		ov.Close()
	})
	return &fixture{src: src, srcHash: testutil.FileSHA256(t, src), ov: ov, mnt: m, dir: dir, content: content}
}

func TestDiskReadsAsSourceAndTakesWrites(t *testing.T) {
	f := newFixture(t, 8<<20, nil)
	img := filepath.Join(f.dir, "disk.img")

	// qemu-img reads the FUSE file as a raw disk equal to the source.
	qemuImg := testutil.RequireTool(t, "qemu-img")
	out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", f.src, img).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare source vs disk.img: %v\n%s", err, out)
	}

	// dd writes 1 MiB through the mount with O_DIRECT; it lands in the overlay.
	patch := bytes.Repeat([]byte("kvmify!\n"), 1<<17)
	pf := filepath.Join(t.TempDir(), "patch")
	os.WriteFile(pf, patch, 0o644)
	dd := testutil.RequireTool(t, "dd")
	if out, err := exec.Command(dd, "if="+pf, "of="+img, "bs=1M", "seek=3", "conv=notrunc,fsync", "oflag=direct").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	got := make([]byte, len(patch))
	if _, err := f.ov.ReadAt(got, 3<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, patch) {
		t.Fatal("the overlay does not hold what dd wrote through disk.img")
	}
	// Reading back through the mount sees the write; the rest is the source.
	all, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), f.content...)
	copy(want[3<<20:], patch)
	if !bytes.Equal(all, want) {
		t.Fatal("disk.img content differs from source + write")
	}
	if h := testutil.FileSHA256(t, f.src); h != f.srcHash {
		t.Fatal("source image changed")
	}
}

func TestDiskIsFixedSize(t *testing.T) {
	f := newFixture(t, 1<<20, nil)
	img := filepath.Join(f.dir, "disk.img")
	fd, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := fd.WriteAt([]byte("x"), 1<<20); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write at end of disk: got %v, want ENOSPC", err)
	}
	if err := fd.Truncate(1 << 19); !errors.Is(err, syscall.EPERM) {
		t.Errorf("truncate: got %v, want EPERM", err)
	}
	fi, err := os.Stat(img)
	if err != nil || fi.Size() != 1<<20 {
		t.Fatalf("stat disk.img: %v, size %d", err, fi.Size())
	}
}

func TestStaticFilesAreReadOnly(t *testing.T) {
	report := []byte(`{"ok":true}`)
	f := newFixture(t, 1<<20, []fusemount.StaticFile{{Name: "report.json", Data: report}})
	p := filepath.Join(f.dir, "report.json")
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, report) {
		t.Fatalf("report.json: %q, %v", got, err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err == nil {
		t.Fatal("writing report.json succeeded; it must be read-only")
	}
	got, _ = os.ReadFile(p)
	if !bytes.Equal(got, report) {
		t.Fatal("report.json changed")
	}
}

func TestMountPointChecks(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
	if _, err := fusemount.New(dir, fusemount.Options{}); err == nil {
		t.Fatal("mounting over a non-empty directory succeeded")
	}
	if _, err := fusemount.New(filepath.Join(dir, "missing"), fusemount.Options{}); err == nil {
		t.Fatal("mounting on a missing directory succeeded")
	}
}
