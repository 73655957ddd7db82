package bootfix

import (
	"fmt"
	"strconv"
	"strings"
)

// Family groups Windows versions that share a storage-boot mechanism and a
// profile.
type Family int

// Families, oldest first.
const (
	FamilyUnknown Family = iota
	FamilyNT5            // 2000 / XP / Server 2003: CriticalDeviceDatabase, MergeIDE
	FamilyNT60           // Vista / 7 / Server 2008 (R2): CriticalDeviceDatabase, msahci
	FamilyNT62           // 8 and later / Server 2012 and later: DriverDatabase, storahci
)

var familyNames = [...]string{"unknown", "NT 5.x (2000/XP/2003)", "NT 6.0/6.1 (Vista/7/2008)", "NT 6.2+ (8/10/11/2012+)"}

func (f Family) String() string {
	if int(f) < len(familyNames) {
		return familyNames[f]
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

// Where a Version came from.
const (
	SourceSoftwareHive = "SOFTWARE hive"
	SourceKernelImage  = "ntoskrnl.exe version resource"
	SourceSystemHive   = "SYSTEM hive evidence"
)

// Version is what is known about a Windows install's version.
type Version struct {
	Major, Minor uint32
	Build        uint32 // 0 when unknown
	ProductName  string // e.g. "Windows 7 Professional"; may be empty
	ServicePack  string // e.g. "Service Pack 3"; may be empty
	Server       bool   // ProductType ServerNT or LanmanNT
	Source       string // one of the Source* constants
	// Evidence explains a SYSTEM-hive guess ("DriverDatabase present").
	Evidence string
}

// String renders the version as "6.1.7601".
func (v Version) String() string {
	if v.Build != 0 {
		return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Build)
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// Family classifies the version.
func (v Version) Family() Family {
	switch {
	case v.Major == 5:
		return FamilyNT5
	case v.Major == 6 && v.Minor <= 1:
		return FamilyNT60
	case v.Major == 6 || v.Major >= 10:
		return FamilyNT62
	}
	return FamilyUnknown
}

// Key paths inside the SOFTWARE and SYSTEM hives consulted for the version.
const (
	softwareCurrentVersion = `Microsoft\Windows NT\CurrentVersion`
	driverDatabaseKey      = "DriverDatabase"
	productOptionsKey      = `Control\ProductOptions`
	cddbKey                = `Control\CriticalDeviceDatabase`
	servicesKey            = "Services"
	controlWindowsKey      = `Control\Windows`
)

// FromSoftware reads the version from a SOFTWARE hive's
// Microsoft\Windows NT\CurrentVersion; ok is false when the key lacks a
// usable version.
func FromSoftware(software Hive) (Version, bool, error) {
	var v Version
	cv := softwareCurrentVersion
	if major, ok, err := dword(software, cv, "CurrentMajorVersionNumber"); err != nil {
		return v, false, err
	} else if ok {
		// Windows 10 keeps CurrentVersion at "6.3" for old programs; the
		// DWORDs carry the real numbers.
		minor, _, err := dword(software, cv, "CurrentMinorVersionNumber")
		if err != nil {
			return v, false, err
		}
		v.Major, v.Minor = major, minor
	} else {
		s, ok, err := text(software, cv, "CurrentVersion")
		if err != nil || !ok {
			return v, false, err
		}
		maj, min, found := strings.Cut(strings.TrimSpace(s), ".")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if !found || err1 != nil || err2 != nil {
			return v, false, nil
		}
		v.Major, v.Minor = uint32(a), uint32(b)
	}
	for _, name := range []string{"CurrentBuildNumber", "CurrentBuild"} {
		s, ok, err := text(software, cv, name)
		if err != nil {
			return v, false, err
		}
		if n, perr := strconv.ParseUint(strings.TrimSpace(s), 10, 32); ok && perr == nil {
			v.Build = uint32(n)
			break
		}
	}
	var err error
	if v.ProductName, _, err = text(software, cv, "ProductName"); err != nil {
		return v, false, err
	}
	if v.ServicePack, _, err = text(software, cv, "CSDVersion"); err != nil {
		return v, false, err
	}
	// Windows 11 kept ProductName "Windows 10 …" in the SOFTWARE hive (as
	// widely reported; no Microsoft source could be read): the build tells.
	if v.Major == 10 && v.Build >= firstWindows11Build && strings.HasPrefix(v.ProductName, "Windows 10") {
		v.ProductName = "Windows 11" + strings.TrimPrefix(v.ProductName, "Windows 10")
	}
	v.Source = SourceSoftwareHive
	return v, true, nil
}

// Setup classes whose inbox drivers' DriverVersion tells the Windows build:
// every install has them. Only Microsoft's drivers count: a third-party INF
// is published as oemNN.inf, but Windows also ships vendors' INFs inbox
// (Windows 7's lsi_sas.inf 1.28.3.52, 10's iastorav.inf 13.44.0.1026 in
// the corpus hives), which carry the vendor's version.
var versionClasses = []string{
	ClassHDC, ClassSCSIAdapter, ClassDisk, ClassVolume,
	"{4D36E97D-E325-11CE-BFC1-08002BE10318}", // System devices
}

// Control\Windows values holding a build lab string ("16299.rs3_release.
// 170928-1534"), which Windows 10 and later write at shutdown. Known from the
// corpus Windows 10 hive; no documentation of them could be read.
var buildLabValues = []string{"ShutdownStopTimePerfCounterBuildLab", "BuildLab", "BuildLabEx"}

// Windows 11 kept major version 10; its builds start at 22000.
const firstWindows11Build = 22000

// FromSystem reads the version from evidence in the SYSTEM hive alone, best
// first: the DriverVersion of the inbox drivers in Control\Class (which
// carries the OS build, e.g. 6.1.7601.17514), a build lab string in
// Control\Windows, OSProductPfn in ProductOptions (Windows 10/11 only), and
// the storage mechanisms: a DriverDatabase means 8 or later, an msahci
// service Vista/7, a CriticalDeviceDatabase without either NT 5.x. Evidence
// names what was used; Build stays 0 when nothing gives it.
func FromSystem(system Hive) (Version, error) {
	v := Version{Source: SourceSystemHive}
	cs, err := BootControlSet(system, false)
	if err != nil {
		return v, err
	}
	if v.Server, err = isServer(system, cs.Name); err != nil {
		return v, err
	}
	// Control\Windows CSDVersion holds the service pack as 0xSS00.
	if sp, ok, err := dword(system, join(cs.Name, controlWindowsKey), "CSDVersion"); err != nil {
		return v, err
	} else if ok && sp>>8 != 0 {
		v.ServicePack = fmt.Sprintf("Service Pack %d", sp>>8)
	}
	var evidence []string
	dv, where, err := inboxDriverVersion(system, cs.Name)
	if err != nil {
		return v, err
	}
	if dv.Major != 0 {
		v.Major, v.Minor, v.Build = dv.Major, dv.Minor, dv.Build
		evidence = append(evidence, fmt.Sprintf("inbox DriverVersion %d.%d.%d (%s)", dv.Major, dv.Minor, dv.Build, where))
	}
	if build, lab, err := buildLab(system, cs.Name); err != nil {
		return v, err
	} else if build != 0 {
		if v.Build == 0 || v.Major >= 10 {
			v.Build = build
		}
		evidence = append(evidence, "build lab "+lab)
	}
	pfn, hasPfn, err := text(system, join(cs.Name, productOptionsKey), "OSProductPfn")
	if err != nil {
		return v, err
	}
	if hasPfn && pfn != "" {
		if v.Major == 0 || v.Major == 6 && v.Minor >= 2 {
			v.Major, v.Minor = 10, 0
		}
		evidence = append(evidence, "OSProductPfn present (Windows 10 or 11)")
	}
	if v.Major == 0 {
		if err := v.structuralGuess(system, cs.Name, &evidence); err != nil {
			return v, err
		}
	}
	if v.Major == 10 && v.Build >= firstWindows11Build {
		v.ProductName = "Windows 11"
	}
	v.Evidence = strings.Join(evidence, "; ")
	return v, nil
}

// structuralGuess sets major.minor from which storage databases and drivers
// the hive has, when nothing names the version.
func (v *Version) structuralGuess(system Hive, controlSet string, evidence *[]string) error {
	if ok, err := keyExists(system, driverDatabaseKey); err != nil {
		return err
	} else if ok {
		v.Major, v.Minor = 6, 2
		*evidence = append(*evidence, "DriverDatabase present (Windows 8 or later)")
		return nil
	}
	if ok, err := keyExists(system, join(controlSet, servicesKey, "msahci")); err != nil {
		return err
	} else if ok {
		v.Major, v.Minor = 6, 0
		*evidence = append(*evidence, "msahci service present (Vista/7)")
		return nil
	}
	if ok, err := keyExists(system, join(controlSet, cddbKey)); err != nil {
		return err
	} else if ok {
		v.Major, v.Minor = 5, 1
		*evidence = append(*evidence, "CriticalDeviceDatabase without DriverDatabase or msahci (NT 5.x)")
		return nil
	}
	return fmt.Errorf("bootfix: no version evidence in the SYSTEM hive (no inbox DriverVersion, DriverDatabase, msahci or CriticalDeviceDatabase): %w", ErrUnsupported)
}

// inboxDriverVersion returns the highest major.minor.build among the
// DriverVersion values of inbox-INF devices of versionClasses. Inbox
// drivers serviced by an update keep the OS's major.minor.build (only the
// revision moves), so the highest is the running build; a lower one is a
// driver left at the RTM build (Windows 7 SP1's disk.inf says 6.1.7600).
func inboxDriverVersion(system Hive, controlSet string) (FileVersion4, string, error) {
	var best FileVersion4
	var where string
	for _, class := range versionClasses {
		key := join(controlSet, classKey, class)
		subs, ok, err := system.Subkeys(key)
		if err != nil {
			return best, "", err
		}
		if !ok {
			continue
		}
		for _, sub := range subs {
			k := join(key, sub)
			inf, _, err := text(system, k, "InfPath")
			if err != nil {
				return best, "", err
			}
			if inf == "" || strings.HasPrefix(strings.ToLower(inf), "oem") {
				continue
			}
			if prov, _, err := text(system, k, "ProviderName"); err != nil {
				return best, "", err
			} else if !strings.HasPrefix(strings.ToLower(prov), "microsoft") {
				continue
			}
			s, ok, err := text(system, k, "DriverVersion")
			if err != nil {
				return best, "", err
			}
			fv, good := parseFileVersion(s)
			if !ok || !good || fv.Major < 5 {
				continue
			}
			if fv.newer(best) {
				best, where = fv, fmt.Sprintf(`Control\Class\%s\%s %s`, class, sub, inf)
			}
		}
	}
	return best, where, nil
}

// FileVersion4 is a dotted four-part version (a.b.c.d) as INFs state it.
type FileVersion4 struct{ Major, Minor, Build, Revision uint32 }

func (a FileVersion4) newer(b FileVersion4) bool {
	if a.Major != b.Major {
		return a.Major > b.Major
	}
	if a.Minor != b.Minor {
		return a.Minor > b.Minor
	}
	return a.Build > b.Build
}

// parseFileVersion parses "6.1.7601.17514" (at least three parts).
func parseFileVersion(s string) (FileVersion4, bool) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 3 || len(parts) > 4 {
		return FileVersion4{}, false
	}
	var n [4]uint32
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return FileVersion4{}, false
		}
		n[i] = uint32(x)
	}
	return FileVersion4{n[0], n[1], n[2], n[3]}, true
}

