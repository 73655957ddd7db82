package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

func TestReadThrough(t *testing.T) {
	_, src, data := newSource(t, 10*testBS+12345, 1)
	o := mustOpen(t, filepath.Join(t.TempDir(), "ov"), src, Options{})
	defer o.Close()
	checkContent(t, o, data, "fresh overlay")
	p := make([]byte, 3*testBS)
	n, err := o.ReadAt(p, int64(len(data))-testBS)
	if n != testBS || err != io.EOF {
		t.Fatalf("read across the end = %d, %v; want %d, io.EOF", n, err, testBS)
	}
	if !bytes.Equal(p[:n], data[len(data)-testBS:]) {
		t.Fatal("read across the end returned wrong bytes")
	}
	if ext := o.Changes(); len(ext) != 0 {
		t.Fatalf("fresh overlay has extents %v", ext)
	}
}

func TestPartialWrites(t *testing.T) {
	size := int64(10*testBS + 12345)
	_, src, data := newSource(t, size, 2)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	model := bytes.Clone(data)
	writes := []struct {
		off int64
		n   int
	}{
		{testBS - 50, 100},                // straddles blocks 0 and 1
		{3 * testBS, testBS},              // exactly one block
		{3*testBS + 7, 13},                // in place into a block written this session
		{5*testBS + 1, 3 * testBS},        // unaligned, three blocks
		{size - 100, 100},                 // the end of the short last block
		{10 * testBS, int(size % testBS)}, // the whole short last block
	}
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(0xa0 + i)}, w.n)
		if n, err := o.WriteAt(p, w.off); n != w.n || err != nil {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", w.n, w.off, n, err)
		}
		copy(model[w.off:], p)
		checkContent(t, o, model, "after write")
	}
	if n, err := o.WriteAt(make([]byte, 2), size-1); n != 0 || !errors.Is(err, disk.ErrOutOfRange) {
		t.Fatalf("write past the end = %d, %v; want 0, ErrOutOfRange", n, err)
	}
	checkContent(t, o, model, "after the refused write")
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	checkContent(t, o, model, "after reopen")
}

func TestTrimZeroNeverReadThrough(t *testing.T) {
	size := int64(8 * testBS)
	_, src, data := newSource(t, size, 3)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	model := bytes.Clone(data)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	zero := func(off, n int64) { clear(model[off : off+n]) }
	must(o.Trim(testBS, testBS)) // whole block of source data
	zero(testBS, testBS)
	must(o.Zero(2*testBS+100, 2*testBS)) // partial, whole, partial
	zero(2*testBS+100, 2*testBS)
	_, err := o.WriteAt(bytes.Repeat([]byte{0x55}, testBS), 6*testBS)
	must(err)
	copy(model[6*testBS:], bytes.Repeat([]byte{0x55}, testBS))
	must(o.Trim(6*testBS+10, 20)) // inside a block written this session
	zero(6*testBS+10, 20)
	checkContent(t, o, model, "after trims")
	if err := o.Zero(size-10, 11); !errors.Is(err, disk.ErrOutOfRange) {
		t.Fatalf("zero past the end: %v, want ErrOutOfRange", err)
	}
	want := []Extent{
		{Offset: testBS, Length: testBS, Zero: true},
		{Offset: 2 * testBS, Length: testBS, Zero: false},
		{Offset: 3 * testBS, Length: testBS, Zero: true},
		{Offset: 4 * testBS, Length: testBS, Zero: false},
		{Offset: 6 * testBS, Length: testBS, Zero: false},
	}
	if got := o.Changes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Extents = %v, want %v", got, want)
	}
	must(o.Close())
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	checkContent(t, o, model, "after reopen")
	if got := o.Changes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Extents after reopen = %v, want %v", got, want)
	}
}

