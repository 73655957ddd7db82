package patch_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
	"github.com/kvmify/kvmify/patch"
)

func open(t *testing.T, src, ovPath string) *overlay.Overlay {
	t.Helper()
	s, err := disk.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ov, err := overlay.Open(ovPath, s, overlay.Options{SourcePath: src})
	if err != nil {
		t.Fatal(err)
	}
	return ov
}

func TestApplyOnceThenServeAsIs(t *testing.T) {
	dir := t.TempDir()
	content := make([]byte, 4<<20)
	rand.Read(content)
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, content, 0o444)
	h := testutil.FileSHA256(t, src)
	ovPath := filepath.Join(dir, "ov")

	ov := open(t, src, ovPath)
	writes := []disk.Write{{Offset: 4096, Data: bytes.Repeat([]byte{1}, 4096), What: "hive data"}}
	rec := &patch.Record{Target: "ide"}
	if err := patch.Describe(rec, ov, writes); err != nil {
		t.Fatal(err)
	}
	if rec.Extents[0].OldSHA256 == rec.Extents[0].NewSHA256 || rec.Extents[0].Length != 4096 {
		t.Fatalf("extent description wrong: %+v", rec.Extents[0])
	}
	if err := patch.Apply(ov, writes, rec); err != nil {
		t.Fatal(err)
	}
	// The guest changes the patched bytes afterwards.
	guest := bytes.Repeat([]byte{2}, 4096)
	ov.WriteAt(guest, 4096)
	ov.Close()

	ov = open(t, src, ovPath)
	defer ov.Close()
	got, ok, err := patch.Applied(ov)
	if err != nil || !ok || got.Target != "ide" || len(got.Extents) != 1 {
		t.Fatalf("record after reopen: %+v %v %v", got, ok, err)
	}
	if err := patch.Apply(ov, writes, rec); err == nil {
		t.Fatal("a second Apply succeeded")
	}
	b := make([]byte, 4096)
	ov.ReadAt(b, 4096)
	if !bytes.Equal(b, guest) {
		t.Fatal("the guest's write did not survive a reopen")
	}
	if testutil.FileSHA256(t, src) != h {
		t.Fatal("source changed")
	}
}

func TestApplyRefusesUsedOverlay(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, make([]byte, 1<<20), 0o444)
	ov := open(t, src, filepath.Join(dir, "ov"))
	defer ov.Close()
	ov.WriteAt([]byte("guest"), 0)
	err := patch.Apply(ov, []disk.Write{{Offset: 512, Data: []byte("x")}}, &patch.Record{})
	if !errors.Is(err, patch.ErrNotFresh) {
		t.Fatalf("Apply on an overlay with guest writes: %v, want ErrNotFresh", err)
	}
	err = patch.Apply(open(t, src, filepath.Join(dir, "ov2")), []disk.Write{{Offset: 1 << 20, Data: []byte("x")}}, &patch.Record{})
	if err == nil {
		t.Fatal("a write past the end was applied")
	}
}
