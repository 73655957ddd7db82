package registry

import (
	"encoding/binary"
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

// TestDeleteKeyFreesOwnSK gives a key a security cell of its own (linked
// into the ring by hand), deletes the key and requires the sk to leave the
// ring and be freed (Check verifies the ring, reference counts and that no
// allocated cell is unreferenced).
func TestDeleteKeyFreesOwnSK(t *testing.T) {
	h, err := New(NewOptions{Time: editTime})
	if err != nil {
		t.Fatal(err)
	}
	ed := newEditor(t, h)
	for _, p := range []string{"a", "own", "z"} {
		if err := ed.CreateKey(p); err != nil {
			t.Fatal(err)
		}
	}
	k, err := ed.Hive().Lookup("own")
	if err != nil {
		t.Fatal(err)
	}
	rootSK := k.rec.security
	sd := defaultSecurityDescriptor()
	skOff, err := ed.alloc.alloc(skFixedSize + len(sd))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	b := ed.cellBytes(skOff)
	copy(b, sigSK[:])
	le.PutUint32(b[skFlinkOffset:], rootSK)
	le.PutUint32(b[skBlinkOffset:], rootSK)
	le.PutUint32(b[skReferenceCountOffset:], 1)
	le.PutUint32(b[skDescriptorSizeOffset:], uint32(len(sd)))
	copy(b[skDescriptorOffset:], sd)
	rb, err := ed.h.record(rootSK, sigSK, skFixedSize)
	if err != nil {
		t.Fatal(err)
	}
	le.PutUint32(rb[skFlinkOffset:], skOff)
	le.PutUint32(rb[skBlinkOffset:], skOff)
	le.PutUint32(rb[skReferenceCountOffset:], le.Uint32(rb[skReferenceCountOffset:])-1)
	nb, err := ed.nkData(k.off)
	if err != nil {
		t.Fatal(err)
	}
	le.PutUint32(nb[nkSecurityOffset:], skOff)
	if err := strictCheck(ed.Hive()); err != nil {
		t.Fatalf("hand-linked sk: %v", err)
	}

	if err := ed.DeleteKey("own"); err != nil {
		t.Fatal(err)
	}
	_, h2 := saveCheck(t, ed, h.Bytes())
	if _, allocated, err := h2.cellHeader(skOff, "sk"); err == nil && allocated {
		t.Fatalf("sk cell 0x%x of the deleted key is still allocated", abs(skOff))
	}
}
