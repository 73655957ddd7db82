package windows

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/registry"
)

var ideDrivers = []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys"}

func inspectOne(t *testing.T, root string) *Install {
	t.Helper()
	ins, err := Inspect(DirFS(root))
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 {
		t.Fatalf("found %d installs, want 1", len(ins))
	}
	return ins[0]
}

func TestInspectXP(t *testing.T) {
	in := inspectOne(t, testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, ideDrivers...))
	if in.Dir != "Windows" || in.ControlSet != "ControlSet001" || in.Arch != "x86" || in.HiveState != HiveClean {
		t.Errorf("install = dir %q cs %q arch %q hive %s", in.Dir, in.ControlSet, in.Arch, in.HiveState)
	}
	if in.Version.Family() != bootfix.FamilyNT5 || in.Version.Source != bootfix.SourceSystemHive || in.DefaultTarget() != bootfix.TargetIDE {
		t.Errorf("version %+v (%s), default target %s", in.Version, in.Version.Family(), in.DefaultTarget())
	}
	p, _ := in.Prediction(bootfix.TargetIDE)
	if p.OK || !strings.Contains(p.Reason, `PCI\VEN_8086&DEV_7010`) {
		t.Errorf("ide prediction %s %q, want 0x7B for the PIIX3", p.Verdict(), p.Reason)
	}
}

func TestInspectWin10RecoversHive(t *testing.T) {
	in := inspectOne(t, testutil.WindowsTree(t, "win10-1709-x64.SYSTEM", []string{".LOG1", ".LOG2"}, []string{"storahci.sys", "disk.sys"}...))
	if in.HiveState != HiveRecovered || len(in.Logs) != 2 {
		t.Fatalf("hive state %s (%s), logs %v; want recovered from LOG1 and LOG2", in.HiveState, in.HiveDetail, in.Logs)
	}
	if bytes.Equal(in.Hive, in.OnDisk) {
		t.Error("recovered hive equals the dirty file on disk")
	}
	if in.Arch != "AMD64" || in.DefaultTarget() != bootfix.TargetAHCI {
		t.Errorf("arch %q default target %s", in.Arch, in.DefaultTarget())
	}
	p, _ := in.Prediction(bootfix.TargetAHCI)
	if p.OK || !strings.Contains(p.Reason, "StartOverride") {
		t.Errorf("ahci prediction %s %q, want 0x7B from StartOverride", p.Verdict(), p.Reason)
	}
}

func TestInspectDirtyHiveWithoutLogs(t *testing.T) {
	in := inspectOne(t, testutil.WindowsTree(t, "win10-1709-x64.SYSTEM", nil))
	if in.HiveState != HiveUnrecoverable {
		t.Fatalf("hive state %s, want %s", in.HiveState, HiveUnrecoverable)
	}
	_, err := PlanPatch(in, bootfix.TargetAHCI, PlanOptions{})
	var ue *UnsafeError
	if !errors.As(err, &ue) || ue.Flag != "--allow-dirty-hive" {
		t.Fatalf("PlanPatch on an unrecoverable hive: %v, want a refusal naming --allow-dirty-hive", err)
	}
	if _, err := PlanPatch(in, bootfix.TargetAHCI, PlanOptions{Overrides: Overrides{AllowDirtyHive: true}}); err != nil {
		t.Errorf("with --allow-dirty-hive: %v", err)
	}
}

func TestSafetyRefusals(t *testing.T) {
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, ideDrivers...)
	if err := os.WriteFile(filepath.Join(root, "hiberfil.sys"), append([]byte("hibr"), make([]byte, 4092)...), 0o644); err != nil {
		t.Fatal(err)
	}
	sig, hib, err := Hiberfil(DirFS(root))
	if err != nil || !hib || sig != "hibr" {
		t.Fatalf("Hiberfil = %q %v %v, want a live hibr image", sig, hib, err)
	}
	in := inspectOne(t, root)
	for _, tc := range []struct {
		vs   VolumeState
		ov   Overrides
		flag string // "" = must pass
	}{
		{VolumeState{Hibernated: true, Hiberfil: sig}, Overrides{}, "--allow-hibernated"},
		{VolumeState{Hibernated: true}, Overrides{AllowHibernated: true}, ""},
		{VolumeState{FastStartup: true}, Overrides{}, "--allow-hibernated"},
		{VolumeState{LogFileUnclean: true}, Overrides{}, "--allow-unclean"},
		{VolumeState{Dirty: true}, Overrides{AllowUnclean: true}, ""},
		{VolumeState{BitLocker: true}, Overrides{AllowHibernated: true, AllowUnclean: true, AllowDirtyHive: true}, "none"},
	} {
		err := CheckSafety(in, tc.vs, tc.ov)
		var ue *UnsafeError
		switch {
		case tc.flag == "" && err != nil:
			t.Errorf("%+v %+v: refused: %v", tc.vs, tc.ov, err)
		case tc.flag == "none" && (!errors.As(err, &ue) || ue.Flag != ""):
			t.Errorf("%+v: %v, want a refusal without override", tc.vs, err)
		case tc.flag != "" && tc.flag != "none" && (!errors.As(err, &ue) || ue.Flag != tc.flag || !errors.Is(err, ErrUnsafe)):
			t.Errorf("%+v: %v, want refusal naming %s", tc.vs, err, tc.flag)
		}
	}
}

