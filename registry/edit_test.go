package registry

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

var editTime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func newEditor(t testing.TB, h *Hive) *Editor {
	t.Helper()
	ed, err := NewEditor(h)
	if err != nil {
		t.Fatal(err)
	}
	ed.Now = func() time.Time { return editTime }
	return ed
}

// saveCheck saves, verifies that only Changed bytes differ from before,
// reopens the result and runs Check on it.
func saveCheck(t testing.TB, ed *Editor, before []byte) (*SaveResult, *Hive) {
	t.Helper()
	res, err := ed.Save()
	if err != nil {
		t.Fatal(err)
	}
	checkChanged(t, before, res)
	h, err := Open(res.Data)
	if err != nil {
		t.Fatalf("reopening the saved hive: %v", err)
	}
	if err := strictCheck(h); err != nil {
		t.Fatalf("Check after save: %v", err)
	}
	if d, why := h.Dirty(); d {
		t.Fatalf("saved hive is dirty: %s", why)
	}
	return res, h
}

// checkChanged asserts that every byte outside res.Changed equals before and
// that the ranges are sorted, disjoint and inside the file.
func checkChanged(t testing.TB, before []byte, res *SaveResult) {
	t.Helper()
	if res.Size != int64(len(res.Data)) {
		t.Fatalf("Size %d, len(Data) %d", res.Size, len(res.Data))
	}
	var pos int64
	for _, r := range res.Changed {
		if r.Off < pos || r.Len <= 0 || r.Off+r.Len > res.Size {
			t.Fatalf("bad changed range %+v after %d (size %d)", r, pos, res.Size)
		}
		if r.Off < int64(len(before)) && !bytes.Equal(before[pos:r.Off], res.Data[pos:r.Off]) {
			t.Fatalf("bytes between %d and %d differ but are outside Changed", pos, r.Off)
		}
		pos = r.Off + r.Len
	}
	if pos < int64(len(before)) && !bytes.Equal(before[pos:], res.Data[pos:len(before)]) {
		t.Fatalf("bytes after %d differ but are outside Changed", pos)
	}
}

