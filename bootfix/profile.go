package bootfix

import (
	"fmt"
	"strings"
)

// Device setup class GUIDs used in CriticalDeviceDatabase entries.
const (
	ClassHDC  = "{4D36E96A-E325-11CE-BFC1-08002BE10318}" // IDE ATA/ATAPI controllers
	ClassDisk = "{4D36E967-E325-11CE-BFC1-08002BE10318}" // disk drives
	// ClassSCSIAdapter holds storage controllers with Storport/SCSI
	// miniports (storahci, stornvme).
	ClassSCSIAdapter = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
	ClassVolume      = "{71A27CDD-812A-11D0-BEC7-08002BE2092F}" // volumes (volume.inf)
)

// Setting is one piece of registry state a profile wants in every patched
// control set. Key is relative to ControlSetNNN.
type Setting struct {
	Key   string
	Value string
	Want  Value
	// IfKeyAbsent leaves an existing Key alone: a CriticalDeviceDatabase
	// entry Windows already has (pointing wherever) is not overwritten.
	IfKeyAbsent bool
	// FoldCase treats a string value equal to Want but for case as
	// already right (file paths).
	FoldCase bool
}

// Profile is the boot fix for one Windows family and target.
type Profile struct {
	Name     string
	Settings []Setting
	// ClearStartOverride names services whose StartOverride values
	// (Windows 8+) must go so that Start 0 takes effect.
	ClearStartOverride []string
	// DriverFiles must exist, relative to the Windows directory.
	DriverFiles []string
}

// serviceDef is a boot-start service as MergeIDE writes it.
type serviceDef struct {
	name, group, image, displayName string
	tag                             uint32
}

// The XP/2003 services as MergeIDE's .reg (Microsoft KB 314082) writes
// them: key names atapi, IntelIde and PCIIde, atapi's DisplayName, groups
// and tags. The KB page itself could not be read; the values are those of
// the .reg as reproduced in public P2V scripts and guides, which agree with
// each other. MergeIDE's ImagePath says System32\DRIVERS\…, XP's own setup
// system32\DRIVERS\…; Windows reads paths without regard to case, so an
// install's ImagePath that differs only in case is left alone.
var nt5Services = []serviceDef{
	{name: "atapi", group: "SCSI miniport", image: `System32\DRIVERS\atapi.sys`, tag: 0x19, displayName: "Standard IDE/ESDI Hard Disk Controller"},
	{name: "IntelIde", group: "System Bus Extender", image: `System32\DRIVERS\intelide.sys`, tag: 4},
	{name: "PCIIde", group: "System Bus Extender", image: `System32\DRIVERS\pciide.sys`, tag: 3},
}

// Service values MergeIDE sets besides Group, Tag and ImagePath.
const (
	serviceTypeKernelDriver uint32 = 1 // Type: SERVICE_KERNEL_DRIVER
	errorControlNormal      uint32 = 1 // ErrorControl: log and continue
)

// cddbEntry is one CriticalDeviceDatabase key of the MergeIDE set.
type cddbEntry struct {
	key, service, class string
}

// The MergeIDE CriticalDeviceDatabase set: the generic channel and disk IDs,
// the generic IDE class, the vendor IDE controllers pciide drives, and the
// Intel PIIX/ICH controllers intelide drives (PIIX3 7010 is QEMU's).
var nt5CDDB = func() []cddbEntry {
	e := []cddbEntry{
		{"primary_ide_channel", "atapi", ClassHDC},
		{"secondary_ide_channel", "atapi", ClassHDC},
		{"*pnp0600", "atapi", ClassHDC},
		{"*azt0502", "atapi", ClassHDC},
		{"gendisk", "disk", ClassDisk},
		{"pci#cc_0101", "pciide", ClassHDC},
	}
	for _, vd := range []string{
		"0e11&dev_ae33", "1039&dev_0601", "1039&dev_5513", "1042&dev_1000",
		"105a&dev_4d33", "1095&dev_0640", "1095&dev_0646", "1095&dev_0648",
		"1095&dev_0646&rev_05", "1095&dev_0646&rev_07", "1095&dev_0649", "1097&dev_0038", "10ad&dev_0001", "10ad&dev_0150",
		"10b9&dev_5215", "10b9&dev_5219", "10b9&dev_5229", "1106&dev_0571",
	} {
		e = append(e, cddbEntry{"pci#ven_" + vd, "pciide", ClassHDC})
	}
	for _, dev := range []string{"1222", "1230", "2411", "2421", "7010", "7111", "7199"} {
		e = append(e, cddbEntry{"pci#ven_8086&dev_" + dev, "intelide", ClassHDC})
	}
	return e
}()

var ideDriverFiles = []string{
	`System32\drivers\atapi.sys`, `System32\drivers\intelide.sys`,
	`System32\drivers\pciide.sys`, `System32\drivers\pciidex.sys`,
}