// buildLab reads the build number from a build lab string in
// Control\Windows: the digits before the first dot.
func buildLab(system Hive, controlSet string) (uint32, string, error) {
	for _, name := range buildLabValues {
		s, ok, err := text(system, join(controlSet, controlWindowsKey), name)
		if err != nil {
			return 0, "", err
		}
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(s, ".")
		if n, err := strconv.ParseUint(num, 10, 32); err == nil && n > 0 {
			return uint32(n), s, nil
		}
	}
	return 0, "", nil
}

// isServer reads Control\ProductOptions\ProductType: WinNT is a workstation,
// ServerNT and LanmanNT are servers.
func isServer(system Hive, controlSet string) (bool, error) {
	pt, ok, err := text(system, join(controlSet, productOptionsKey), "ProductType")
	if err != nil || !ok {
		return false, err
	}
	return !strings.EqualFold(pt, "WinNT"), nil
}

// DetectVersion reads the version from the SOFTWARE hive when one is given
// and usable, else from SYSTEM-hive evidence. (The kernel image, the middle
// source, lives on disk; package windows consults it between the two.)
func DetectVersion(system, software Hive) (Version, error) {
	if software != nil {
		v, ok, err := FromSoftware(software)
		if err != nil {
			return v, err
		}
		if ok {
			if cs, err := BootControlSet(system, false); err == nil {
				v.Server, _ = isServer(system, cs.Name)
			}
			return v, nil
		}
	}
	return FromSystem(system)
}

// Arch reads PROCESSOR_ARCHITECTURE from the current control set's
// Session Manager\Environment ("x86", "AMD64", "ARM64"); "" when absent.
func Arch(system Hive) (string, error) {
	cs, err := BootControlSet(system, false)
	if err != nil {
		return "", err
	}
	a, _, err := text(system, join(cs.Name, `Control\Session Manager\Environment`), "PROCESSOR_ARCHITECTURE")
	return a, err
}
