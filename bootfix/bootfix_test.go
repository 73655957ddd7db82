package bootfix

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/registry"
)

// QEMU's PIIX3 as Windows' device manager lists it in a QEMU guest.
func TestPIIX3IDs(t *testing.T) {
	want := []string{
		`PCI\VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00`,
		`PCI\VEN_8086&DEV_7010&SUBSYS_11001AF4`,
		`PCI\VEN_8086&DEV_7010&CC_010180`,
		`PCI\VEN_8086&DEV_7010&CC_0101`,
		`PCI\VEN_8086&DEV_7010&REV_00`,
		`PCI\VEN_8086&DEV_7010`,
		`PCI\VEN_8086&CC_010180`,
		`PCI\VEN_8086&CC_0101`,
		`PCI\VEN_8086`,
		`PCI\CC_010180`,
		`PCI\CC_0101`,
	}
	got := PIIX3IDE.IDs()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("PIIX3 IDs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if id := ICH9AHCI.CompatibleIDs()[5]; id != `PCI\CC_010601` {
		t.Errorf("ICH9 class compatible ID = %s, want PCI\\CC_010601", id)
	}
}

// corpusHive opens a corpus SYSTEM hive, recovering it from its logs when
// dirty, and returns its file bytes and the parsed hive.
func corpusHive(t *testing.T, name string) ([]byte, *registry.Hive) {
	t.Helper()
	return corpusHiveB(t, name)
}

func corpusHiveB(t testing.TB, name string) ([]byte, *registry.Hive) {
	t.Helper()
	p := testutil.CorpusFile(t, name)
	data, rep, err := registry.RecoverFile(p)
	if err != nil {
		t.Fatalf("recovering %s: %v", name, err)
	}
	if rep.Dirty && !rep.Clean {
		t.Fatalf("%s: recovery left the hive dirty: %s", name, rep)
	}
	h, err := registry.Open(data)
	if err != nil {
		t.Fatalf("opening %s: %v", name, err)
	}
	return data, h
}

func TestControlSetsXP(t *testing.T) {
	_, h := corpusHive(t, "xp-sp3-x86.SYSTEM")
	sets, err := ControlSets(FromRegistry(h))
	if err != nil {
		t.Fatal(err)
	}
	// Corpus README: Select Current 1, Default 1, LastKnownGood 3.
	if len(sets) != 2 || sets[0].Name != "ControlSet001" || sets[1].Name != "ControlSet003" {
		t.Fatalf("control sets = %+v, want ControlSet001 (Current, Default) and ControlSet003", sets)
	}
	if strings.Join(sets[0].Roles, ",") != "Current,Default" || strings.Join(sets[1].Roles, ",") != "LastKnownGood" {
		t.Errorf("roles = %v / %v", sets[0].Roles, sets[1].Roles)
	}
}

func TestFromSystemEvidence(t *testing.T) {
	for _, tc := range []struct {
		file string
		fam  Family
	}{
		{"xp-sp3-x86.SYSTEM", FamilyNT5},
		{"win7-sp1-x64.SYSTEM", FamilyNT60},
		{"win10-1709-x64.SYSTEM", FamilyNT62},
	} {
		_, h := corpusHive(t, tc.file)
		v, err := DetectVersion(FromRegistry(h), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if v.Family() != tc.fam || v.Source != SourceSystemHive || v.Server {
			t.Errorf("%s: version %+v family %s, want %s from SYSTEM evidence, workstation", tc.file, v, v.Family(), tc.fam)
		}
	}
	_, h := corpusHive(t, "xp-sp3-x86.SYSTEM")
	if v, _ := FromSystem(FromRegistry(h)); v.ServicePack != "Service Pack 3" {
		t.Errorf("XP service pack = %q, want Service Pack 3 (CSDVersion 0x300)", v.ServicePack)
	}
	arch, err := Arch(FromRegistry(h))
	if err != nil || arch != "x86" {
		t.Errorf("XP arch = %q, %v; want x86", arch, err)
	}
}

// allFiles reports every driver file present, as on a complete install.
func allFiles(string) bool { return true }

func factsFor(t *testing.T, h *registry.Hive) Facts {
	t.Helper()
	v, err := DetectVersion(FromRegistry(h), nil)
	if err != nil {
		t.Fatal(err)
	}
	return Facts{Version: v, FileExists: allFiles}
}

func TestPredictCorpus(t *testing.T) {
	for _, tc := range []struct {
		file   string
		target Target
		ok     bool
		reason string // substring of the reason
	}{
		{"xp-sp3-x86.SYSTEM", TargetIDE, false, `no CriticalDeviceDatabase entry matches PCI\VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00`},
		{"xp-sp3-x86.SYSTEM", TargetAHCI, false, `no CriticalDeviceDatabase entry matches PCI\VEN_8086&DEV_2922`},
		{"xp-sp3-x86.SYSTEM", TargetVirtio, false, `PCI\VEN_1AF4&DEV_1001`},
		{"win7-sp1-x64.SYSTEM", TargetAHCI, false, "service msahci Start=3 (manual), needs 0"},
		{"win7-sp1-x64.SYSTEM", TargetIDE, true, "intelide, atapi, disk"},
		{"win10-1709-x64.SYSTEM", TargetAHCI, false, `service storahci Start=0 but StartOverride\0=3`},
		{"win10-1709-x64.SYSTEM", TargetIDE, false, `StartOverride\0=3`},
		{"win10-1709-x64.SYSTEM", TargetNVMe, false, `service stornvme Start=0 but StartOverride\0=3`},
	} {
		_, h := corpusHive(t, tc.file)
		p, err := Predict(FromRegistry(h), factsFor(t, h), tc.target)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.file, tc.target, err)
		}
		if p.OK != tc.ok || !strings.Contains(p.Reason, tc.reason) {
			t.Errorf("%s %s: %s %q (path %v), want ok=%v with %q", tc.file, tc.target, p.Verdict(), p.Reason, p.Path, tc.ok, tc.reason)
		}
	}
}

