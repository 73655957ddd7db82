package bootfix

import (
	"fmt"
	"strings"
)

// Facts are what bootfix needs to know about an install beyond its SYSTEM
// hive.
type Facts struct {
	Version Version
	// Arch is PROCESSOR_ARCHITECTURE (x86, AMD64...), used to name where
	// missing drivers can be found; "" means x86.
	Arch string
	// LastKnownGood predicts the boot from Select\LastKnownGood (the boot
	// menu's "Last Known Good Configuration") instead of Select\Default.
	LastKnownGood bool
	// FileExists reports whether a file exists, given its path relative to
	// the Windows directory (`System32\drivers\atapi.sys`). Nil means the
	// files are unknown and are not checked.
	FileExists func(rel string) bool
	// Imports returns the modules a driver file imports, read from its PE
	// import table, given its path relative to the Windows directory; ok
	// is false when the file is not a readable PE image (a placeholder),
	// and the known imports of inbox drivers are used instead. Nil means
	// always the known list.
	Imports func(rel string) (modules []string, ok bool)
}

// Service start types (Services\<name>\Start).
const (
	StartBoot     uint32 = 0
	StartSystem   uint32 = 1
	StartAuto     uint32 = 2
	StartDemand   uint32 = 3
	StartDisabled uint32 = 4
)

var startNames = [...]string{"boot", "system", "automatic", "manual", "disabled"}

func startName(n uint32) string {
	if int(n) < len(startNames) {
		return startNames[n]
	}
	return "invalid"
}

// Key and value names of the service and driver databases.
const (
	startOverrideKey   = "StartOverride"
	deviceIDsKey       = `DriverDatabase\DeviceIds`
	driverInfFilesKey  = `DriverDatabase\DriverInfFiles`
	driverPackagesKey  = `DriverDatabase\DriverPackages`
	valueService       = "Service"
	valueStart         = "Start"
	valueImagePath     = "ImagePath"
	valueActive        = "Active"
	valueConfiguration = "Configuration"
)

// LinkKind says which link of the boot chain breaks.
type LinkKind string

// The links a prediction can find broken. Fixable ones (Fixable) are
// repaired by ComputeChanges; the others need files or drivers the registry
// cannot supply.
const (
	LinkNoMatch       LinkKind = "no-database-entry"     // no CDDB/DriverDatabase entry for the device
	LinkThirdParty    LinkKind = "third-party-entry"     // a more specific CDDB entry names a service that cannot start
	LinkNoService     LinkKind = "service-missing"       // the matched service has no key
	LinkStart         LinkKind = "service-not-boot"      // Start is not 0
	LinkStartOverride LinkKind = "start-override"        // StartOverride says later
	LinkFile          LinkKind = "driver-file-missing"   // the service's driver file is absent
	LinkImport        LinkKind = "import-missing"        // an export driver the driver imports is absent
	LinkFilterDead    LinkKind = "class-filter-dead"     // a class filter's service key or file is missing
	LinkFilterStart   LinkKind = "class-filter-not-boot" // a class filter's service is not boot-start
)

// Link is the step of the boot chain that breaks, with what names it.
type Link struct {
	Kind   LinkKind `json:"kind"`
	Device string   `json:"device"` // "controller ICH9 AHCI (q35)", "disk", "class DiskDrive"
	// Service is the service at fault (the filter's, for filter links).
	Service string `json:"service,omitempty"`
	// Key is the registry key at fault, from the hive root (a CDDB entry,
	// a service key, a class key).
	Key string `json:"key,omitempty"`
	// Value is the value at fault (UpperFilters, Start...), or "".
	Value string `json:"value,omitempty"`
	// File is the missing file, relative to the Windows directory.
	File string `json:"file,omitempty"`
	// Importer is the driver file that imports File (LinkImport).
	Importer string `json:"importer,omitempty"`
}

// Fixable reports whether ComputeChanges can repair the link in the
// registry.
func (l Link) Fixable() bool {
	switch l.Kind {
	case LinkThirdParty, LinkStart, LinkStartOverride, LinkFilterDead, LinkFilterStart:
		return true
	}
	return false
}

// Prediction says whether Windows will find a boot-start driver for a
// target's whole device chain (controller, IDE channel, disk), with every
// export driver they import, through the class filters of every class on
// the way.
type Prediction struct {
	Target Target
	// ControlSet is the control set predicted (Select\Default's).
	ControlSet string
	OK         bool
	// Reason is why it fails, or a summary of the drivers found when OK.
	Reason string
	// Broken is the link that fails; nil when OK.
	Broken *Link
	// Path records each step of the decision, e.g.
	// `controller: CriticalDeviceDatabase\pci#ven_8086&dev_7010 → intelide`.
	Path []string
}

