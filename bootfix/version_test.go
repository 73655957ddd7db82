package bootfix

import (
	"strings"
	"testing"

	"github.com/kvmify/kvmify/registry"
)

// TestVersionsFromSystemCorpus checks the version each corpus SYSTEM hive
// alone gives; the expected builds are those of the corpus README (XP SP3
// 2600, 7 SP1 7601, 10 1709 16299).
func TestVersionsFromSystemCorpus(t *testing.T) {
	for _, tc := range []struct {
		file, want, evidence string
	}{
		{"xp-sp3-x86.SYSTEM", "5.1.2600", "mshdc.inf"},
		{"win7-sp1-x64.SYSTEM", "6.1.7601", "mshdc.inf"},
		{"win10-1709-x64.SYSTEM", "10.0.16299", "OSProductPfn"},
	} {
		_, h := corpusHive(t, tc.file)
		v, err := FromSystem(FromRegistry(h))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if v.String() != tc.want || v.Source != SourceSystemHive || !strings.Contains(v.Evidence, tc.evidence) {
			t.Errorf("%s: %s from %s (%s), want %s with %s", tc.file, v, v.Source, v.Evidence, tc.want, tc.evidence)
		}
	}
}

// evidenceHive rewrites the inbox DriverVersion of the Windows 10 corpus
// hive (and drops or keeps its 10-only evidence) with kvmify's registry
// editor, to make the SYSTEM hive of another release: the corpus has no 8.1
// or 2004+ hive. (python3-hivex cannot be used here: rewriting
// ProductOptions' values stores its 30 KiB ProductPolicy without the big-data
// record hives of version 1.4+ need.)
func evidenceHive(t *testing.T, driverVersion string, keep10 bool) *registry.Hive {
	t.Helper()
	data, h := corpusHive(t, "win10-1709-x64.SYSTEM")
	var changes []Change
	for _, class := range versionClasses {
		key := join("ControlSet001", classKey, class)
		subs, _, err := FromRegistry(h).Subkeys(key)
		if err != nil {
			t.Fatal(err)
		}
		for _, sub := range subs {
			if _, ok, _ := FromRegistry(h).Value(join(key, sub), "DriverVersion"); ok {
				v := String(TypeSZ, driverVersion)
				changes = append(changes, Change{Key: join(key, sub), Value: "DriverVersion", Op: OpSet, New: &v})
			}
		}
	}
	lab := String(TypeSZ, "")
	changes = append(changes, Change{Key: `ControlSet001\Control\Windows`, Value: "ShutdownStopTimePerfCounterBuildLab", Op: OpSet, New: &lab})
	if !keep10 {
		changes = append(changes, Change{Key: `ControlSet001\Control\ProductOptions`, Value: "OSProductPfn", Op: OpDelete})
	}
	return editHive(t, data, changes)
}

func TestVersionsFromSystemEvidenceHives(t *testing.T) {
	for _, tc := range []struct {
		driverVersion string
		keep10        bool
		want, product string
		fam           Family
	}{
		{"6.3.9600.16384", false, "6.3.9600", "", FamilyNT62},
		{"10.0.19041.1", true, "10.0.19041", "", FamilyNT62},
		{"10.0.22000.1", true, "10.0.22000", "Windows 11", FamilyNT62},
	} {
		v, err := FromSystem(FromRegistry(evidenceHive(t, tc.driverVersion, tc.keep10)))
		if err != nil {
			t.Fatal(err)
		}
		if v.String() != tc.want || v.ProductName != tc.product || v.Family() != tc.fam {
			t.Errorf("DriverVersion %s: %s %q (%s), want %s %q", tc.driverVersion, v, v.ProductName, v.Evidence, tc.want, tc.product)
		}
	}
}

// A Windows 11 SOFTWARE hive still says "Windows 10 Pro"; the build names it.
func TestWindows11FromSoftware(t *testing.T) {
	sw := mapHive{`Microsoft\Windows NT\CurrentVersion`: {
		"CurrentMajorVersionNumber": DWORD(10), "CurrentMinorVersionNumber": DWORD(0),
		"CurrentBuildNumber": String(TypeSZ, "22631"), "ProductName": String(TypeSZ, "Windows 10 Pro"),
	}}
	v, ok, err := FromSoftware(sw)
	if err != nil || !ok || v.ProductName != "Windows 11 Pro" || v.String() != "10.0.22631" {
		t.Errorf("FromSoftware = %+v, %v, %v; want Windows 11 Pro 10.0.22631", v, ok, err)
	}
}

// mapHive is a one-level in-memory Hive for version tests.
type mapHive map[string]map[string]Value

func (m mapHive) Subkeys(path string) ([]string, bool, error) {
	_, ok := m[path]
	return nil, ok, nil
}

func (m mapHive) Values(path string) ([]string, bool, error) {
	var out []string
	for n := range m[path] {
		out = append(out, n)
	}
	_, ok := m[path]
	return out, ok, nil
}

func (m mapHive) Value(path, name string) (Value, bool, error) {
	v, ok := m[path][name]
	return v, ok, nil
}
