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

// Prediction says whether Windows will find a boot-start driver for a
// target's whole device chain (controller, IDE channel, disk).
type Prediction struct {
	Target Target
	OK     bool
	// Reason is why it fails, or a summary of the drivers found when OK.
	Reason string
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
	p := Prediction{Target: target}
	if _, err := ParseTarget(string(target)); err != nil {
		return p, err
	}
	var drivers []string
	for _, dev := range target.chain() {
		m, found, err := matchDevice(h, controlSet, facts.Version.Family(), dev.ids)
		if err != nil {
			return p, err
		}
		if !found {
			p.Reason = fmt.Sprintf("%s: no %s entry matches %s or any of its %d other IDs",
				dev.what, m.database, dev.ids[0], len(dev.ids)-1)
			return p, nil
		}
		p.Path = append(p.Path, fmt.Sprintf("%s: %s → %s", dev.what, m.where, m.service))
		why, err := serviceBootable(h, controlSet, m.service, facts)
		if err != nil {
			return p, err
		}
		if why != "" {
			p.Reason = fmt.Sprintf("%s %s matches %s; %s", dev.what, m.id, m.service, why)
			return p, nil
		}
		drivers = append(drivers, m.service)
	}
	p.OK = true
	p.Reason = "boot-start drivers: " + strings.Join(drivers, ", ")
	return p, nil
}

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
	m := match{database: "CriticalDeviceDatabase"}
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

// serviceBootable returns "" when the service starts at boot with its
// driver file present, else the reason it does not.
func serviceBootable(h Hive, controlSet, svc string, facts Facts) (string, error) {
	key := join(controlSet, servicesKey, svc)
	exists, err := keyExists(h, key)
	if err != nil {
		return "", err
	}
	if !exists {
		return fmt.Sprintf("service %s has no key %s", svc, key), nil
	}
	start, ok, err := dword(h, key, valueStart)
	if err != nil {
		return "", err
	}
	if !ok {
		return fmt.Sprintf("service %s has no Start value, needs 0 (boot)", svc), nil
	}
	if start != StartBoot {
		return fmt.Sprintf("service %s Start=%d (%s), needs 0 (boot)", svc, start, startName(start)), nil
	}
	overrides, err := startOverrides(h, key)
	if err != nil {
		return "", err
	}
	if len(overrides) > 0 {
		o := overrides[0]
		return fmt.Sprintf(`service %s Start=0 but StartOverride\%s=%d (%s) overrides it`, svc, o.name, o.start, startName(o.start)), nil
	}
	if facts.FileExists != nil {
		rel, known, err := driverFile(h, key, svc)
		if err != nil {
			return "", err
		}
		if known && !facts.FileExists(rel) {
			return fmt.Sprintf(`driver file %s missing`, rel), nil
		}
	}
	return "", nil
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