// Verdict is "boots" or "0x7B", as inspect shows it.
func (p Prediction) Verdict() string {
	if p.OK {
		return "boots"
	}
	return "0x7B"
}

// Predict models boot-device binding in the control set the loader boots
// from: Select\Default, or Select\LastKnownGood when facts ask for it.
func Predict(h Hive, facts Facts, target Target) (Prediction, error) {
	cs, err := BootControlSet(h, facts.LastKnownGood)
	if err != nil {
		return Prediction{}, err
	}
	return PredictControlSet(h, cs.Name, facts, target)
}

// PredictControlSet models boot-device binding in one control set.
func PredictControlSet(h Hive, controlSet string, facts Facts, target Target) (Prediction, error) {
	p := Prediction{Target: target, ControlSet: controlSet}
	if _, ok := knownTarget(string(target)); !ok {
		return p, fmt.Errorf("%w %q", ErrUnknownTarget, target)
	}
	fail := func(l Link, format string, args ...any) (Prediction, error) {
		p.Broken = &l
		p.Reason = fmt.Sprintf(format, args...)
		return p, nil
	}
	groups, err := groupOrder(h, controlSet)
	if err != nil {
		return p, err
	}
	inbox := inboxControllerServices(target, facts.Version.Family())
	var drivers []string
	for i, dev := range target.chain() {
		m, found, err := matchDevice(h, controlSet, facts.Version.Family(), dev.ids)
		if err != nil {
			return p, err
		}
		if !found {
			return fail(Link{Kind: LinkNoMatch, Device: dev.what},
				"%s: no %s entry matches %s or any of its %d other IDs", dev.what, m.database, dev.ids[0], len(dev.ids)-1)
		}
		p.Path = append(p.Path, fmt.Sprintf("%s: %s → %s", dev.what, m.where, m.service))
		l, why, err := serviceBootable(h, controlSet, m.service, facts)
		if err != nil {
			return p, err
		}
		if l != nil {
			l.Device = dev.what
			if i == 0 && m.database == cddbDatabase && len(inbox) > 0 && !containsFold(inbox, m.service) {
				// A vendor's entry more specific than the inbox one wins
				// the lookup; the inbox driver never gets the device.
				return fail(Link{Kind: LinkThirdParty, Device: dev.what, Service: m.service, Key: join(controlSet, m.where)},
					"%s %s matches the third-party entry %s → %s before the inbox %s; %s",
					dev.what, m.id, m.where, m.service, strings.Join(inbox, "/"), why)
			}
			return fail(*l, "%s %s matches %s; %s", dev.what, m.id, m.service, why)
		}
		if g := serviceGroup(h, controlSet, m.service); g != "" && groups != nil && !containsFold(groups, g) {
			// The loader still loads a boot driver whose group is not
			// listed, after the listed groups (as the NT loader sorts its
			// boot driver list; no source of the loader could be read),
			// so this is recorded, not a break.
			p.Path = append(p.Path, fmt.Sprintf("note: %s group %q is not in ServiceGroupOrder (loaded after the listed groups)", m.service, g))
		}
		drivers = append(drivers, m.service)
	}
	for _, c := range target.classes(facts.Version.Family()) {
		l, why, err := classFiltersBootable(h, controlSet, c, facts)
		if err != nil {
			return p, err
		}
		if l != nil {
			return fail(*l, "%s", why)
		}
		p.Path = append(p.Path, fmt.Sprintf("class %s: filters load", c.name))
	}
	p.OK = true
	p.Reason = "boot-start drivers: " + strings.Join(drivers, ", ")
	return p, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// groupOrder reads Control\ServiceGroupOrder\List; nil when absent.
func groupOrder(h Hive, controlSet string) ([]string, error) {
	v, ok, err := h.Value(join(controlSet, `Control\ServiceGroupOrder`), "List")
	if err != nil || !ok {
		return nil, err
	}
	return v.Strings(), nil
}

func serviceGroup(h Hive, controlSet, svc string) string {
	g, _, _ := text(h, join(controlSet, servicesKey, svc), "Group")
	return g
}

// setupClass is a device setup class on the boot path.
type setupClass struct{ name, guid string }

// The storage classes whose filters sit on a boot device's stacks.
var (
	classHDC      = setupClass{"hdc", ClassHDC}
	classSCSI     = setupClass{"SCSIAdapter", ClassSCSIAdapter}
	classDiskDrv  = setupClass{"DiskDrive", ClassDisk}
	classVolumeSC = setupClass{"Volume", ClassVolume}
)

// classes lists the setup classes of the devices on the target's path: the
// controller's (hdc for the ATA drivers, SCSIAdapter for Storport
// miniports), the disk's and the volume's.
func (t Target) classes(fam Family) []setupClass {
	ctl := classSCSI
	if t == TargetIDE || t == TargetAHCI && fam != FamilyNT62 {
		ctl = classHDC
	}
	return []setupClass{ctl, classDiskDrv, classVolumeSC}
}

// classFiltersBootable checks every UpperFilters/LowerFilters entry of a
// class: Windows builds each device stack of the class with them, and a
// filter it cannot load fails the stack (the boot disk's, hence 0x7B). This
// is how Windows is observed to behave with leftover filters (the widely
// reported 0x7B after uninstalling a filter driver); no source of the PnP
// manager could be read.
func classFiltersBootable(h Hive, controlSet string, c setupClass, facts Facts) (*Link, string, error) {
	key := join(controlSet, classKey, c.guid)
	for _, name := range []string{"UpperFilters", "LowerFilters"} {
		v, ok, err := h.Value(key, name)
		if err != nil {
			return nil, "", err
		}
		if !ok || v.Type != TypeMultiSZ {
			continue
		}
		for _, svc := range v.Strings() {
			l, why, err := serviceBootable(h, controlSet, svc, facts)
			if err != nil {
				return nil, "", err
			}
			if l == nil {
				continue
			}
			// A missing key or driver file makes the entry dead (the fix
			// drops the name); a filter that is there but not boot-start
			// is enabled; a missing export driver is left to the user,
			// like a boot driver's.
			kind := LinkFilterStart
			switch l.Kind {
			case LinkNoService, LinkFile:
				kind = LinkFilterDead
			case LinkImport:
				kind = LinkImport
			}
			out := &Link{Kind: kind, Device: "class " + c.name, Service: svc, Key: key, Value: name, File: l.File, Importer: l.Importer}
			return out, fmt.Sprintf("class %s %s %s names %s: %s", c.name, c.guid, name, svc, why), nil
		}
	}
	return nil, "", nil
}

const cddbDatabase = "CriticalDeviceDatabase"

// match is the first database entry that binds one of a device's IDs.
type match struct {
	database string // "CriticalDeviceDatabase" or "DriverDatabase"
	id       string // the device ID that matched
	where    string // the key that matched
	service  string
}

// matchDevice finds the driver service Windows binds to a device: the first
// ID (hardware IDs before compatible IDs) with an entry wins.
func matchDevice(h Hive, controlSet string, fam Family, ids []string) (match, bool, error) {
	if fam == FamilyNT62 {
		return matchDriverDatabase(h, ids)
	}
	m := match{database: cddbDatabase}
	for _, id := range ids {
		key := join(controlSet, cddbKey, cddbName(id))
		svc, ok, err := text(h, key, valueService)
		if err != nil {
			return m, false, err
		}
		if ok && svc != "" {
			m.id, m.where, m.service = id, join(cddbKey, cddbName(id)), svc
			return m, true, nil
		}
	}
	return m, false, nil
}

// cddbName is a device ID as a CriticalDeviceDatabase key name: `\` is not
// allowed in key names, so Windows writes it as `#`; Windows' own entries
// are lower case and lookups ignore case.
func cddbName(id string) string {
	return strings.ToLower(strings.ReplaceAll(id, `\`, "#"))
}

// matchDriverDatabase follows DriverDatabase\DeviceIds\<id> → inf name →
// DriverInfFiles\<inf>\Active package → DriverPackages\<pkg>\Descriptors\<id>
// Configuration → Configurations\<cfg>\Service.
func matchDriverDatabase(h Hive, ids []string) (match, bool, error) {
	m := match{database: "DriverDatabase"}
	for _, id := range ids {
		infs, ok, err := h.Values(join(deviceIDsKey, id))
		if err != nil {
			return m, false, err
		}
		if !ok {
			continue
		}
		for _, inf := range infs {
			if inf == "" {
				continue
			}
			pkg, ok, err := text(h, join(driverInfFilesKey, inf), valueActive)
			if err != nil {
				return m, false, err
			}
			if !ok || pkg == "" {
				continue
			}
			cfg, ok, err := text(h, join(driverPackagesKey, pkg, "Descriptors", id), valueConfiguration)
			if err != nil {
				return m, false, err
			}
			if !ok {
				continue
			}
			svc, ok, err := text(h, join(driverPackagesKey, pkg, "Configurations", cfg), valueService)
			if err != nil {
				return m, false, err
			}
			if ok && svc != "" {
				m.id, m.service = id, svc
				m.where = fmt.Sprintf(`DriverDatabase %s → %s → %s`, id, pkg, cfg)
				return m, true, nil
			}
		}
	}
	return m, false, nil
}

// serviceBootable returns nil when the service starts at boot with its
// driver file and every export driver it imports present, else the broken
// link and why.
func serviceBootable(h Hive, controlSet, svc string, facts Facts) (*Link, string, error) {
	key := join(controlSet, servicesKey, svc)
	exists, err := keyExists(h, key)
	if err != nil {
		return nil, "", err
	}
	if !exists {
		return &Link{Kind: LinkNoService, Service: svc, Key: key}, fmt.Sprintf("service %s has no key %s", svc, key), nil
	}
	start, ok, err := dword(h, key, valueStart)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return &Link{Kind: LinkStart, Service: svc, Key: key, Value: valueStart}, fmt.Sprintf("service %s has no Start value, needs 0 (boot)", svc), nil
	}
	if start != StartBoot {
		return &Link{Kind: LinkStart, Service: svc, Key: key, Value: valueStart},
			fmt.Sprintf("service %s Start=%d (%s), needs 0 (boot)", svc, start, startName(start)), nil
	}
	overrides, err := startOverrides(h, key)
	if err != nil {
		return nil, "", err
	}
	if len(overrides) > 0 {
		o := overrides[0]
		return &Link{Kind: LinkStartOverride, Service: svc, Key: join(key, startOverrideKey), Value: o.name},
			fmt.Sprintf(`service %s Start=0 but StartOverride\%s=%d (%s) overrides it`, svc, o.name, o.start, startName(o.start)), nil
	}
	if facts.FileExists == nil {
		return nil, "", nil
	}
	rel, known, err := driverFile(h, key, svc)
	if err != nil {
		return nil, "", err
	}
	if !known {
		return nil, "", nil
	}
	if !facts.FileExists(rel) {
		return &Link{Kind: LinkFile, Service: svc, Key: key, File: rel}, fmt.Sprintf(`driver file %s missing`, rel), nil
	}
	if imp, file, missing := missingImport(rel, facts); missing != "" {
		return &Link{Kind: LinkImport, Service: svc, Key: key, File: missing, Importer: imp},
			fmt.Sprintf(`%s imports %s (%s), which is missing: the loader cannot load %s without it`, imp, file, missing, svc), nil
	}
	return nil, "", nil
}

// override is one non-zero value under a service's StartOverride key.
type override struct {
	name  string
	start uint32
}

// startOverrides lists the StartOverride values (Windows 8+) that would make
// a boot-start service start later.
func startOverrides(h Hive, serviceKey string) ([]override, error) {
	key := join(serviceKey, startOverrideKey)
	names, ok, err := h.Values(key)
	if err != nil || !ok {
		return nil, err
	}
	var out []override
	for _, n := range names {
		v, ok, err := dword(h, key, n)
		if err != nil {
			return nil, err
		}
		if ok && v != StartBoot {
			out = append(out, override{name: n, start: v})
		}
	}
	return out, nil
}

// Prefixes by which an ImagePath names the Windows directory.
var systemRootPrefixes = []string{`\SystemRoot\`, `%SystemRoot%\`, `%windir%\`, `SystemRoot\`}

// driverFile returns the service's driver path relative to the Windows
// directory: its ImagePath, else System32\drivers\<service>.sys. known is
// false for an ImagePath outside the Windows directory.
func driverFile(h Hive, serviceKey, svc string) (rel string, known bool, err error) {
	p, ok, err := text(h, serviceKey, valueImagePath)
	if err != nil {
		return "", false, err
	}
	if !ok || p == "" {
		return `System32\drivers\` + svc + ".sys", true, nil
	}
	for _, pre := range systemRootPrefixes {
		if len(p) >= len(pre) && strings.EqualFold(p[:len(pre)], pre) {
			return p[len(pre):], true, nil
		}
	}
	if strings.HasPrefix(p, `\`) || strings.Contains(p, ":") {
		return p, false, nil
	}
	return p, true, nil
}