func TestExtentsMerge(t *testing.T) {
	size := int64(20*testBS + 4096)
	_, src, _ := newSource(t, size, 4)
	o := mustOpen(t, "", src, Options{Ephemeral: true})
	defer o.Close()
	if _, err := o.WriteAt(make([]byte, 3*testBS), 2*testBS); err != nil { // blocks 2..4
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte{1}, 5*testBS+9); err != nil { // block 5, adjacent
		t.Fatal(err)
	}
	if err := o.Zero(6*testBS, 2*testBS); err != nil { // blocks 6..7 zero
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte{1}, 9*testBS); err != nil { // block 9, not adjacent
		t.Fatal(err)
	}
	if err := o.Trim(20*testBS, 4096); err != nil { // the short last block
		t.Fatal(err)
	}
	want := []Extent{
		{Offset: 2 * testBS, Length: 4 * testBS},
		{Offset: 6 * testBS, Length: 2 * testBS, Zero: true},
		{Offset: 9 * testBS, Length: testBS},
		{Offset: 20 * testBS, Length: 4096, Zero: true},
	}
	if got := o.Changes(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Extents = %v, want %v", got, want)
	}
}

func TestSourceMismatchRefused(t *testing.T) {
	size := int64(4 * testBS)
	_, srcA, _ := newSource(t, size, 5)
	pathB, srcB, _ := newSource(t, size, 6)
	_, srcC, _ := newSource(t, size+512, 5)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, srcA, Options{})
	if _, err := o.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for _, src := range []*disk.Source{srcB, srcC} {
		_, err := Open(path, src, Options{})
		if !errors.Is(err, ErrSourceMismatch) {
			t.Fatalf("Open against %s: %v, want ErrSourceMismatch", src.Name(), err)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), src.Name()) {
			t.Errorf("error does not name both files: %v", err)
		}
	}
	if !strings.Contains(func() string { _, err := Open(path, srcB, Options{}); return err.Error() }(), pathB) {
		t.Error("error does not name the source")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused open modified the overlay file")
	}
	o = mustOpen(t, path, srcA, Options{})
	o.Close()
}

func TestOverlayIsSourceRefused(t *testing.T) {
	srcPath, src, _ := newSource(t, 4*testBS, 7)
	if _, err := Open(srcPath, src, Options{SourcePath: srcPath}); !errors.Is(err, ErrSameAsSource) {
		t.Fatalf("Open(source path): %v, want ErrSameAsSource", err)
	}
	// Another name for the same file, found through the base's handle.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(srcPath, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, src, Options{}); !errors.Is(err, ErrSameAsSource) {
		t.Fatalf("Open(symlink to source): %v, want ErrSameAsSource", err)
	}
}

