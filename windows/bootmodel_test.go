package windows

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/registry"
)

// XP whose intelide.sys is a real PE image importing PCIIDEX.SYS, and no
// pciidex.sys: the MergeIDE fix is planned, the prediction after it stays
// 0x7B naming pciidex.sys, and CheckBoots refuses unless forced.
func TestPlanRefusesXPWithoutPCIIDEX(t *testing.T) {
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, "atapi.sys", "pciide.sys", "disk.sys")
	drv := filepath.Join(root, "Windows", "System32", "drivers")
	if err := os.WriteFile(filepath.Join(drv, "intelide.sys"), testutil.PEWithImports([]string{"ntoskrnl.exe", "HAL.dll", "PCIIDEX.SYS"}, false), 0o644); err != nil {
		t.Fatal(err)
	}
	in := inspectOne(t, root)
	p, err := PlanPatch(in, bootfix.TargetIDE, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) == 0 || p.Before.OK || p.After.OK || p.After.Broken == nil || p.After.Broken.Kind != bootfix.LinkImport {
		t.Fatalf("%d changes; before %s, after %s %q %+v; want 0x7B after the fix from the import", len(p.Changes), p.Before.Verdict(), p.After.Verdict(), p.After.Reason, p.After.Broken)
	}
	if ok, why := p.Boots(); ok || !strings.Contains(why, "PCIIDEX.SYS") {
		t.Errorf("Boots() = %v %q", ok, why)
	}
	err = p.CheckBoots(false)
	var wb *WontBootError
	if !errors.As(err, &wb) || !errors.Is(err, ErrWontBoot) || !strings.Contains(err.Error(), `System32\drivers\PCIIDEX.SYS`) ||
		!strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), `sp3.cab`) {
		t.Errorf("CheckBoots: %v; want a WontBootError naming pciidex.sys, where to find it and --force", err)
	}
	if err := p.CheckBoots(true); err != nil {
		t.Errorf("CheckBoots(force): %v", err)
	}
}

// Windows 7 on ide already boots: the plan changes nothing and writes
// nothing, so the served disk is the source's bytes.
func TestPlanWin7IDEEmpty(t *testing.T) {
	in := inspectOne(t, testutil.WindowsTree(t, "win7-sp1-x64.SYSTEM", nil, ideDrivers...))
	p, err := PlanPatch(in, bootfix.TargetIDE, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 0 || len(p.Writes) != 0 || p.PatchedHive != nil || !p.Before.OK || !p.After.OK || p.CheckBoots(false) != nil {
		t.Errorf("%d changes, %d writes, before %s after %s; want an empty plan that boots", len(p.Changes), len(p.Writes), p.Before.Verdict(), p.After.Verdict())
	}
}

// win81Hive makes a Windows 8.1 SYSTEM hive from the Windows 10 corpus one
// with kvmify's registry editor (the corpus has no 8.1 hive): inbox
// DriverVersion 6.3.9600.16384, no Windows 10 evidence, storahci without its
// StartOverride. With dirty, the saved file's sequence numbers differ, as
// when Windows stopped mid-write.
func win81Hive(t *testing.T, dirty bool) []byte {
	t.Helper()
	data, rep, err := registry.RecoverFile(testutil.CorpusFile(t, "win10-1709-x64.SYSTEM"))
	if err != nil || !rep.Clean {
		t.Fatalf("recovering the corpus hive: %v", err)
	}
	h, err := registry.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	sys := bootfix.FromRegistry(h)
	var changes []bootfix.Change
	v := bootfix.String(bootfix.TypeSZ, "6.3.9600.16384")
	for _, class := range []string{bootfix.ClassHDC, bootfix.ClassSCSIAdapter, bootfix.ClassDisk, bootfix.ClassVolume, "{4D36E97D-E325-11CE-BFC1-08002BE10318}"} {
		key := `ControlSet001\Control\Class\` + class
		subs, _, err := sys.Subkeys(key)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if _, ok, _ := sys.Value(key+`\`+s, "DriverVersion"); ok {
				changes = append(changes, bootfix.Change{Key: key + `\` + s, Value: "DriverVersion", Op: bootfix.OpSet, New: &v})
			}
		}
	}
	changes = append(changes,
		bootfix.Change{Key: `ControlSet001\Control\ProductOptions`, Value: "OSProductPfn", Op: bootfix.OpDelete},
		bootfix.Change{Key: `ControlSet001\Control\Windows`, Value: "ShutdownStopTimePerfCounterBuildLab", Op: bootfix.OpDelete},
		bootfix.Change{Key: `ControlSet001\Services\storahci\StartOverride`, Value: "0", Op: bootfix.OpDelete})
	out, err := RegistryEditor(data, changes)
	if err != nil {
		t.Fatal(err)
	}
	if dirty {
		bb, err := registry.ParseBaseBlock(out)
		if err != nil {
			t.Fatal(err)
		}
		bb.PrimarySequence++
		bb.Encode(out)
	}
	return out
}

// A dirty Windows 8.1 hive without logs, served for ahci, on which it
// already boots: not refused, nothing written.
func TestPlanWin81DirtyAHCIEmpty(t *testing.T) {
	root := testutil.WindowsTree(t, "win10-1709-x64.SYSTEM", nil, "storahci.sys", "disk.sys")
	if err := os.WriteFile(filepath.Join(root, "Windows", "System32", "config", "SYSTEM"), win81Hive(t, true), 0o644); err != nil {
		t.Fatal(err)
	}
	in := inspectOne(t, root)
	if in.HiveState != HiveUnrecoverable || in.Version.String() != "6.3.9600" {
		t.Fatalf("hive %s, version %s (%s); want a dirty 8.1 hive", in.HiveState, in.Version, in.Version.Evidence)
	}
	p, err := PlanPatch(in, bootfix.TargetAHCI, PlanOptions{})
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if len(p.Changes) != 0 || len(p.Writes) != 0 || !p.After.OK {
		t.Errorf("%d changes, %d writes, after %s %q; want an empty plan that boots", len(p.Changes), len(p.Writes), p.After.Verdict(), p.After.Reason)
	}
	// A target that needs changes is still refused on that hive.
	if _, err := PlanPatch(in, bootfix.TargetIDE, PlanOptions{}); !errors.Is(err, ErrUnsafe) {
		t.Errorf("ide on the dirty hive: %v, want a refusal", err)
	}
}
