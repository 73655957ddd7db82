package windows

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/registry"
)

// hivexReadBack checks with python3-hivex (read-only) that a patched hive
// holds every set value of the changes and none of the deleted ones.
func hivexReadBack(t *testing.T, hive []byte, changes []bootfix.Change) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "SYSTEM")
	if err := os.WriteFile(path, hive, 0o600); err != nil {
		t.Fatal(err)
	}
	type cj struct {
		Key   string     `json:"key"`
		Value string     `json:"value"`
		Op    bootfix.Op `json:"op"`
	}
	var in []cj
	for _, c := range changes {
		in = append(in, cj{c.Key, c.Value, c.Op})
	}
	got, err := testutil.HivexApply(t, path, in, true)
	if err != nil {
		t.Fatalf("hivex read-back: %v", err)
	}
	for i, c := range changes {
		switch {
		case c.Op == bootfix.OpDelete && got[i] != nil:
			t.Errorf("hivex still reads deleted %s\\%s", c.Key, c.Value)
		case c.Op == bootfix.OpSet && (got[i] == nil || got[i].Type != c.New.Type || got[i].Data != hex.EncodeToString(c.New.Data)):
			t.Errorf("hivex reads %s\\%s as %+v, want type %d data %x", c.Key, c.Value, got[i], c.New.Type, c.New.Data)
		}
	}
}

// TestRegistryEditorCorpus applies each corpus hive's boot fix with
// kvmify's own registry editor and checks the result with Check, with hivex
// reading every changed value, with a boots prediction in every patched
// control set, and with a second pass that finds nothing left to do.
func TestRegistryEditorCorpus(t *testing.T) {
	for _, tc := range []struct {
		file   string
		target bootfix.Target
	}{
		{"xp-sp3-x86.SYSTEM", bootfix.TargetIDE},
		{"win7-sp1-x64.SYSTEM", bootfix.TargetAHCI},
		{"win10-1709-x64.SYSTEM", bootfix.TargetAHCI},
		{"win10-1709-x64.SYSTEM", bootfix.TargetIDE},
	} {
		t.Run(tc.file+"/"+string(tc.target), func(t *testing.T) {
			data, rep, err := registry.RecoverFile(testutil.CorpusFile(t, tc.file))
			if err != nil || !rep.Clean {
				t.Fatalf("recover: %v %v", err, rep)
			}
			h, err := registry.Open(data)
			if err != nil {
				t.Fatal(err)
			}
			v, err := bootfix.FromSystem(bootfix.FromRegistry(h))
			if err != nil {
				t.Fatal(err)
			}
			facts := bootfix.Facts{Version: v, FileExists: func(string) bool { return true }}
			cs, err := bootfix.ComputeChanges(bootfix.FromRegistry(h), facts, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := RegistryEditor(data, cs.Changes)
			if err != nil {
				t.Fatal(err)
			}
			ph, err := registry.Open(patched)
			if err != nil {
				t.Fatal(err)
			}
			if err := ph.Check(); err != nil {
				t.Errorf("Check: %v", err)
			}
			if dirty, why := ph.Dirty(); dirty {
				t.Errorf("patched hive is dirty: %s", why)
			}
			hivexReadBack(t, patched, cs.Changes)
			for _, set := range cs.ControlSets {
				p, err := bootfix.PredictControlSet(bootfix.FromRegistry(ph), set.Name, facts, tc.target)
				if err != nil {
					t.Fatal(err)
				}
				if !p.OK {
					t.Errorf("%s after patch: %s", set.Name, p.Reason)
				}
			}
			again, err := bootfix.ComputeChanges(bootfix.FromRegistry(ph), facts, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Changes) != 0 {
				t.Errorf("second pass wants %d changes, first %+v", len(again.Changes), again.Changes[0])
			}
		})
	}
}

// Two plans of the same hive must produce the same bytes: serve, mount and
// export each compute the plan and must agree.
func TestRegistryEditorDeterministic(t *testing.T) {
	data, err := os.ReadFile(testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := registry.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	facts := bootfix.Facts{Version: bootfix.Version{Major: 5, Minor: 1}}
	cs, err := bootfix.ComputeChanges(bootfix.FromRegistry(h), facts, bootfix.TargetIDE, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := RegistryEditor(data, cs.Changes)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RegistryEditor(data, cs.Changes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two edits of the same hive with the same changes differ")
	}
}