func utf16z(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return append(b, 0, 0)
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// TestEditNewHive builds a small hive from New with every kind of value
// storage and key name, then has libhivex read it back.
func TestEditNewHive(t *testing.T) {
	for _, minor := range []uint32{3, 5} {
		t.Run(map[uint32]string{3: "v1.3", 5: "v1.5"}[minor], func(t *testing.T) {
			h, err := New(NewOptions{MinorVersion: minor, Time: editTime})
			if err != nil {
				t.Fatal(err)
			}
			if err := strictCheck(h); err != nil {
				t.Fatalf("Check of a new hive: %v", err)
			}
			ed := newEditor(t, h)
			for _, p := range []string{`Zeta\Deep\Deeper`, `alpha`, `Beta`, `Ĉapelo`, `Ärger`, `日本`, `alpha\_x`} {
				if err := ed.CreateKey(p); err != nil {
					t.Fatalf("CreateKey %q: %v", p, err)
				}
			}
			if err := ed.CreateKey(`ALPHA`); err != nil { // exists, other case
				t.Fatal(err)
			}
			big := pattern(40000, 3)
			vals := []oracleValue{
				{"", RegSZ, hex.EncodeToString(utf16z("default"))},
				{"Start", RegDword, "03000000"},
				{"Two", RegBinary, "abcd"},
				{"Empty", RegNone, ""},
				{"Mid", RegBinary, hex.EncodeToString(pattern(300, 1))},
				{"Big", RegBinary, hex.EncodeToString(big)},
				{"Edge", RegBinary, hex.EncodeToString(pattern(bigDataSegmentSize, 2))},
				{"Mehrfach", RegMultiSZ, hex.EncodeToString(append(utf16z("a"), utf16z("bc")...))},
				{"Größe", RegQword, "0102030405060708"},
				{"名前", RegExpandSZ, hex.EncodeToString(utf16z(`%SystemRoot%\x`))},
			}
			for _, v := range vals {
				d, _ := hex.DecodeString(v.D)
				if err := ed.SetValue(`Zeta\Deep`, v.N, v.T, d); err != nil {
					t.Fatalf("SetValue %q: %v", v.N, err)
				}
			}
			// Replace: inline → big, big → cell; delete one; delete a key.
			if err := ed.SetValue(`zeta\deep`, "start", RegDword, []byte{7, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
			vals[1].D = "07000000"
			if err := ed.SetValue(`Zeta\Deep`, "Big", RegSZ, utf16z("small now")); err != nil {
				t.Fatal(err)
			}
			vals[5] = oracleValue{"Big", RegSZ, hex.EncodeToString(utf16z("small now"))}
			if err := ed.DeleteValue(`Zeta\Deep`, "two"); err != nil {
				t.Fatal(err)
			}
			vals = append(vals[:2], vals[3:]...)
			if err := ed.SetValue(`Beta`, "x", RegDword, []byte{1, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
			if err := ed.DeleteKey(`Beta`); err != nil {
				t.Fatal(err)
			}
			if err := ed.DeleteKey(`Zeta\Deep`); !errors.Is(err, ErrHasSubkeys) {
				t.Fatalf("DeleteKey of a key with subkeys: %v, want ErrHasSubkeys", err)
			}
			if err := ed.DeleteKey(``); !errors.Is(err, ErrRootKey) {
				t.Fatalf("DeleteKey of the root: %v, want ErrRootKey", err)
			}
			if err := ed.DeleteValue(`Zeta\Deep`, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("DeleteValue of a missing value: %v", err)
			}
			if err := ed.SetValue(`Nope`, "x", RegDword, nil); !errors.Is(err, ErrNotFound) {
				t.Fatalf("SetValue on a missing key: %v", err)
			}
			if err := ed.CreateKey(string(bytes.Repeat([]byte("n"), 256))); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("CreateKey with a 256-character name: %v", err)
			}
			if err := ed.CreateKey(`Beta2\` + string(bytes.Repeat([]byte("n"), 256))); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("CreateKey with a bad last component: %v", err)
			}
			if _, err := ed.Hive().Lookup(`Beta2`); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a refused CreateKey created its parent: %v", err)
			}

			res, h2 := saveCheck(t, ed, h.Bytes())
			if seq := h2.BaseBlock().PrimarySequence; seq != 2 {
				t.Errorf("sequence %d, want 2", seq)
			}
			if !h2.BaseBlock().LastWritten.Equal(editTime) {
				t.Errorf("base block time %v", h2.BaseBlock().LastWritten)
			}
			if minor == 3 {
				// Without big data, 40000 bytes need one cell in a larger bin.
				if res.Size <= int64(len(h.Bytes())) {
					t.Errorf("v1.3 hive did not grow for a 40000-byte cell")
				}
			}
			want := []*wantKey{
				{path: ``, subkeys: []string{"alpha", "Zeta", "Ärger", "Ĉapelo", "日本"}},
				{path: `alpha`, subkeys: []string{"_x"}},
				{path: `Zeta`, subkeys: []string{"Deep"}},
				{path: `Zeta\Deep`, subkeys: []string{"Deeper"}, values: vals},
				{path: `Zeta\Deep\Deeper`},
				{path: `日本`},
				{path: `Ĉapelo`},
			}
			p := editTempFile(t, res.Data)
			var paths []string
			for _, w := range want {
				paths = append(paths, w.path)
			}
			paths = append(paths, `Beta`)
			compareOracle(t, hivexKeys(t, p, paths), want, []string{`Beta`})
			hivexshOpens(t, p)
			k, err := h2.Lookup(`Zeta\Deep`)
			if err != nil {
				t.Fatal(err)
			}
			if !k.LastWritten.Equal(editTime) {
				t.Errorf("edited key's time %v, want %v", k.LastWritten, editTime)
			}
		})
	}
}

// TestEditRefusesDirty: a dirty hive must be recovered before editing.
func TestEditRefusesDirty(t *testing.T) {
	h, err := New(NewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(h.Bytes())
	data[regfSecondarySequenceOffset]++
	h2, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewEditor(h2); !errors.Is(err, ErrDirtyHive) {
		t.Fatalf("NewEditor on a dirty hive: %v, want ErrDirtyHive", err)
	}
}

// TestEditRefusesInconsistent: a hive that opens but fails Check (here a
// wrong sk reference count) is not edited.
func TestEditRefusesInconsistent(t *testing.T) {
	h, err := New(NewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(h.Bytes())
	skOff := BaseBlockSize + hbinHeaderSize + cellSizeFieldSize + skReferenceCountOffset
	data[skOff] = 7
	h2, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	var ce *CheckError
	if _, err := NewEditor(h2); !errors.As(err, &ce) || !errors.Is(err, ErrFormat) {
		t.Fatalf("NewEditor on an inconsistent hive: %v, want a *CheckError", err)
	}
}
