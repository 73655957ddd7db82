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
	v.Source = SourceSoftwareHive
	return v, true, nil
}

// FromSystem guesses the version from evidence in the SYSTEM hive alone: a
// DriverDatabase means 8 or later, an msahci service means Vista/7, a
// CriticalDeviceDatabase without either means NT 5.x.
func FromSystem(system Hive) (Version, error) {
	v := Version{Source: SourceSystemHive}
	cs, err := CurrentControlSet(system)
	if err != nil {
		return v, err
	}
	if v.Server, err = isServer(system, cs.Name); err != nil {
		return v, err
	}
	if ok, err := keyExists(system, driverDatabaseKey); err != nil {
		return v, err
	} else if ok {
		v.Major, v.Minor, v.Evidence = 6, 2, "DriverDatabase present (Windows 8 or later)"
		return v, nil
	}
	if ok, err := keyExists(system, join(cs.Name, servicesKey, "msahci")); err != nil {
		return v, err
	} else if ok {
		v.Major, v.Minor, v.Evidence = 6, 0, "msahci service present (Vista/7)"
		return v, nil
	}
	if ok, err := keyExists(system, join(cs.Name, cddbKey)); err != nil {
		return v, err
	} else if ok {
		v.Major, v.Minor, v.Evidence = 5, 1, "CriticalDeviceDatabase without DriverDatabase or msahci (NT 5.x)"
		// Control\Windows CSDVersion holds the service pack as 0xSS00.
		if sp, ok, err := dword(system, join(cs.Name, controlWindowsKey), "CSDVersion"); err != nil {
			return v, err
		} else if ok && sp>>8 != 0 {
			v.ServicePack = fmt.Sprintf("Service Pack %d", sp>>8)
		}
		return v, nil
	}
	return v, fmt.Errorf("bootfix: no version evidence in the SYSTEM hive (no DriverDatabase, msahci or CriticalDeviceDatabase): %w", ErrUnsupported)
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
			if cs, err := CurrentControlSet(system); err == nil {
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
	cs, err := CurrentControlSet(system)
	if err != nil {
		return "", err
	}
	a, _, err := text(system, join(cs.Name, `Control\Session Manager\Environment`), "PROCESSOR_ARCHITECTURE")
	return a, err
}