func TestPredictMissingDriverFile(t *testing.T) {
	_, h := corpusHive(t, "win7-sp1-x64.SYSTEM")
	f := factsFor(t, h)
	f.FileExists = func(rel string) bool { return !strings.EqualFold(rel, `system32\drivers\atapi.sys`) }
	p, err := Predict(FromRegistry(h), f, TargetIDE)
	if err != nil {
		t.Fatal(err)
	}
	if p.OK || !strings.Contains(p.Reason, `driver file system32\drivers\atapi.sys missing`) {
		t.Errorf("prediction %s %q, want 0x7B naming the missing atapi.sys", p.Verdict(), p.Reason)
	}
}

// changeJSON is a change in the form testdata/hivex_apply.py reads.
type changeJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Op    Op     `json:"op"`
	Type  uint32 `json:"type"`
	Data  string `json:"data"`
}

// applyWithHivex writes the changes into a copy of the hive with
// python3-hivex and returns the patched file and what hivex reads back for
// each change (nil for a deleted value).
func applyWithHivex(t *testing.T, hive []byte, changes []Change) ([]byte, []*testutil.HivexValue) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "SYSTEM")
	if err := os.WriteFile(path, hive, 0o600); err != nil {
		t.Fatal(err)
	}
	var in []changeJSON
	for _, c := range changes {
		j := changeJSON{Key: c.Key, Value: c.Value, Op: c.Op}
		if c.New != nil {
			j.Type, j.Data = c.New.Type, hex.EncodeToString(c.New.Data)
		}
		in = append(in, j)
	}
	got, err := testutil.HivexApply(t, path, in, false)
	if err != nil {
		t.Fatalf("hivex apply: %v", err)
	}
	patched, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return patched, got
}

