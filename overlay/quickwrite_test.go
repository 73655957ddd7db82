package overlay

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

// TestQuickWriteAt checks which writes QuickWriteAt takes (those that need
// no block read from the source) and that it writes nothing when it
// declines, against a model of the disk.
func TestQuickWriteAt(t *testing.T) {
	size := int64(8*testBS + 1000) // a partial last block
	_, src, data := newSource(t, size, 21)
	model := bytes.Clone(data)
	o := mustOpen(t, filepath.Join(t.TempDir(), "ov"), src, Options{})
	defer o.Close()
	if err := o.Zero(5*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	clear(model[5*testBS : 6*testBS])
	fill := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	cases := []struct {
		name string
		off  int64
		n    int
		done bool
	}{
		{"partial unchanged block", 100, 200, false},
		{"whole block", 2 * testBS, testBS, true},
		{"partial block now held", 2*testBS + 7, 300, true},
		{"two whole blocks", 3 * testBS, 2 * testBS, true},
		{"partial zeroed block", 5*testBS + 1, 10, true},
		{"tail into unchanged block", 6*testBS - 10, 20, false},
		{"head held, tail whole", 3*testBS + 10, testBS - 10, true},
		{"head unchanged", 1*testBS + 10, testBS - 10, false},
		{"partial last block to the end", 8 * testBS, 1000, false},
	}
	for i, c := range cases {
		p := fill(c.n, byte(0x40+i))
		before := o.Changes()
		done, err := o.QuickWriteAt(p, c.off)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if done != c.done {
			t.Fatalf("%s: done %v, want %v", c.name, done, c.done)
		}
		if !done {
			if after := o.Changes(); len(after) != len(before) {
				t.Fatalf("%s: declined, but the overlay changed: %v -> %v", c.name, before, after)
			}
			continue
		}
		copy(model[c.off:], p)
		checkContent(t, o, model, c.name)
	}
	checkContent(t, o, model, "end")
	for _, c := range []struct{ off, n int64 }{{-1, 1}, {size, 1}, {size - 1, 2}} {
		done, err := o.QuickWriteAt(make([]byte, c.n), c.off)
		if !done || !errors.Is(err, disk.ErrOutOfRange) {
			t.Fatalf("QuickWriteAt(%d bytes at %d) = %v, %v; want done with ErrOutOfRange", c.n, c.off, done, err)
		}
	}
	checkContent(t, o, model, "after refused writes")
}
