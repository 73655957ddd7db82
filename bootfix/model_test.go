package bootfix

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/registry"
)

// filesExcept reports every file present but those of the named base
// names, in whatever directory.
func filesExcept(missing ...string) func(string) bool {
	return func(rel string) bool {
		base := rel[strings.LastIndex(rel, `\`)+1:]
		for _, m := range missing {
			if strings.EqualFold(base, m) {
				return false
			}
		}
		return true
	}
}

// An XP install whose intelide.sys is present but pciidex.sys, the export
// driver it imports, is not: MergeIDE's changes cannot make it boot, and
// the prediction after them names the missing file and its importer, both
// from the known import list (placeholder files) and from a PE import
// table.
func TestXPWithoutPCIIDEX(t *testing.T) {
	_, h := corpusHive(t, "xp-sp3-x86.SYSTEM")
	facts := factsFor(t, h)
	facts.FileExists = filesExcept("pciidex.sys")
	for _, imports := range []func(string) ([]string, bool){
		nil, // placeholders: the known list
		func(rel string) ([]string, bool) {
			if strings.HasSuffix(strings.ToLower(rel), "intelide.sys") {
				return []string{"ntoskrnl.exe", "HAL.dll", "PCIIDEX.SYS"}, true
			}
			return []string{"ntoskrnl.exe"}, true
		},
	} {
		facts.Imports = imports
		cs, err := ComputeChanges(FromRegistry(h), facts, TargetIDE, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Changes) == 0 {
			t.Fatal("no MergeIDE changes for XP")
		}
		after, err := Predict(WithChanges(FromRegistry(h), cs.Changes), facts, TargetIDE)
		if err != nil {
			t.Fatal(err)
		}
		if after.OK || after.Broken == nil || after.Broken.Kind != LinkImport ||
			!strings.Contains(strings.ToLower(after.Broken.File), "pciidex.sys") || !strings.Contains(strings.ToLower(after.Broken.Importer), "intelide.sys") {
			t.Errorf("after the fix: %s %q %+v; want 0x7B naming pciidex.sys imported by intelide.sys", after.Verdict(), after.Reason, after.Broken)
		}
		found := false
		for _, m := range cs.MissingFiles {
			found = found || strings.EqualFold(m.Path, `System32\drivers\pciidex.sys`)
		}
		if !found {
			t.Errorf("missing files %+v do not name pciidex.sys", cs.MissingFiles)
		}
	}
}

// hdcClass is the hdc class key of the corpus hives' first control set.
const hdcClass = `ControlSet001\Control\Class\` + ClassHDC

// Windows 7 with an hdc-class UpperFilters entry naming a service that no
// longer exists (beside a live one): predicted 0x7B naming the dead entry;
// the fix removes only that name, which python3-hivex confirms, and the
// patched hive boots.
func TestWin7DeadHDCFilter(t *testing.T) {
	data, _ := corpusHive(t, "win7-sp1-x64.SYSTEM")
	planted := MultiString([]string{"PartMgr", "kvmifyGoneFilter"})
	seed := []Change{{Key: hdcClass, Value: "UpperFilters", Op: OpSet, New: &planted}}
	for _, cs := range []string{"ControlSet002"} {
		seed = append(seed, Change{Key: strings.Replace(hdcClass, "ControlSet001", cs, 1), Value: "UpperFilters", Op: OpSet, New: &planted})
	}
	withFilter, _ := applyWithHivex(t, data, seed)
	fh, err := registry.Open(withFilter)
	if err != nil {
		t.Fatal(err)
	}
	facts := factsFor(t, fh)
	before, err := Predict(FromRegistry(fh), facts, TargetIDE)
	if err != nil {
		t.Fatal(err)
	}
	if before.OK || before.Broken == nil || before.Broken.Kind != LinkFilterDead || before.Broken.Service != "kvmifyGoneFilter" {
		t.Fatalf("before: %s %q %+v; want 0x7B naming kvmifyGoneFilter", before.Verdict(), before.Reason, before.Broken)
	}
	cs, err := ComputeChanges(FromRegistry(fh), facts, TargetIDE, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Changes) != 2 {
		t.Fatalf("changes %+v; want the UpperFilters of both control sets", cs.Changes)
	}
	for _, c := range cs.Changes {
		if c.Value != "UpperFilters" || c.New == nil || strings.Join(c.New.Strings(), ",") != "PartMgr" || !strings.Contains(c.Detail, "kvmifyGoneFilter") {
			t.Errorf("change %s\\%s → %v (%s); want UpperFilters = PartMgr recording the dead entry", c.Key, c.Value, c.New, c.Detail)
		}
	}
	patched, got := applyWithHivex(t, withFilter, cs.Changes)
	for i, c := range cs.Changes {
		if got[i] == nil || got[i].Data != hex.EncodeToString(c.New.Data) {
			t.Errorf("hivex reads %s\\%s as %+v", c.Key, c.Value, got[i])
		}
	}
	ph, err := registry.Open(patched)
	if err != nil {
		t.Fatal(err)
	}
	after, err := Predict(FromRegistry(ph), facts, TargetIDE)
	if err != nil || !after.OK {
		t.Errorf("after the fix: %s %q %v", after.Verdict(), after.Reason, err)
	}
}

// Windows 7 with Intel RST's CriticalDeviceDatabase entry for ICH9 AHCI
// (PCI#VEN_8086&DEV_2922&CC_0106 → iaStor, a driver not installed): it is
// more specific than the inbox PCI#CC_010601 and wins, so the fix must
// point it at msahci, recorded, and the result boots.
func TestWin7ThirdPartyCDDB(t *testing.T) {
	data, _ := corpusHive(t, "win7-sp1-x64.SYSTEM")
	key := `ControlSet001\Control\CriticalDeviceDatabase\PCI#VEN_8086&DEV_2922&CC_0106`
	svc, class := String(TypeSZ, "iaStor"), String(TypeSZ, ClassSCSIAdapter)
	withRST, _ := applyWithHivex(t, data, []Change{
		{Key: key, Value: "Service", Op: OpSet, New: &svc}, {Key: key, Value: "ClassGUID", Op: OpSet, New: &class}})
	rh, err := registry.Open(withRST)
	if err != nil {
		t.Fatal(err)
	}
	facts := factsFor(t, rh)
	cs, err := ComputeChanges(FromRegistry(rh), facts, TargetAHCI, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fixed *Change
	for i, c := range cs.Changes {
		if strings.EqualFold(c.Key, key) && c.Value == "Service" {
			fixed = &cs.Changes[i]
		}
	}
	if fixed == nil || fixed.New.Text() != "msahci" || fixed.Old == nil || fixed.Old.Text() != "iaStor" || !strings.Contains(fixed.Detail, "third-party") {
		t.Fatalf("changes %+v; want %s Service iaStor → msahci, recorded", cs.Changes, key)
	}
	after, err := Predict(WithChanges(FromRegistry(rh), cs.Changes), facts, TargetAHCI)
	if err != nil || !after.OK {
		t.Fatalf("model after the fix: %s %q %v", after.Verdict(), after.Reason, err)
	}
	patched, _ := applyWithHivex(t, withRST, cs.Changes)
	ph, err := registry.Open(patched)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := Predict(FromRegistry(ph), facts, TargetAHCI); err != nil || !p.OK || !strings.Contains(strings.Join(p.Path, " "), "msahci") {
		t.Errorf("hive patched by hivex: %s %q %v", p.Verdict(), p.Reason, err)
	}
}

// A Windows 8.1 install (SYSTEM evidence 6.3.9600, storahci boot-start
// without an override) already boots on ahci: the plan has no change.
func TestWin81AHCIPlanIsEmpty(t *testing.T) {
	h81 := evidenceHive(t, "6.3.9600.16384", false)
	h := editHive(t, h81.Bytes(), []Change{{Key: `ControlSet001\Services\storahci\StartOverride`, Value: "0", Op: OpDelete}})
	facts := factsFor(t, h)
	if facts.Version.String() != "6.3.9600" {
		t.Fatalf("version %s, want 6.3.9600", facts.Version)
	}
	cs, err := ComputeChanges(FromRegistry(h), facts, TargetAHCI, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Changes) != 0 {
		t.Errorf("8.1 on ahci: %d changes, first %+v; want none", len(cs.Changes), cs.Changes[0])
	}
}

func TestCPUPowerAliasAndVirtioRefused(t *testing.T) {
	for _, s := range []string{"intelppm", "cpu-power", "CPU-Power"} {
		if ex, err := ParseExtras(s); err != nil || len(ex) != 1 || ex[0] != ExtraCPUPower {
			t.Errorf("ParseExtras(%q) = %v, %v", s, ex, err)
		}
	}
	_, err := ParseTarget("virtio")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no inbox virtio-blk driver") {
		t.Errorf("ParseTarget(virtio) = %v, want a refusal saying why", err)
	}
}

// MergeIDE's .reg writes atapi's DisplayName; an ImagePath differing only
// in case (XP's own system32\DRIVERS\…) is not rewritten.
func TestMergeIDEServiceValues(t *testing.T) {
	_, h := corpusHive(t, "xp-sp3-x86.SYSTEM")
	cs, err := ComputeChanges(FromRegistry(h), factsFor(t, h), TargetIDE, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := WithChanges(FromRegistry(h), cs.Changes).Value(`ControlSet001\Services\atapi`, "DisplayName")
	if v.Text() != "Standard IDE/ESDI Hard Disk Controller" {
		t.Errorf("atapi DisplayName after the fix = %q", v.Text())
	}
	for _, c := range cs.Changes {
		if c.Value == valueImagePath && c.Old != nil && strings.EqualFold(c.Old.Text(), c.New.Text()) {
			t.Errorf("%s ImagePath rewritten for case only: %q → %q", c.Key, c.Old.Text(), c.New.Text())
		}
	}
}

// The loader boots Select\Default (or LastKnownGood on request), not
// Select\Current: with Default pointing at ControlSet002, where msahci is
// boot-start, Windows 7 boots on ahci although ControlSet001 (Current)
// says msahci Start=3.
func TestPredictUsesSelectDefault(t *testing.T) {
	data, _ := corpusHive(t, "win7-sp1-x64.SYSTEM")
	one, two, zero := DWORD(1), DWORD(2), DWORD(StartBoot)
	h := editHive(t, data, []Change{
		{Key: "Select", Value: "Default", Op: OpSet, New: &two},
		{Key: "Select", Value: "LastKnownGood", Op: OpSet, New: &one},
		{Key: `ControlSet002\Services\msahci`, Value: "Start", Op: OpSet, New: &zero},
	})
	facts := factsFor(t, h)
	p, err := Predict(FromRegistry(h), facts, TargetAHCI)
	if err != nil || !p.OK || p.ControlSet != "ControlSet002" {
		t.Errorf("Default: %s in %s %q %v; want boots from ControlSet002", p.Verdict(), p.ControlSet, p.Reason, err)
	}
	facts.LastKnownGood = true
	p, err = Predict(FromRegistry(h), facts, TargetAHCI)
	if err != nil || p.OK || p.ControlSet != "ControlSet001" {
		t.Errorf("LastKnownGood: %s in %s %q %v; want 0x7B from ControlSet001", p.Verdict(), p.ControlSet, p.Reason, err)
	}
}

// A service the chain needs that is not boot-start (here disk, Start 3)
// is enabled by the fix, recorded, beside the profile's msahci.
func TestFixEnablesChainService(t *testing.T) {
	data, _ := corpusHive(t, "win7-sp1-x64.SYSTEM")
	three := DWORD(StartDemand)
	h := editHive(t, data, []Change{{Key: `ControlSet001\Services\disk`, Value: "Start", Op: OpSet, New: &three}})
	facts := factsFor(t, h)
	cs, err := ComputeChanges(FromRegistry(h), facts, TargetAHCI, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range cs.Changes {
		found = found || strings.EqualFold(c.Key, `ControlSet001\Services\disk`) && c.Value == "Start" && strings.Contains(c.Detail, "disk")
	}
	p, err := PredictControlSet(WithChanges(FromRegistry(h), cs.Changes), "ControlSet001", facts, TargetAHCI)
	if !found || err != nil || !p.OK {
		t.Errorf("disk Start fixed: %v; after %s %q %v", found, p.Verdict(), p.Reason, err)
	}
}
