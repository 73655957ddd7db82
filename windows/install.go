package windows

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/peimports"
	"github.com/kvmify/kvmify/registry"
)

// Directory names a Windows install lives in, and the hive paths inside it.
var systemRoots = []string{"Windows", "WINNT"}

const (
	systemHivePath   = `System32\config\SYSTEM`
	softwareHivePath = `System32\config\SOFTWARE`
	kernelPath       = `System32\ntoskrnl.exe`
)

// Hive log file suffixes Windows writes beside a hive, in replay order.
var logSuffixes = []string{".LOG", ".LOG1", ".LOG2"}

// HiveState says whether the SYSTEM hive can be patched as it is.
type HiveState string

// Hive states.
const (
	HiveClean         HiveState = "clean"
	HiveRecovered     HiveState = "dirty-recoverable"   // dirty, and its logs recover it
	HiveUnrecoverable HiveState = "dirty-unrecoverable" // dirty, and its logs do not
)

// Install is one Windows installation found on a volume.
type Install struct {
	Dir        string // the Windows directory as found on the volume, e.g. "Windows"
	Version    bootfix.Version
	Arch       string // PROCESSOR_ARCHITECTURE: x86, AMD64, ARM64; "" when unknown
	ControlSet string // the control set the loader boots from (Select\Default)
	HiveState  HiveState
	// HiveDetail says why the hive is dirty and what recovery did.
	HiveDetail string
	// Logs lists the hive logs found beside SYSTEM, relative to the volume.
	Logs []string
	// Predictions holds one prediction per bootfix target, in
	// bootfix.Targets order.
	Predictions []bootfix.Prediction

	// OnDisk is the SYSTEM hive file as stored; Hive is the state to patch
	// (OnDisk, or its recovery from the logs).
	OnDisk, Hive []byte
	fsys         FS
}