func TestFlushedSurvivesUnflushedLost(t *testing.T) {
	size := int64(6 * testBS)
	_, src, data := newSource(t, size, 8)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	flushed := bytes.Clone(data)
	w := func(b byte, off int64, n int) {
		p := bytes.Repeat([]byte{b}, n)
		if _, err := o.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	w(1, 0, 2*testBS)
	w(2, 3*testBS+5, 10)
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	copy(flushed, bytes.Repeat([]byte{1}, 2*testBS))
	copy(flushed[3*testBS+5:], bytes.Repeat([]byte{2}, 10))
	// Rewrite flushed blocks and trim another, then "crash".
	w(9, 0, testBS)
	w(9, 3*testBS, 3)
	if err := o.Trim(4*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	abandon(o)
	o = mustOpen(t, path, src, Options{})
	checkContent(t, o, flushed, "after crash")
	abandon(o)
}

func TestMetaSurvivesReopen(t *testing.T) {
	_, src, _ := newSource(t, 2*testBS, 9)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	plan := []byte(`{"patch":"applied"}`)
	if err := o.SetMeta("bootfix", plan); err != nil {
		t.Fatal(err)
	}
	if err := o.SetMeta("empty", nil); err != nil {
		t.Fatal(err)
	}
	if err := o.SetMeta("", []byte("x")); err == nil {
		t.Fatal("SetMeta accepted an empty key")
	}
	abandon(o) // SetMeta commits by itself
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	if v, ok := o.Meta("bootfix"); !ok || !bytes.Equal(v, plan) {
		t.Fatalf("Meta(bootfix) = %q, %v", v, ok)
	}
	if v, ok := o.Meta("empty"); !ok || len(v) != 0 {
		t.Fatalf("Meta(empty) = %q, %v", v, ok)
	}
	if _, ok := o.Meta("missing"); ok {
		t.Fatal("Meta(missing) found")
	}
	in, err := ReadInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.MetaKeys, []string{"bootfix", "empty"}) {
		t.Fatalf("ReadInfo MetaKeys = %v", in.MetaKeys)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	_, src, _ := newSource(t, 2*testBS, 10)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	defer o.Close()
	if _, err := Open(path, src, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestEphemeral(t *testing.T) {
	_, src, data := newSource(t, 3*testBS, 11)
	o := mustOpen(t, "ignored", src, Options{Ephemeral: true})
	if _, err := os.Stat(o.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ephemeral overlay file %s is visible: %v", o.Path(), err)
	}
	if _, err := os.Stat("ignored"); err == nil {
		t.Fatal("ephemeral overlay created its path")
	}
	model := bytes.Clone(data)
	if _, err := o.WriteAt([]byte("hello"), 100); err != nil {
		t.Fatal(err)
	}
	copy(model[100:], "hello")
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	checkContent(t, o, model, "ephemeral")
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte("x"), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
}

func TestReadInfoMatchesOverlay(t *testing.T) {
	_, src, _ := newSource(t, 16*testBS, 12)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	if _, err := o.WriteAt(make([]byte, 100), 3*testBS-50); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(10*testBS, 2*testBS); err != nil {
		t.Fatal(err)
	}
	want := o.Changes()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	in, err := ReadInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if in.SourceSize != 16*testBS || in.BlockSize != testBS || len(in.SourceSampleFingerprint) != 64 || in.SampledBytes != 16*testBS {
		t.Fatalf("ReadInfo header = %+v", in)
	}
	if !reflect.DeepEqual(in.Extents, want) {
		t.Fatalf("ReadInfo extents %v, overlay says %v", in.Extents, want)
	}
}

// A damaged copy of the newest root is survived by its twin; a root whose
// both copies are damaged is refused with a CommitError naming the
// generation at stake, until the older generation is accepted explicitly.
func TestRootDamage(t *testing.T) {
	_, src, data := newSource(t, 4*testBS, 13)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	first := bytes.Clone(data)
	if _, err := o.WriteAt(bytes.Repeat([]byte{1}, testBS), 0); err != nil {
		t.Fatal(err)
	}
	copy(first, bytes.Repeat([]byte{1}, testBS))
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	older := o.gen
	second := bytes.Clone(first)
	if _, err := o.WriteAt(bytes.Repeat([]byte{2}, testBS), 0); err != nil {
		t.Fatal(err)
	}
	copy(second, bytes.Repeat([]byte{2}, testBS))
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	gen := o.gen
	abandon(o)
	damage := func(off int64) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	damage(rootOffset(gen) + rootGenerationOff)
	o = mustOpen(t, path, src, Options{})
	checkContent(t, o, second, "one copy of the newest root damaged")
	abandon(o)
	in, err := ReadInfo(path)
	if err != nil || len(in.Warnings) != 1 || !strings.Contains(in.Warnings[0], "one copy is damaged") {
		t.Fatalf("ReadInfo warnings %v, %v; want one naming the damaged copy", in, err)
	}

	damage(rootOffset(gen) + rootCopyStride + rootMapCRCOff)
	before, _ := os.ReadFile(path)
	_, err = Open(path, src, Options{})
	var ce *CommitError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCommitDamaged) || ce.Lost != gen || ce.Fallback != older {
		t.Fatalf("Open with both copies of the newest root damaged: %v; want a CommitError losing %d, falling back to %d", err, gen, older)
	}
	for _, want := range []string{path, fmt.Sprintf("generation %d", gen), fmt.Sprintf("kvmify overlay rollback %s --to-generation %d", path, older)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not mention %q", err, want)
		}
	}
	if _, err := ReadInfo(path); !errors.Is(err, ErrCommitDamaged) {
		t.Errorf("ReadInfo: %v, want ErrCommitDamaged", err)
	}
	if _, err := Open(path, src, Options{AcceptGeneration: gen + 5}); err == nil {
		t.Fatal("Open accepted a generation no root holds")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused open modified the overlay file")
	}
	o = mustOpen(t, path, src, Options{AcceptGeneration: older})
	checkContent(t, o, first, "older generation accepted")
	if o.gen != older+2 {
		t.Errorf("generation after acceptance %d, want %d (two repairing commits)", o.gen, older+2)
	}
	abandon(o)
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	checkContent(t, o, first, "reopened after acceptance")
}

func TestCorruptFilesRefused(t *testing.T) {
	_, src, _ := newSource(t, 4*testBS, 14)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	o := mustOpen(t, good, src, Options{})
	if _, err := o.WriteAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	o.Close()
	img, _ := os.ReadFile(good)
	in, _ := ReadInfo(good)
	recOff := int64(0)
	{
		f, _ := os.Open(good)
		st, err := load(f, int64(len(img)), loadOptions{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		recOff = int64(st.root.MapOffset)
	}
	cases := []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"empty", func(b []byte) []byte { return nil }, ErrNotOverlay},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrNotOverlay},
		{"header bit flip", func(b []byte) []byte { b[hdrSourceSizeOff] ^= 1; return b }, ErrChecksum},
		{"truncated", func(b []byte) []byte { return b[:dataOffset/2] }, ErrCorrupt},
		{"map record bit flip", func(b []byte) []byte { b[recOff+mapFixedSize] ^= 1; return b }, ErrChecksum},
		{"map record cut", func(b []byte) []byte { return b[:recOff+4] }, ErrCorrupt},
	}
	for _, c := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(p, c.mod(bytes.Clone(img)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadInfo(p)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: ReadInfo error %v, want %v", c.name, err, c.want)
		}
		var fe *FormatError
		if c.want != nil && !errors.As(err, &fe) {
			t.Errorf("%s: error %v is not a FormatError", c.name, err)
		}
		if _, err := Open(p, src, Options{}); !errors.Is(err, c.want) {
			t.Errorf("%s: Open error %v, want %v", c.name, err, c.want)
		}
	}
	if in == nil || len(in.Extents) != 1 {
		t.Fatalf("good file info %+v", in)
	}
}

// Many goroutines write distinct blocks and read the whole disk while
// flushes run; run with -race.
func TestConcurrentAccess(t *testing.T) {
	const blocks = 32
	_, src, data := newSource(t, blocks*testBS, 15)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, testBS)
			for round := range 20 {
				v := int64(g*4 + round%4)
				fillRandom(buf, uint64(g*1000+round))
				off := v*testBS + int64(round%3)*100
				n := testBS - 300
				if _, err := o.WriteAt(buf[:n], off); err != nil {
					t.Error(err)
					return
				}
				if round%5 == 0 {
					if err := o.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
				got := make([]byte, n)
				if _, err := o.ReadAt(got, off); err != nil || !bytes.Equal(got, buf[:n]) {
					t.Errorf("goroutine %d round %d: read back differs (%v)", g, round, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	before := make([]byte, len(data))
	if _, err := o.ReadAt(before, 0); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	checkContent(t, o, before, "after reopen")
	in := o.Changes()
	if len(in) != 1 || in[0].Offset != 0 || in[0].Length != blocks*testBS {
		t.Fatalf("extents after concurrent writes: %v", in)
	}
}

// A Flush from one client commits writes another client completed before it
// (what MultiConnSafe promises).
func TestFlushCoversOtherWriters(t *testing.T) {
	_, src, data := newSource(t, 8*testBS, 16)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	if !o.MultiConnSafe() {
		t.Fatal("overlay does not claim multi-conn safety")
	}
	want := bytes.Clone(data)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte(g + 1)}, testBS+100)
			if _, err := o.WriteAt(p, int64(g)*2*testBS); err != nil {
				t.Error(err)
			}
		}()
		copy(want[g*2*testBS:], bytes.Repeat([]byte{byte(g + 1)}, testBS+100))
	}
	wg.Wait()
	done := make(chan error)
	go func() { done <- o.Flush() }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	abandon(o)
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	checkContent(t, o, want, "after another goroutine's flush and a crash")
}

// ReadInfo works on an overlay that is being written and flushed.
func TestReadInfoWhileCommitting(t *testing.T) {
	_, src, _ := newSource(t, 64*testBS, 17)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	defer o.Close()
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		p := make([]byte, testBS/2)
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := o.WriteAt(p, int64(i%64)*testBS+int64(i%3)*100); err != nil {
				done <- err
				return
			}
			if err := o.Flush(); err != nil {
				done <- err
				return
			}
		}
	}()
	for range 200 {
		if _, err := ReadInfo(path); err != nil {
			close(stop)
			<-done
			t.Fatalf("ReadInfo during commits: %v", err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