// ProfileFor returns the boot fix for a Windows version and target.
func ProfileFor(v Version, t Target) (Profile, error) {
	fam := v.Family()
	switch {
	case t == TargetVirtio:
		return Profile{}, fmt.Errorf("%w for virtio on %s: Windows has no inbox virtio-blk driver (install viostor from the virtio-win drivers)", ErrUnsupported, fam)
	case fam == FamilyNT5 && t == TargetIDE:
		return nt5IDE(), nil
	case fam == FamilyNT5 && t == TargetAHCI:
		return Profile{}, fmt.Errorf("%w for ahci on %s: it has no inbox AHCI driver; use --target ide", ErrUnsupported, fam)
	case fam == FamilyNT60 && t == TargetIDE:
		p := startZero("Vista/7 IDE", []string{"intelide", "pciide", "atapi"}, ideDriverFiles)
		p.Settings = append(p.Settings, cddb("pci#ven_8086&dev_7010", "intelide", ClassHDC, true)...)
		return p, nil
	case fam == FamilyNT60 && t == TargetAHCI:
		p := startZero("Vista/7 AHCI", []string{"msahci"}, []string{`System32\drivers\msahci.sys`})
		p.Settings = append(p.Settings, cddb("pci#cc_010601", "msahci", ClassHDC, true)...)
		return p, nil
	case fam == FamilyNT62 && t == TargetIDE:
		p := startZero("8+ IDE", []string{"intelide", "pciide", "atapi"}, ideDriverFiles)
		p.ClearStartOverride = []string{"intelide", "pciide", "atapi"}
		return p, nil
	case t == TargetNVMe && fam != FamilyNT62:
		return Profile{}, fmt.Errorf("%w for nvme on Windows %s: the inbox NVMe driver (stornvme) arrived with Windows 8.1; use --target ahci", ErrUnsupported, v)
	case t == TargetNVMe:
		// stornvme binds PCI\CC_010802 through the DriverDatabase of
		// Windows 8.1 and later; only its start type and override need
		// setting. Windows 8 (6.2) has no stornvme service: the prediction
		// says so rather than the profile, since a SYSTEM-only guess cannot
		// tell 8 from 8.1.
		p := startZero("8.1+ NVMe", []string{"stornvme"}, []string{`System32\drivers\stornvme.sys`})
		p.ClearStartOverride = []string{"stornvme"}
		return p, nil
	case fam == FamilyNT62 && t == TargetAHCI:
		p := startZero("8+ AHCI", []string{"storahci"}, []string{`System32\drivers\storahci.sys`})
		p.ClearStartOverride = []string{"storahci"}
		return p, nil
	}
	return Profile{}, fmt.Errorf("%w for %s on Windows %s (%s)", ErrUnsupported, t, v, fam)
}

func nt5IDE() Profile {
	p := Profile{Name: "MergeIDE (XP/2003 IDE)", DriverFiles: ideDriverFiles}
	for _, e := range nt5CDDB {
		p.Settings = append(p.Settings, cddb(e.key, e.service, e.class, false)...)
	}
	for _, s := range nt5Services {
		k := join(servicesKey, s.name)
		p.Settings = append(p.Settings,
			Setting{Key: k, Value: "ErrorControl", Want: DWORD(errorControlNormal)},
			Setting{Key: k, Value: "Group", Want: String(TypeSZ, s.group)},
			Setting{Key: k, Value: valueStart, Want: DWORD(StartBoot)},
			Setting{Key: k, Value: "Tag", Want: DWORD(s.tag)},
			Setting{Key: k, Value: "Type", Want: DWORD(serviceTypeKernelDriver)},
			Setting{Key: k, Value: valueImagePath, Want: String(TypeExpandSZ, s.image), FoldCase: true},
		)
		if s.displayName != "" {
			p.Settings = append(p.Settings, Setting{Key: k, Value: "DisplayName", Want: String(TypeSZ, s.displayName)})
		}
	}
	return p
}

func cddb(key, service, class string, ifAbsent bool) []Setting {
	k := join(cddbKey, key)
	return []Setting{
		{Key: k, Value: valueService, Want: String(TypeSZ, service), IfKeyAbsent: ifAbsent},
		{Key: k, Value: "ClassGUID", Want: String(TypeSZ, class), IfKeyAbsent: ifAbsent},
	}
}

func startZero(name string, services, files []string) Profile {
	p := Profile{Name: name, DriverFiles: files}
	for _, s := range services {
		p.Settings = append(p.Settings, Setting{Key: join(servicesKey, s), Value: valueStart, Want: DWORD(StartBoot)})
	}
	return p
}

// Extra is an opt-in change beyond the boot fix.
type Extra string

// The extras; all are off unless asked for.
const (
	// ExtraAutoReboot sets CrashControl\AutoReboot 0 so a STOP screen stays
	// visible instead of rebooting in a loop.
	ExtraAutoReboot Extra = "autoreboot"
	// ExtraCPUPower disables the processor power-management drivers
	// (intelppm, amdppm, processr, AmdK8), which crash some guests on CPUs
	// QEMU does not fully model (what virt-v2v and the usual P2V guides
	// disable; no Microsoft source could be read). "intelppm" is accepted
	// as its old name.
	ExtraCPUPower Extra = "cpu-power"
	// ExtraFilters removes class UpperFilters/LowerFilters entries whose
	// service key or driver file is missing (a leftover filter stops the
	// whole class from starting).
	ExtraFilters Extra = "filters"
)

// Extras lists every extra.
var Extras = []Extra{ExtraAutoReboot, ExtraCPUPower, ExtraFilters}

// extraAliases are older names of extras.
var extraAliases = map[string]Extra{"intelppm": ExtraCPUPower}

// cpuPowerServices are the processor drivers ExtraCPUPower disables where
// the hive has them.
var cpuPowerServices = []string{"intelppm", "amdppm", "processr", "AmdK8"}

// ParseExtras parses a comma-separated list of extras.
func ParseExtras(s string) ([]Extra, error) {
	var out []Extra
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		found := false
		for _, e := range Extras {
			if strings.EqualFold(f, string(e)) {
				out = append(out, e)
				found = true
			}
		}
		if e, ok := extraAliases[strings.ToLower(f)]; ok && !found {
			out = append(out, e)
			found = true
		}
		if !found {
			return nil, fmt.Errorf("bootfix: unknown extra %q (want autoreboot, cpu-power or filters)", f)
		}
	}
	return out, nil
}
