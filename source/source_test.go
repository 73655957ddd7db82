package source_test

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/source"
)

func writeRandom(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, im source.Image) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(im, 0, im.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContainersAreRecognisedByContent makes each container with qemu-img
// under a name that says nothing ("disk.img") and checks that Open names
// its format and does not serve the container's bytes as a disk.
func TestContainersAreRecognisedByContent(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "base.raw")
	writeRandom(t, raw, 2<<20)
	for _, tc := range []struct {
		kind string
		args []string
		open string // which file to open, if not the output
	}{
		{"qcow2", []string{"-O", "qcow2"}, ""},
		{"qcow2", []string{"-O", "qcow2", "-c"}, ""},
		{"vhd", []string{"-O", "vpc"}, ""},
		{"vhd", []string{"-O", "vpc", "-o", "subformat=fixed"}, ""},
		{"vhdx", []string{"-O", "vhdx"}, ""},
		{"vmdk", []string{"-O", "vmdk"}, ""},
		{"vmdk", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}, ""},
		{"vmdk", []string{"-O", "vmdk", "-o", "subformat=monolithicFlat"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			sub := t.TempDir()
			out := filepath.Join(sub, "disk.img")
			args := append(append([]string{"convert", "-f", "raw"}, tc.args...), raw, out)
			if b, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %v: %v\n%s", args, err, b)
			}
			im, err := source.Open(out)
			if err == nil {
				defer im.Close()
				if im.Format() != tc.kind {
					t.Fatalf("format %q, want %q", im.Format(), tc.kind)
				}
				got := readAll(t, im)
				want, _ := os.ReadFile(raw)
				if sha256.Sum256(got) != sha256.Sum256(want) {
					t.Fatal("bytes differ from the raw disk")
				}
				return
			}
			if !errors.Is(err, source.ErrNotBuiltIn) || !strings.Contains(err.Error(), tc.kind) {
				t.Fatalf("open: %v; want %s recognised", err, tc.kind)
			}
		})
	}
}

func TestRawAndSplitRaw(t *testing.T) {
	testutil.RequireTool(t, "split")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	want := writeRandom(t, raw, 3<<20+100)
	im, err := source.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if im.Format() != "raw" || sha256.Sum256(readAll(t, im)) != sha256.Sum256(want) {
		t.Fatalf("raw: format %q or bytes differ", im.Format())
	}
	if f := im.InputFiles(); len(f) != 1 || f[0] != raw {
		t.Fatalf("raw InputFiles %v", f)
	}
	im.Close()

	if b, err := exec.Command("split", "-b", "1M", "-a", "3", "--numeric-suffixes=1", raw, raw+".").CombinedOutput(); err != nil {
		t.Fatalf("split: %v\n%s", err, b)
	}
	im, err = source.Open(raw + ".001")
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Format() != "split-raw" || len(im.InputFiles()) != 4 || sha256.Sum256(readAll(t, im)) != sha256.Sum256(want) {
		t.Fatalf("split: format %q, inputs %v, or bytes differ", im.Format(), im.InputFiles())
	}
}

// TestSplitContainerIsNotSplitRaw checks that content wins over the name:
// a qcow2 named like the first segment of a split set is qcow2.
func TestSplitContainerIsNotSplitRaw(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.001")
	if b, err := exec.Command(qemuImg, "create", "-f", "qcow2", p, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	writeRandom(t, filepath.Join(dir, "disk.002"), 1000)
	im, err := source.Open(p)
	if err == nil {
		defer im.Close()
		if im.Format() != "qcow2" {
			t.Fatalf("format %q", im.Format())
		}
		return
	}
	if !errors.Is(err, source.ErrNotBuiltIn) {
		t.Fatal(err)
	}
}

// TestEWFByContent opens an E01 set renamed to look like a raw image:
// content decides, and the later segments are still found by their names.
func TestEWFByContent(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	want := writeRandom(t, raw, 3<<20)
	segs := testutil.EWFAcquire(t, raw, dir, "img", "-c", "deflate:fast", "-S", "1M")
	im, err := source.Open(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Format() != "ewf" || len(im.InputFiles()) != len(segs) || sha256.Sum256(readAll(t, im)) != sha256.Sum256(want) {
		t.Fatalf("format %q, inputs %v, or bytes differ", im.Format(), im.InputFiles())
	}
	// A single-segment E01 renamed .img is still EWF.
	one := testutil.EWFAcquire(t, raw, t.TempDir(), "one", "-c", "deflate:fast")
	renamed := filepath.Join(filepath.Dir(one[0]), "evidence.img")
	if err := os.Rename(one[0], renamed); err != nil {
		t.Fatal(err)
	}
	im2, err := source.Open(renamed)
	if err != nil {
		t.Fatal(err)
	}
	defer im2.Close()
	if im2.Format() != "ewf" || sha256.Sum256(readAll(t, im2)) != sha256.Sum256(want) {
		t.Fatalf("renamed E01: format %q or bytes differ", im2.Format())
	}
}

// TestNBDURI opens a raw image that qemu-nbd serves, by URI.
func TestNBDURI(t *testing.T) {
	qemuNBD := testutil.RequireTool(t, "qemu-nbd")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	want := writeRandom(t, raw, 5<<20)
	sock := filepath.Join(dir, "q.sock")
	cmd := exec.Command(qemuNBD, "--read-only", "--persistent", "-f", "raw", "-x", "", "-k", sock, raw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var im source.Image
	var err error
	for i := 0; i < 100; i++ {
		if im, err = source.Open("nbd+unix:///?socket=" + sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Format() != "nbd" || sha256.Sum256(readAll(t, im)) != sha256.Sum256(want) {
		t.Fatalf("format %q or bytes differ", im.Format())
	}
}
