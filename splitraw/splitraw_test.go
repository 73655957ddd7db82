package splitraw_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/splitraw"
)

// rawDisk writes a 3.5 MiB raw file of random data with a hole in it.
func rawDisk(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	b := make([]byte, 3<<20+512<<10)
	rand.Read(b[:1<<20])
	rand.Read(b[2<<20:])
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// splitFile cuts raw with split(1) and returns the segment paths.
func splitFile(t *testing.T, raw string, args ...string) []string {
	t.Helper()
	testutil.RequireTool(t, "split")
	prefix := raw + "."
	cmd := exec.Command("split", append(args, raw, prefix)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("split: %v\n%s", err, out)
	}
	segs, err := filepath.Glob(prefix + "*")
	if err != nil || len(segs) < 2 {
		t.Fatalf("split made %v (%v)", segs, err)
	}
	return segs
}

func sums(t *testing.T, paths []string) map[string]string {
	m := map[string]string{}
	for _, p := range paths {
		m[p] = testutil.FileSHA256(t, p)
	}
	return m
}

func TestReadsEverySplitLayout(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ftk-001", []string{"-b", "1M", "-a", "3", "--numeric-suffixes=1"}},
		{"numeric-000", []string{"-b", "1000000", "-a", "3", "-d"}},
		{"letters-aa", []string{"-b", "999999", "-a", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw, want := rawDisk(t, dir)
			segs := splitFile(t, raw, tc.args...)
			before := sums(t, segs)
			im, err := splitraw.Open(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if im.Size() != int64(len(want)) {
				t.Fatalf("size %d, want %d", im.Size(), len(want))
			}
			if got := im.InputFiles(); len(got) != len(segs) {
				t.Fatalf("InputFiles %v, want %d files", got, len(segs))
			}
			got, err := io.ReadAll(io.NewSectionReader(im, 0, im.Size()))
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatal("bytes differ from the raw disk")
			}
			// Reads spanning segment boundaries, and past the end.
			for _, off := range []int64{999990, 1<<20 - 7, 2*999999 - 1, im.Size() - 3} {
				p := make([]byte, 20)
				n, err := im.ReadAt(p, off)
				wantN := min(20, int(im.Size()-off))
				if n != wantN || (n < 20) != errors.Is(err, io.EOF) || !bytes.Equal(p[:n], want[off:off+int64(n)]) {
					t.Fatalf("ReadAt(20, %d) = %d, %v", off, n, err)
				}
			}
			exts, err := im.Extents(0, im.Size())
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, e := range exts {
				total += e.Length
			}
			if total != im.Size() {
				t.Fatalf("extents cover %d bytes of %d", total, im.Size())
			}
			im.Close()
			for p, s := range before {
				if testutil.FileSHA256(t, p) != s {
					t.Fatalf("%s changed", p)
				}
			}
		})
	}
}

func TestBrokenSetsAreNamed(t *testing.T) {
	dir := t.TempDir()
	raw, _ := rawDisk(t, dir)
	segs := splitFile(t, raw, "-b", "1M", "-a", "3", "--numeric-suffixes=1")
	if len(segs) < 4 {
		t.Fatalf("want 4 segments, got %v", segs)
	}

	var fe *splitraw.FormatError
	if _, err := splitraw.Open(segs[1]); !errors.Is(err, splitraw.ErrNotFirst) || !errors.As(err, &fe) {
		t.Fatalf("opening segment 2: %v", err)
	}

	// A truncated middle segment.
	if err := os.Truncate(segs[1], 1000); err != nil {
		t.Fatal(err)
	}
	_, err := splitraw.Open(segs[0])
	if !errors.Is(err, splitraw.ErrTruncated) || !errors.As(err, &fe) || fe.Path != segs[1] {
		t.Fatalf("truncated segment 2: %v", err)
	}

	// A segment missing from the middle of the numbering.
	if err := os.Remove(segs[1]); err != nil {
		t.Fatal(err)
	}
	_, err = splitraw.Open(segs[0])
	if !errors.Is(err, splitraw.ErrMissingSegment) || !errors.As(err, &fe) || fe.Path != segs[1] {
		t.Fatalf("missing segment 2: %v", err)
	}
	t.Logf("missing: %v", err)
}

func TestSegmentShrinksWhileOpen(t *testing.T) {
	dir := t.TempDir()
	raw, _ := rawDisk(t, dir)
	segs := splitFile(t, raw, "-b", "1M", "-a", "2")
	im, err := splitraw.Open(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := os.Truncate(segs[1], 100); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	_, err = im.ReadAt(p, 1<<20+4000)
	var fe *splitraw.FormatError
	if !errors.Is(err, splitraw.ErrTruncated) || !errors.As(err, &fe) || fe.Path != segs[1] || fe.Offset != 4000 {
		t.Fatalf("read of a shrunk segment: %v", err)
	}
}

func TestPlainNamesAreNoSet(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"disk.img", "disk.001", "disk.vmdk", "x.E01"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if segs, err := splitraw.Segments(p); segs != nil || err != nil {
			t.Errorf("%s: %v, %v", n, segs, err)
		}
	}
}
