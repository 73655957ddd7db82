package registry

import (
	"encoding/hex"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestEditRecoveredWin10 edits the Windows 10 1709 hive the way the boot fix
// does after log recovery (Start of a boot driver, removing its
// StartOverride, adding a key) and has libhivex read the result.
func TestEditRecoveredWin10(t *testing.T) {
	path := testutil.CorpusFile(t, "win10-1709-x64.SYSTEM")
	sum := testutil.FileSHA256(t, path)
	data, rep, err := RecoverFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	ed := newEditor(t, h)
	const svc = `ControlSet001\Services\storahci`
	if err := ed.SetValue(svc, "Start", RegDword, dword(0)); err != nil {
		t.Fatal(err)
	}
	if err := ed.DeleteValue(svc+`\StartOverride`, "0"); err != nil {
		t.Fatal(err)
	}
	if err := ed.CreateKey(svc + `\kvmify`); err != nil {
		t.Fatal(err)
	}
	if err := ed.SetValue(svc+`\kvmify`, "Note", RegSZ, utf16z("added")); err != nil {
		t.Fatal(err)
	}
	res, h2 := saveCheck(t, ed, data)
	if got, want := h2.BaseBlock().PrimarySequence, rep.Sequence+1; got != want {
		t.Errorf("sequence %d, want %d", got, want)
	}
	if res.Size != int64(len(data)) {
		t.Errorf("file length changed: %d → %d", len(data), res.Size)
	}

	want := func(p string) *wantKey {
		k, err := ourKey(h, p)
		if err != nil {
			t.Fatal(err)
		}
		return &wantKey{path: p, values: k.Values, subkeys: k.Subkeys}
	}
	ws, wo := want(svc), want(svc+`\StartOverride`)
	for i := range ws.values {
		if ws.values[i].N == "Start" {
			ws.values[i].T, ws.values[i].D = RegDword, "00000000"
		}
	}
	ws.subkeys = append(ws.subkeys, "kvmify")
	sortWindows(ws.subkeys)
	var kept []oracleValue
	for _, v := range wo.values {
		if v.N != "0" {
			kept = append(kept, v)
		}
	}
	wo.values = kept
	wn := &wantKey{path: svc + `\kvmify`, values: []oracleValue{{"Note", RegSZ, hex.EncodeToString(utf16z("added"))}}}
	p := editTempFile(t, res.Data)
	compareOracle(t, hivexKeys(t, p, []string{ws.path, wo.path, wn.path}), []*wantKey{ws, wo, wn}, nil)
	hivexshOpens(t, p)
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("the corpus hive changed")
	}
}