// hivexEditor applies changes with python3-hivex (an independent registry
// writer) until kvmify's own editor exists.
func hivexEditor(t *testing.T) HiveEditor {
	testutil.RequirePython3Module(t, "hivex")
	return func(hive []byte, changes []bootfix.Change) ([]byte, error) {
		path := filepath.Join(t.TempDir(), "SYSTEM")
		if err := os.WriteFile(path, hive, 0o600); err != nil {
			return nil, err
		}
		type cj struct {
			Key   string     `json:"key"`
			Value string     `json:"value"`
			Op    bootfix.Op `json:"op"`
			Type  uint32     `json:"type"`
			Data  string     `json:"data"`
		}
		var in []cj
		for _, c := range changes {
			j := cj{Key: c.Key, Value: c.Value, Op: c.Op}
			if c.New != nil {
				j.Type, j.Data = c.New.Type, hex.EncodeToString(c.New.Data)
			}
			in = append(in, j)
		}
		if _, err := testutil.HivexApply(t, path, in, false); err != nil {
			return nil, err
		}
		return os.ReadFile(path)
	}
}

func TestPlanPatchXP(t *testing.T) {
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, []string{"atapi.sys", "intelide.sys", "pciidex.sys", "disk.sys"}...)
	in := inspectOne(t, root)
	p, err := PlanPatch(in, bootfix.TargetIDE, PlanOptions{Edit: hivexEditor(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Before.OK || !p.After.OK {
		t.Errorf("before %s %q, after %s %q; want 0x7B then boots", p.Before.Verdict(), p.Before.Reason, p.After.Verdict(), p.After.Reason)
	}
	if len(p.MissingFiles) != 1 || !strings.EqualFold(p.MissingFiles[0].Path, `System32\drivers\pciide.sys`) ||
		!strings.Contains(p.MissingFiles[0].From, `Driver Cache\i386\sp3.cab`) {
		t.Errorf("missing files %+v, want pciide.sys from Driver Cache\\i386\\sp3.cab", p.MissingFiles)
	}
	ph, err := registry.Open(p.PatchedHive)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ph.Lookup(`ControlSet001\Control\CriticalDeviceDatabase\pci#ven_8086&dev_7010`)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k.Value("Service"); err != nil {
		t.Error(err)
	} else if s, _ := v.String(); s != "intelide" {
		t.Errorf("patched CDDB 7010 Service = %q", s)
	}
	if !bytes.Equal(p.OriginalHive, in.OnDisk) {
		t.Error("plan's original hive is not the file on disk")
	}
}

func TestFindOnMkntfsDisk(t *testing.T) {
	for _, tool := range []string{"mkntfs", "ntfs-3g", "sfdisk"} {
		testutil.RequireTool(t, tool)
	}
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, ideDrivers...)
	img := testutil.MkDisk(t, root, 24)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	vols, err := Find(f, fi.Size(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || !vols[0].NTFS || vols[0].Partition.Start != 1<<20 || !errors.Is(vols[0].Err, ErrNoOpener) {
		t.Fatalf("volumes = %+v, want one NTFS partition at 1 MiB (not readable without an opener)", vols)
	}
	vols, err = Find(f, fi.Size(), OpenNTFS)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols[0].Err != nil || len(vols[0].Installs) != 1 {
		t.Fatalf("through package ntfs: %+v", vols)
	}
	in := vols[0].Installs[0]
	if p, _ := in.Prediction(bootfix.TargetIDE); p.OK || in.HiveState != HiveClean || in.ControlSet != "ControlSet001" {
		t.Errorf("install on the NTFS disk: ide %s %q, hive %s", p.Verdict(), p.Reason, in.HiveState)
	}
	// mkntfs and a clean ntfs-3g unmount leave a volume that is safe to patch.
	if err := CheckSafety(in, vols[0].State, Overrides{}); err != nil {
		t.Errorf("fresh mkntfs volume refused: %v (state %+v)", err, vols[0].State)
	}
	// The hive read through NTFS is the file that was put in the tree.
	want, _ := os.ReadFile(testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM"))
	if !bytes.Equal(in.OnDisk, want) {
		t.Error("SYSTEM read through package ntfs differs from the corpus file")
	}
}

// TestPlanPatchWin10Recovered patches the hive recovered from its logs: the
// plan starts from the recovered state, says so, and the result boots.
func TestPlanPatchWin10Recovered(t *testing.T) {
	in := inspectOne(t, testutil.WindowsTree(t, "win10-1709-x64.SYSTEM", []string{".LOG1", ".LOG2"}, []string{"storahci.sys", "disk.sys"}...))
	p, err := PlanPatch(in, bootfix.TargetAHCI, PlanOptions{Edit: hivexEditor(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Before.OK || !p.After.OK {
		t.Errorf("before %s %q, after %s %q", p.Before.Verdict(), p.Before.Reason, p.After.Verdict(), p.After.Reason)
	}
	noted := false
	for _, n := range p.Notes {
		noted = noted || strings.Contains(n, "recovered from its logs")
	}
	if !noted {
		t.Errorf("notes %q do not say the hive was recovered", p.Notes)
	}
	ph, err := registry.Open(p.PatchedHive)
	if err != nil {
		t.Fatal(err)
	}
	if dirty, why := ph.Dirty(); dirty {
		t.Errorf("patched hive is dirty (%s): Windows would replay the logs over the patch", why)
	}
	if _, err := ph.Lookup(`ControlSet001\Services\storahci\StartOverride`); err != nil {
		t.Fatal(err)
	}
}

// softwareHive builds a SOFTWARE-like hive at test time: a real small hive
// (yarp's, as recovered by Windows 7) with a CurrentVersion key added by
// hivex.
func softwareHive(t *testing.T, values []bootfix.Change) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.CorpusFile(t, "yarp-olddirty.recovered-by-win7"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := hivexEditor(t)(b, values)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVersionFromSoftwareHive(t *testing.T) {
	cv := `Microsoft\Windows NT\CurrentVersion`
	set := func(name string, v bootfix.Value) bootfix.Change {
		return bootfix.Change{Key: cv, Value: name, Op: bootfix.OpSet, New: &v}
	}
	for _, tc := range []struct {
		values []bootfix.Change
		want   string
		name   string
	}{
		{[]bootfix.Change{
			set("CurrentVersion", bootfix.String(bootfix.TypeSZ, "6.3")),
			set("CurrentMajorVersionNumber", bootfix.DWORD(10)),
			set("CurrentMinorVersionNumber", bootfix.DWORD(0)),
			set("CurrentBuild", bootfix.String(bootfix.TypeSZ, "16299")),
			set("ProductName", bootfix.String(bootfix.TypeSZ, "Windows 10 Pro")),
		}, "10.0.16299", "Windows 10 Pro"},
		{[]bootfix.Change{
			set("CurrentVersion", bootfix.String(bootfix.TypeSZ, "5.1")),
			set("CurrentBuildNumber", bootfix.String(bootfix.TypeSZ, "2600")),
			set("ProductName", bootfix.String(bootfix.TypeSZ, "Microsoft Windows XP")),
		}, "5.1.2600", "Microsoft Windows XP"},
	} {
		root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, ideDrivers...)
		sw := softwareHive(t, tc.values)
		if err := os.WriteFile(filepath.Join(root, "Windows", "System32", "config", "software"), sw, 0o644); err != nil {
			t.Fatal(err)
		}
		in := inspectOne(t, root)
		if in.Version.String() != tc.want || in.Version.ProductName != tc.name || in.Version.Source != bootfix.SourceSoftwareHive {
			t.Errorf("version %s %q from %s, want %s %q from the SOFTWARE hive", in.Version, in.Version.ProductName, in.Version.Source, tc.want, tc.name)
		}
	}
}
