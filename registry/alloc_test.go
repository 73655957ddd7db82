package registry

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
)

// TestAllocCoalesce: after deleting everything it created, the editor's free
// space is again one cell per bin (the first bin's original free cell), so
// frees merge with both neighbours.
func TestAllocCoalesce(t *testing.T) {
	h, err := New(NewOptions{Time: editTime})
	if err != nil {
		t.Fatal(err)
	}
	ed := newEditor(t, h)
	want := slices.Clone(ed.alloc.free)
	if len(want) != 1 {
		t.Fatalf("a new hive has %d free cells, want 1", len(want))
	}
	var keys []string
	for i := range 12 {
		k := fmt.Sprintf("k%02d", (i*5)%12)
		keys = append(keys, k)
		if err := ed.CreateKey(k); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if err := ed.SetValue(k, fmt.Sprint("v", j), RegBinary, pattern(5+40*j, byte(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(ed.alloc.free) == 0 || ed.alloc.free[0] == want[0] {
		t.Fatalf("edits allocated nothing from the free cell: %v", ed.alloc.free)
	}
	// Delete in an order unlike the allocation order, so merges happen on
	// both sides.
	for i, k := range keys {
		if i%2 == 0 {
			if err := ed.DeleteValue(k, "v1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range slices.Backward(keys) {
		if err := ed.DeleteKey(k); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = saveCheck(t, ed, h.Bytes())
	// Bins appended on the way end up as one free cell each.
	for _, b := range ed.bins[1:] {
		want = append(want, freeCell{b.cellsStart(), b.size - hbinHeaderSize})
	}
	if got := ed.alloc.free; !slices.Equal(got, want) {
		t.Fatalf("free cells after deleting everything: %v, want %v", got, want)
	}
}

// TestAllocSlackThenGrow: a cell too big for the existing bins goes into a
// new bin in the file's slack (length unchanged), and only when the slack is
// used up does the file grow.
func TestAllocSlackThenGrow(t *testing.T) {
	h, err := New(NewOptions{Time: editTime})
	if err != nil {
		t.Fatal(err)
	}
	const slack = 2 * hbinAlignment
	data := append(bytes.Clone(h.Bytes()), bytes.Repeat([]byte{0xA5}, slack)...)
	if h, err = Open(data); err != nil {
		t.Fatal(err)
	}
	ed := newEditor(t, h)
	if err := ed.CreateKey("k"); err != nil {
		t.Fatal(err)
	}
	first := pattern(6000, 1) // needs an 8 KiB bin: exactly the slack
	if err := ed.SetValue("k", "first", RegBinary, first); err != nil {
		t.Fatal(err)
	}
	res, h2 := saveCheck(t, ed, data)
	if res.Size != int64(len(data)) {
		t.Fatalf("file grew from %d to %d though the slack could hold the bin", len(data), res.Size)
	}
	if got := h2.BaseBlock().HiveBinsDataSize; got != hbinAlignment+slack {
		t.Fatalf("hive bins data size %d, want %d", got, hbinAlignment+slack)
	}

	ed = newEditor(t, h2)
	second := pattern(4000, 2) // fits neither bin's free space, but one new 4 KiB bin
	if err := ed.SetValue("k", "second", RegBinary, second); err != nil {
		t.Fatal(err)
	}
	res2, _ := saveCheck(t, ed, res.Data)
	if res2.Size != int64(len(data))+hbinAlignment {
		t.Fatalf("file is %d bytes, want one more bin (%d)", res2.Size, len(data)+hbinAlignment)
	}
	if last := res2.Changed[len(res2.Changed)-1]; last.Off+last.Len != res2.Size || last.Off > int64(len(data)) {
		t.Fatalf("growth not reported as changed: last range %+v", last)
	}
	p := editTempFile(t, res2.Data)
	compareOracle(t, hivexKeys(t, p, []string{"k"}), []*wantKey{{path: "k", values: []oracleValue{
		{"first", RegBinary, hex.EncodeToString(first)},
		{"second", RegBinary, hex.EncodeToString(second)},
	}}}, nil)
	hivexshOpens(t, p)
}

// TestDiffRanges pins how changed bytes become ranges: runs closer than
// diffMergeGap merge, farther ones stay apart, growth is one final range.
func TestDiffRanges(t *testing.T) {
	a := make([]byte, 3*diffPage)
	b := append(bytes.Clone(a), 1, 2, 3)
	b[10], b[11] = 1, 1
	b[10+2+diffMergeGap] = 1 // gap of exactly diffMergeGap: merged
	b[100] = 1               // far: separate
	b[diffPage-1], b[diffPage] = 1, 1
	got := diffRanges(a, b)
	want := []Range{{10, 2 + diffMergeGap + 1}, {100, 1}, {diffPage - 1, 2}, {3 * diffPage, 3}}
	if !slices.Equal(got, want) {
		t.Fatalf("diffRanges = %v, want %v", got, want)
	}
	if got := diffRanges(a, bytes.Clone(a)); len(got) != 0 {
		t.Fatalf("no change gave %v", got)
	}
}
