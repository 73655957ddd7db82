package overlay

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// multiCommitOverlay builds an overlay with several commits (new blocks,
// copy-on-write of committed ones, a zeroed block, metadata) and returns
// its path and the disk content every flush left.
func multiCommitOverlay(t *testing.T, size int64, seed uint64) (string, *Overlay, []byte) {
	t.Helper()
	_, src, data := newSource(t, size, seed)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	model := bytes.Clone(data)
	write := func(off int64, n int, s uint64) {
		p := make([]byte, n)
		fillRandom(p, s)
		if _, err := o.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	flush := func() {
		if err := o.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 4*testBS, 1)
	flush()
	write(testBS+300, 5000, 2)
	if err := o.Zero(5*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	clear(model[5*testBS : 6*testBS])
	flush()
	if err := o.SetMeta("bootfix", []byte(`{"applied":true}`)); err != nil {
		t.Fatal(err)
	}
	write(10*testBS+17, 100, 3)
	write(0, testBS, 4)
	flush()
	return path, o, model
}

// TestMetadataByteFlips flips every byte of the header, of both commit
// root locations and of the newest map record in turn (all eight bits of
// even bytes, one bit of odd ones), reopening each time: every open either refuses
// with a message or serves every flushed write intact; there is no silent
// rollback. Root flips are all survived (each root has two copies).
func TestMetadataByteFlips(t *testing.T) {
	size := int64(12 * testBS)
	path, o, model := multiCommitOverlay(t, size, 30)
	src := o.base
	gen := o.gen
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := load(bytes.NewReader(orig), int64(len(orig)), loadOptions{})
	if err != nil || st.root.Generation != gen {
		t.Fatalf("load: %v (generation %v, want %d)", err, st, gen)
	}
	regions := []struct {
		name   string
		off, n int64
	}{
		{"header", headerOffset, headerSize},
		{"root A", rootAOffset, rootRegionSize},
		{"root B", rootBOffset, rootRegionSize},
		{"map record", int64(st.root.MapOffset), int64(st.root.MapLength)},
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, size)
	for _, r := range regions {
		refused, served := 0, 0
		step := int64(1)
		if testing.Short() {
			step = 3
		}
		for pos := r.off; pos < r.off+r.n; pos += step {
			// All eight bits of even bytes, one bit of odd ones.
			mask := byte(0xff)
			if pos%2 == 1 {
				mask = 1 << (pos / 2 % 8)
			}
			{
				if _, err := f.WriteAt([]byte{orig[pos] ^ mask}, pos); err != nil {
					t.Fatal(err)
				}
				o, err := Open(path, src, Options{})
				if err == nil {
					_, err = o.ReadAt(got, 0)
					if err == nil && !bytes.Equal(got, model) {
						t.Fatalf("%s byte %d ^ %#x: opened and served content that differs from the last flush", r.name, pos, mask)
					}
					o.Discard()
					if err == nil {
						served++
					}
				}
				if err != nil {
					var fe *FormatError
					var ce *CommitError
					var de *DataError
					if !errors.As(err, &fe) && !errors.As(err, &ce) && !errors.As(err, &de) || err.Error() == "" {
						t.Fatalf("%s byte %d ^ %#x: refusal without a located reason: %v", r.name, pos, mask, err)
					}
					refused++
				}
				if _, err := f.WriteAt(orig[pos:pos+1], pos); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Logf("%s: %d flips refused with a message, %d served every flushed write", r.name, refused, served)
		if r.name[:4] == "root" && refused != 0 {
			t.Errorf("%s: %d single-byte flips refused; the twin copy should survive each", r.name, refused)
		}
		if r.name == "map record" && served != 0 {
			t.Errorf("%s: %d flips went unnoticed", r.name, served)
		}
	}
	now, _ := os.ReadFile(path)
	if !bytes.Equal(now, orig) {
		t.Fatal("an open of a damaged overlay wrote to it")
	}
}

// TestFallbackNeverServesReusedSlot is issue 15's case made deterministic:
// block 0 is rewritten and committed (its old slot freed), block 10 is then
// written into that slot, the process dies, and the newest root is
// destroyed. Falling back to the older commit would serve block 10's data
// as block 0: Open refuses, and accepting the older generation is refused
// too, by its checksums, with the file left as it was.
func TestFallbackNeverServesReusedSlot(t *testing.T) {
	_, src, _ := newSource(t, 16*testBS, 31)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	w := func(v int64, b byte) {
		if _, err := o.WriteAt(bytes.Repeat([]byte{b}, testBS), v*testBS); err != nil {
			t.Fatal(err)
		}
	}
	for v := range int64(10) {
		w(v, byte(v+1))
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	older := o.gen
	old0 := slotOf(t, o, 0)
	w(0, 0xa0)
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	newest := o.gen
	w(10, 0xbb) // not flushed: the process dies after the write
	if s := slotOf(t, o, 10); s != old0 {
		t.Fatalf("block 10 went to slot %d, not block 0's freed slot %d; the test needs the reuse", s, old0)
	}
	abandon(o)
	wreck(t, path, rootOffset(newest))
	before, _ := os.ReadFile(path)
	_, err := Open(path, src, Options{})
	var ce *CommitError
	if !errors.As(err, &ce) || ce.Lost != newest || ce.Fallback != older {
		t.Fatalf("Open after the newest root was destroyed: %v; want a CommitError losing %d, naming %d", err, newest, older)
	}
	for _, accept := range []func() error{
		func() error { _, err := Rollback(path, older); return err },
		func() error { _, err := Open(path, src, Options{AcceptGeneration: older}); return err },
	} {
		err := accept()
		var de *DataError
		if !errors.As(err, &de) || de.Block != 0 || de.Slot != old0 {
			t.Fatalf("accepting generation %d whose block 0 slot now holds block 10: %v; want a DataError for block 0 in slot %d", older, err, old0)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("a refused rollback changed the overlay file")
	}
}

// wreck overwrites both copies of the root at off with garbage.
func wreck(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte{0x5a}, rootRegionSize)
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
}