// TestFixCorpus computes the boot fix for each corpus hive, applies it with
// hivex, and checks that hivex reads every change back, that kvmify's parser
// finds the patched hive consistent, that every patched control set now
// boots, and that a second pass finds nothing left to change.
func TestFixCorpus(t *testing.T) {
	for _, tc := range []struct {
		file   string
		target Target
		must   []string // changes that must be in the set: key|value
	}{
		{"xp-sp3-x86.SYSTEM", TargetIDE, []string{
			`ControlSet001\Control\CriticalDeviceDatabase\pci#ven_8086&dev_7010|Service`,
			`ControlSet001\Control\CriticalDeviceDatabase\pci#cc_0101|Service`,
			`ControlSet001\Services\PCIIde|Start`,
			`ControlSet003\Control\CriticalDeviceDatabase\pci#ven_8086&dev_7010|ClassGUID`,
		}},
		{"win7-sp1-x64.SYSTEM", TargetAHCI, []string{`ControlSet001\Services\msahci|Start`, `ControlSet002\Services\msahci|Start`}},
		{"win10-1709-x64.SYSTEM", TargetAHCI, []string{`ControlSet001\Services\storahci\StartOverride|0`}},
		{"win10-1709-x64.SYSTEM", TargetIDE, []string{`ControlSet001\Services\intelide\StartOverride|0`, `ControlSet001\Services\atapi\StartOverride|0`}},
		{"win10-1709-x64.SYSTEM", TargetNVMe, []string{`ControlSet001\Services\stornvme\StartOverride|0`}},
	} {
		t.Run(tc.file+"/"+string(tc.target), func(t *testing.T) {
			srcSum := testutil.FileSHA256(t, testutil.CorpusFile(t, tc.file))
			data, h := corpusHive(t, tc.file)
			facts := factsFor(t, h)
			cs, err := ComputeChanges(FromRegistry(h), facts, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, c := range cs.Changes {
				have[strings.ToLower(c.Key+"|"+c.Value)] = true
			}
			for _, m := range tc.must {
				if !have[strings.ToLower(m)] {
					t.Errorf("missing change %s", m)
				}
			}
			patched, got := applyWithHivex(t, data, cs.Changes)
			for i, c := range cs.Changes {
				switch {
				case c.Op == OpDelete && got[i] != nil:
					t.Errorf("hivex still reads deleted %s\\%s", c.Key, c.Value)
				case c.Op == OpSet && (got[i] == nil || got[i].Type != c.New.Type || got[i].Data != hex.EncodeToString(c.New.Data)):
					t.Errorf("hivex reads %s\\%s as %+v, want type %d data %x", c.Key, c.Value, got[i], c.New.Type, c.New.Data)
				}
			}
			ph, err := registry.Open(patched)
			if err != nil {
				t.Fatal(err)
			}
			if err := ph.Check(); err != nil {
				t.Errorf("patched hive fails Check: %v", err)
			}
			for _, set := range cs.ControlSets {
				p, err := PredictControlSet(FromRegistry(ph), set.Name, facts, tc.target)
				if err != nil {
					t.Fatal(err)
				}
				if !p.OK {
					t.Errorf("%s after patch: %s %s", set.Name, p.Verdict(), p.Reason)
				}
			}
			again, err := ComputeChanges(FromRegistry(ph), facts, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Changes) != 0 {
				t.Errorf("second pass still wants %d changes, first %+v", len(again.Changes), again.Changes[0])
			}
			if s := testutil.FileSHA256(t, testutil.CorpusFile(t, tc.file)); s != srcSum {
				t.Errorf("corpus file changed: sha256 %s → %s", srcSum, s)
			}
		})
	}
}

func TestProfileUnsupported(t *testing.T) {
	xp := Version{Major: 5, Minor: 1}
	for _, tgt := range []Target{TargetAHCI, TargetNVMe, TargetVirtio} {
		if _, err := ProfileFor(xp, tgt); err == nil {
			t.Errorf("ProfileFor(XP, %s) succeeded; XP has no inbox driver for it", tgt)
		}
	}
}

func TestNVMeNeedsWindows8Family(t *testing.T) {
	for _, v := range []Version{{Major: 5, Minor: 1}, {Major: 6, Minor: 1}} {
		if _, err := ProfileFor(v, TargetNVMe); err == nil || !strings.Contains(err.Error(), "stornvme") {
			t.Errorf("ProfileFor(%s, nvme) = %v; want a refusal naming stornvme", v, err)
		}
	}
	if _, err := ProfileFor(Version{Major: 10}, TargetNVMe); err != nil {
		t.Errorf("ProfileFor(10.0, nvme): %v", err)
	}
}

func TestExtras(t *testing.T) {
	for _, tc := range []struct {
		file, extra, key, value string
		want                    uint32
	}{
		// XP's CrashControl\AutoReboot is 1; Windows 7's intelppm is Start 3.
		{"xp-sp3-x86.SYSTEM", "autoreboot", `ControlSet001\Control\CrashControl`, "AutoReboot", 0},
		{"win7-sp1-x64.SYSTEM", "cpu-power", `ControlSet001\Services\intelppm`, "Start", StartDisabled},
		{"win7-sp1-x64.SYSTEM", "cpu-power", `ControlSet001\Services\amdppm`, "Start", StartDisabled},
	} {
		_, h := corpusHive(t, tc.file)
		facts := factsFor(t, h)
		target := TargetAHCI
		if facts.Version.Family() == FamilyNT5 {
			target = TargetIDE
		}
		base, err := ComputeChanges(FromRegistry(h), facts, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range base.Changes {
			if c.Why != "boot fix" {
				t.Errorf("%s: change %s\\%s without extras: %s", tc.file, c.Key, c.Value, c.Why)
			}
		}
		ex, err := ParseExtras(tc.extra)
		if err != nil {
			t.Fatal(err)
		}
		more, err := ComputeChanges(FromRegistry(h), facts, target, ex)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range more.Changes {
			if strings.EqualFold(c.Key, tc.key) && c.Value == tc.value && c.Why == "extra "+tc.extra {
				n, _ := c.New.Uint32()
				found = n == tc.want && c.Old != nil
			}
		}
		if !found {
			t.Errorf("%s: extra %s did not set %s\\%s to %d", tc.file, tc.extra, tc.key, tc.value, tc.want)
		}
	}
	if _, err := ParseExtras("bogus"); err == nil {
		t.Error("ParseExtras accepted an unknown extra")
	}
}

// TestExtraFilters plants a class UpperFilters entry naming a service that
// does not exist (as an uninstalled filter driver leaves behind) and checks
// that the filters extra drops exactly that entry.
func TestExtraFilters(t *testing.T) {
	data, h := corpusHive(t, "win7-sp1-x64.SYSTEM")
	key := `ControlSet001\Control\Class\{4D36E967-E325-11CE-BFC1-08002BE10318}`
	old, ok, err := FromRegistry(h).Value(key, "UpperFilters")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	if ok {
		keep = old.Strings()
	}
	planted := MultiString(append(append([]string{}, keep...), "kvmifyGoneFilter"))
	patched, _ := applyWithHivex(t, data, []Change{{Key: key, Value: "UpperFilters", Op: OpSet, New: &planted}})
	ph, err := registry.Open(patched)
	if err != nil {
		t.Fatal(err)
	}
	facts := factsFor(t, ph)
	cs, err := ComputeChanges(FromRegistry(ph), facts, TargetAHCI, []Extra{ExtraFilters})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range cs.Changes {
		if c.Why != "extra filters" {
			continue
		}
		if !strings.EqualFold(c.Key, key) || c.Value != "UpperFilters" {
			t.Errorf("unexpected filter change %s\\%s", c.Key, c.Value)
			continue
		}
		found = true
		switch {
		case len(keep) == 0 && c.Op != OpDelete:
			t.Errorf("only entry was the missing filter: want delete, got %s", c.Op)
		case len(keep) > 0 && (c.New == nil || strings.Join(c.New.Strings(), ",") != strings.Join(keep, ",")):
			t.Errorf("UpperFilters → %v, want %v", c.New, keep)
		}
	}
	if !found {
		t.Errorf("filters extra did not remove the planted entry (kept %v)", keep)
	}
}

func TestValueStrings(t *testing.T) {
	for _, tc := range []struct {
		v    Value
		want string
	}{
		{MultiString([]string{"a", "bc"}), "a|bc"},
		// An empty string ends a multi-string, as Windows reads it.
		{Value{Type: TypeMultiSZ, Data: []byte{'a', 0, 0, 0, 0, 0, 'b', 0, 0, 0, 0, 0}}, "a"},
		// A REG_SZ without its terminating NUL, and one with trailing junk.
		{Value{Type: TypeSZ, Data: []byte{'h', 0, 'i', 0}}, "hi"},
		{Value{Type: TypeSZ, Data: []byte{'h', 0, 0, 0, 'x', 0}}, "h"},
		{Value{Type: TypeSZ, Data: []byte{'h'}}, ""},
	} {
		if got := strings.Join(tc.v.Strings(), "|"); got != tc.want {
			t.Errorf("%x: %q, want %q", tc.v.Data, got, tc.want)
		}
	}
	if !String(TypeSZ, "x").Equal(Value{Type: TypeSZ, Data: []byte{'x', 0}}) {
		t.Error("a REG_SZ without its NUL should equal the same text with it")
	}
}

// Windows 7 already binds PIIX3 through CriticalDeviceDatabase
// PCI#VEN_8086&DEV_7010 → intelide, atapi and disk are boot-start: it boots
// on ide as it is, so the plan must be empty (pciide, Start 3, is not in the
// PIIX3 chain and stays untouched).
func TestWin7IDEPlanIsEmpty(t *testing.T) {
	_, h := corpusHive(t, "win7-sp1-x64.SYSTEM")
	cs, err := ComputeChanges(FromRegistry(h), factsFor(t, h), TargetIDE, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Changes) != 0 || len(cs.Booting) != 2 {
		t.Errorf("changes %+v, booting %v; want none, ControlSet001 and 002 already booting", cs.Changes, cs.Booting)
	}
}

func TestRTCIsUTC(t *testing.T) {
	for _, file := range []string{"xp-sp3-x86.SYSTEM", "win7-sp1-x64.SYSTEM", "win10-1709-x64.SYSTEM"} {
		data, h := corpusHive(t, file)
		utc, err := RTCIsUTC(FromRegistry(h))
		if err != nil || utc {
			t.Errorf("%s: RTCIsUTC = %v, %v; the corpus installs keep local time", file, utc, err)
		}
		cs, err := CurrentControlSet(FromRegistry(h))
		if err != nil {
			t.Fatal(err)
		}
		one := DWORD(1)
		ch := []Change{{Key: cs.Name + `\Control\TimeZoneInformation`, Value: "RealTimeIsUniversal", Op: OpSet, New: &one}}
		patched, _ := applyWithHivex(t, data, ch)
		ph, err := registry.Open(patched)
		if err != nil {
			t.Fatal(err)
		}
		if utc, err := RTCIsUTC(FromRegistry(ph)); err != nil || !utc {
			t.Errorf("%s with RealTimeIsUniversal=1: RTCIsUTC = %v, %v", file, utc, err)
		}
	}
}
