package registry

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestEditRealRILists inserts keys into the ri-indexed subkey lists Windows
// wrote (XP's MUILanguages\RCV2, Windows 7's CriticalDeviceDatabase) at the
// start, between two leaves and at the end, then deletes them again; the
// lists must stay sorted with correct hashes and libhivex must read them.
func TestEditRealRILists(t *testing.T) {
	for _, c := range []struct{ hive, key string }{
		{"xp-sp3-x86.SYSTEM", `ControlSet001\Control\Nls\MUILanguages\RCV2`},
		{"win7-sp1-x64.SYSTEM", `ControlSet001\Control\CriticalDeviceDatabase`},
	} {
		t.Run(c.hive, func(t *testing.T) {
			data, err := os.ReadFile(testutil.CorpusFile(t, c.hive))
			if err != nil {
				t.Fatal(err)
			}
			h, err := Open(data)
			if err != nil {
				t.Fatal(err)
			}
			k, err := h.Lookup(c.key)
			if err != nil {
				t.Fatal(err)
			}
			orig := hivexKeys(t, editTempFile(t, data), []string{c.key})[c.key].Subkeys
			ed := newEditor(t, h)
			leaves, ri, err := ed.subkeyLeaves(k.rec.subkeyList)
			if err != nil || !ri || len(leaves) < 2 {
				t.Fatalf("%s is not an ri list of several leaves (ri %v, %d leaves, %v)", c.key, ri, len(leaves), err)
			}
			last0, err := h.key(leaves[0].entries[len(leaves[0].entries)-1].off, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			added := []string{"!!first", last0.Name + "~between", "~~~last", "pci#ven_8086&dev_7010&kvmify"}
			for _, n := range added {
				if err := ed.CreateKey(c.key + `\` + n); err != nil {
					t.Fatal(err)
				}
			}
			res, h2 := saveCheck(t, ed, data)
			want := append(slices.Clone(orig), added...)
			sortWindows(want)
			got := hivexKeys(t, editTempFile(t, res.Data), []string{c.key})[c.key].Subkeys
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("hivex subkeys after inserting: %d names, want %d (first %q, last %q)", len(got), len(want), got[0], got[len(got)-1])
			}
			if res.Size != int64(len(data)) {
				t.Errorf("file length changed: %d → %d", len(data), res.Size)
			}

			ed = newEditor(t, h2)
			for _, n := range added {
				if err := ed.DeleteKey(c.key + `\` + n); err != nil {
					t.Fatal(err)
				}
			}
			res2, _ := saveCheck(t, ed, res.Data)
			got = hivexKeys(t, editTempFile(t, res2.Data), []string{c.key})[c.key].Subkeys
			if !slices.Equal(got, orig) {
				t.Fatalf("after deleting the added keys hivex lists %d subkeys, want the original %d", len(got), len(orig))
			}
		})
	}
}
