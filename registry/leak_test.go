package registry

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// leakedCells returns the leaked cells' file offsets and raw bytes.
func leakedCells(t *testing.T, h *Hive) map[int64][]byte {
	t.Helper()
	r := h.CheckReport()
	if r.LeakTotal != len(r.Leaks) {
		t.Fatalf("%d leaks, %d listed", r.LeakTotal, len(r.Leaks))
	}
	out := map[int64][]byte{}
	for _, l := range r.Leaks {
		if !errors.Is(l, ErrLeakedCell) {
			t.Errorf("leak %v does not match ErrLeakedCell", l)
		}
		size := int64(-int32(le32(h.data, int(l.Offset))))
		out[l.Offset] = bytes.Clone(h.data[l.Offset : l.Offset+size])
	}
	return out
}

// editLeaves edits a hive holding leaked cells and requires the edit to be
// accepted, the result to check clean, and every leaked cell to be left
// exactly as it was (the editor never reuses a cell it cannot prove free).
func editLeaves(t *testing.T, hive []byte, wantLeaks int) {
	t.Helper()
	h, err := Open(hive)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatalf("Check called leaks corruption: %v", err)
	}
	leaks := leakedCells(t, h)
	if len(leaks) != wantLeaks {
		t.Fatalf("%d leaked cells, want %d", len(leaks), wantLeaks)
	}
	ed, err := NewEditor(h)
	if err != nil {
		t.Fatalf("NewEditor refused a hive whose only fault is leaked cells: %v", err)
	}
	for _, k := range []string{`kvmify-a`, `kvmify-a\b`, `kvmify-c`} {
		if err := ed.CreateKey(k); err != nil {
			t.Fatal(err)
		}
		if err := ed.SetValue(k, "v", RegBinary, bytes.Repeat([]byte{0xab}, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ed.DeleteKey(`kvmify-a\b`); err != nil {
		t.Fatal(err)
	}
	res, err := ed.Save()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Open(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Check(); err != nil {
		t.Fatalf("edited hive fails Check: %v", err)
	}
	after := leakedCells(t, out)
	if len(after) != len(leaks) {
		t.Errorf("%d leaked cells after the edit, %d before", len(after), len(leaks))
	}
	for off, b := range leaks {
		if !bytes.Equal(res.Data[off:off+int64(len(b))], b) {
			t.Errorf("leaked cell at 0x%x was changed by the edit", off)
		}
	}
	if _, err := out.Lookup(`kvmify-c`); err != nil {
		t.Error(err)
	}
}

// TestLeakedCellIsNotCorruption: an allocated cell nothing references is
// reported as a leak, not as corruption, and does not block editing.
func TestLeakedCellIsNotCorruption(t *testing.T) {
	b := minimalHive()
	put32(b, abs(minFree), uint32(0x100000000-(hbinAlignment-minFree)))
	h, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	r := h.CheckReport()
	if r.Total != 0 || r.LeakTotal != 1 || r.Leaks[0].Offset != abs(minFree) || r.LeakedBytes != hbinAlignment-minFree {
		t.Fatalf("report: %d problems, %d leaks (%v), %d bytes", r.Total, r.LeakTotal, r.Leaks, r.LeakedBytes)
	}
	editLeaves(t, b, 1)
}

// TestWindowsRecoveredHiveLeaks: Windows 10's own recovery of yarp's
// NewDirtyHive1 leaves 8 leaked cells; the hive checks clean and edits.
func TestWindowsRecoveredHiveLeaks(t *testing.T) {
	b, err := os.ReadFile(testutil.CorpusFile(t, "yarp-hives/NewDirtyHive1/RecoveredHive_Windows10"))
	if err != nil {
		t.Fatal(err)
	}
	editLeaves(t, b, 8)
}
