package export_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/export"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

// view builds a source with data and a large zero region, and an overlay
// over it with a data write and a zeroed range.
func view(t *testing.T) (src string, ov *overlay.Overlay, want []byte) {
	t.Helper()
	dir := t.TempDir()
	want = make([]byte, 16<<20)
	rand.Read(want[:4<<20]) // 4 MiB data, then 12 MiB of zeros
	src = filepath.Join(dir, "src.img")
	if err := os.WriteFile(src, want, 0o444); err != nil {
		t.Fatal(err)
	}
	s, err := disk.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ov, err = overlay.Open(filepath.Join(dir, "ov"), s, overlay.Options{SourcePath: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ov.Close() })
	patch := bytes.Repeat([]byte{0xA5}, 100000)
	if _, err := ov.WriteAt(patch, 1<<20+123); err != nil {
		t.Fatal(err)
	}
	copy(want[1<<20+123:], patch)
	if err := ov.Zero(2<<20, 128<<10); err != nil {
		t.Fatal(err)
	}
	clear(want[2<<20 : 2<<20+128<<10])
	return src, ov, want
}

func TestRawIsSparseAndExact(t *testing.T) {
	src, ov, want := view(t)
	h := testutil.FileSHA256(t, src)
	out := filepath.Join(t.TempDir(), "out.raw")
	var last int64
	if err := export.Raw(context.Background(), ov, out, func(done, total int64) { last = done }); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("raw export differs from the view (err %v)", err)
	}
	if last != int64(len(want)) {
		t.Errorf("progress ended at %d, want %d", last, len(want))
	}
	var st syscall.Stat_t
	syscall.Stat(out, &st)
	if alloc := st.Blocks * 512; alloc > 6<<20 {
		t.Errorf("raw export allocates %d bytes; the 12 MiB zero tail should be a hole", alloc)
	}
	if err := export.Raw(context.Background(), ov, out, nil); err == nil {
		t.Error("export over an existing file succeeded")
	}
	if testutil.FileSHA256(t, src) != h {
		t.Fatal("source changed")
	}
}

func TestQCOW2StandaloneAndBacked(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	testutil.RequireTool(t, "qemu-io")
	src, ov, want := view(t)
	h := testutil.FileSHA256(t, src)
	dir := t.TempDir()
	ref := filepath.Join(dir, "want.raw")
	os.WriteFile(ref, want, 0o644)

	std := filepath.Join(dir, "std.qcow2")
	if err := export.QCOW2(context.Background(), ov, std, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(qemuImg, "compare", "-f", "qcow2", "-F", "raw", std, ref).CombinedOutput(); err != nil {
		t.Fatalf("standalone qcow2 differs from the view: %v\n%s", err, out)
	}

	var ext []export.Extent
	for _, e := range ov.Changes() {
		ext = append(ext, export.Extent{Offset: e.Offset, Length: e.Length, Zero: e.Zero})
	}
	backed := filepath.Join(dir, "backed.qcow2")
	if err := export.QCOW2Backed(context.Background(), ov, src, ext, backed, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(qemuImg, "compare", "-f", "qcow2", "-F", "raw", backed, ref).CombinedOutput(); err != nil {
		t.Fatalf("backed qcow2 differs from the view: %v\n%s", err, out)
	}
	info, err := exec.Command(qemuImg, "info", "--output=json", backed).Output()
	if err != nil || !strings.Contains(string(info), `"backing-filename": "`+src+`"`) {
		t.Fatalf("backed qcow2 does not name the source as backing file: %v\n%s", err, info)
	}
	if fi, _ := os.Stat(backed); fi.Size() > 2<<20 {
		t.Errorf("backed qcow2 is %d bytes; it should hold only the changed clusters", fi.Size())
	}
	if testutil.FileSHA256(t, src) != h {
		t.Fatal("source changed")
	}
}