// SystemHivePath is the SYSTEM hive's path relative to the volume root.
func (in *Install) SystemHivePath() string { return in.Dir + `\` + systemHivePath }

// Facts returns what bootfix needs to know about the install: its version,
// which driver files exist and what each imports (read from its PE import
// table; a file that is not a readable PE image, such as a test
// placeholder, leaves bootfix to its known list).
func (in *Install) Facts() bootfix.Facts {
	return bootfix.Facts{Version: in.Version, Arch: in.Arch,
		FileExists: func(rel string) bool {
			ok, err := exists(in.fsys, in.Dir+`\`+rel)
			return ok && err == nil
		},
		Imports: func(rel string) ([]string, bool) {
			r, err := in.fsys.Open(in.Dir + `\` + rel)
			if err != nil {
				return nil, false
			}
			mods, err := peimports.Read(r, r.Size())
			return mods, err == nil
		},
	}
}

// Prediction returns the prediction for one target.
func (in *Install) Prediction(t bootfix.Target) (bootfix.Prediction, bool) {
	for _, p := range in.Predictions {
		if p.Target == t {
			return p, true
		}
	}
	return bootfix.Prediction{}, false
}

// DefaultTarget is ide for NT 5.x, which has no inbox AHCI driver, and ahci
// for everything later.
func (in *Install) DefaultTarget() bootfix.Target {
	if in.Version.Family() == bootfix.FamilyNT5 {
		return bootfix.TargetIDE
	}
	return bootfix.TargetAHCI
}

// Inspect finds the Windows installs on a volume: a Windows or WINNT
// directory holding System32\config\SYSTEM.
func Inspect(fsys FS) ([]*Install, error) {
	var out []*Install
	for _, dir := range systemRoots {
		ok, err := exists(fsys, dir+`\`+systemHivePath)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		in, err := inspectInstall(fsys, dir)
		if err != nil {
			return nil, fmt.Errorf("windows: %s: %w", dir, err)
		}
		out = append(out, in)
	}
	return out, nil
}

func inspectInstall(fsys FS, dir string) (*Install, error) {
	in := &Install{Dir: dir, fsys: fsys}
	var err error
	if in.OnDisk, err = readFile(fsys, dir+`\`+systemHivePath); err != nil {
		return nil, err
	}
	system, err := in.loadSystem()
	if err != nil {
		return nil, err
	}
	sys := bootfix.FromRegistry(system)
	cs, err := bootfix.BootControlSet(sys, false)
	if err != nil {
		return nil, err
	}
	in.ControlSet = cs.Name
	if in.Arch, err = bootfix.Arch(sys); err != nil {
		return nil, err
	}
	if in.Version, err = detectVersion(fsys, dir, sys); err != nil {
		return nil, err
	}
	for _, t := range bootfix.Targets {
		p, err := bootfix.Predict(sys, in.Facts(), t)
		if err != nil {
			return nil, err
		}
		in.Predictions = append(in.Predictions, p)
	}
	return in, nil
}

// loadSystem parses the SYSTEM hive, recovering it in memory from its logs
// when it is dirty. A hive the logs cannot recover is still parsed as
// stored, so that inspect can report on it; PlanPatch refuses it.
func (in *Install) loadSystem() (*registry.Hive, error) {
	primary, err := registry.Open(in.OnDisk)
	if err != nil {
		return nil, fmt.Errorf("SYSTEM hive: %w", err)
	}
	dirty, reason := primary.Dirty()
	if !dirty {
		in.HiveState, in.Hive = HiveClean, in.OnDisk
		return primary, nil
	}
	var logs [][]byte
	for _, suf := range logSuffixes {
		p := in.SystemHivePath() + suf
		b, err := readFile(in.fsys, p)
		if errors.Is(err, errNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		in.Logs = append(in.Logs, p)
		logs = append(logs, b)
	}
	recovered, rep, err := registry.Recover(in.OnDisk, logs...)
	if err != nil || rep == nil || !rep.Clean {
		in.HiveState, in.Hive = HiveUnrecoverable, in.OnDisk
		in.HiveDetail = reason
		if err != nil {
			in.HiveDetail += "; recovery: " + err.Error()
		}
		return primary, nil
	}
	h, err := registry.Open(recovered)
	if err != nil {
		return nil, fmt.Errorf("SYSTEM hive recovered from %s: %w", strings.Join(in.Logs, ", "), err)
	}
	in.HiveState, in.Hive = HiveRecovered, recovered
	in.HiveDetail = fmt.Sprintf("%s; recovered in memory from %s (log entries %d..%d)",
		reason, strings.Join(in.Logs, ", "), rep.StartSequence, rep.EndSequence)
	return h, nil
}

// detectVersion takes the version from the SOFTWARE hive, else the kernel's
// version resource, else SYSTEM-hive evidence.
func detectVersion(fsys FS, dir string, sys bootfix.Hive) (bootfix.Version, error) {
	if b, err := readFile(fsys, dir+`\`+softwareHivePath); err == nil {
		if sw, err := openMaybeRecovered(fsys, dir+`\`+softwareHivePath, b); err == nil {
			if v, ok, err := bootfix.FromSoftware(bootfix.FromRegistry(sw)); err == nil && ok {
				v.Server = serverFromSystem(sys)
				return v, nil
			}
		}
	}
	if b, err := readFile(fsys, dir+`\`+kernelPath); err == nil {
		if fv, err := KernelVersion(b); err == nil {
			v := bootfix.Version{Major: fv.Major, Minor: fv.Minor, Build: fv.Build, Source: bootfix.SourceKernelImage}
			v.Server = serverFromSystem(sys)
			return v, nil
		}
	}
	return bootfix.FromSystem(sys)
}

// serverFromSystem reads the server flag from SYSTEM evidence.
func serverFromSystem(sys bootfix.Hive) bool {
	v, err := bootfix.FromSystem(sys)
	return err == nil && v.Server
}

// openMaybeRecovered opens a hive, replaying its logs when it is dirty; a
// hive that stays dirty is used as stored (only version strings are read).
func openMaybeRecovered(fsys FS, path string, b []byte) (*registry.Hive, error) {
	h, err := registry.Open(b)
	if err != nil {
		return nil, err
	}
	if dirty, _ := h.Dirty(); !dirty {
		return h, nil
	}
	var logs [][]byte
	for _, suf := range logSuffixes {
		if lb, err := readFile(fsys, path+suf); err == nil {
			logs = append(logs, lb)
		}
	}
	if rec, rep, err := registry.Recover(b, logs...); err == nil && rep.Clean {
		if rh, err := registry.Open(rec); err == nil {
			return rh, nil
		}
	}
	return h, nil
}
