package bootfix

import (
	"fmt"
	"strings"
)

// Op is what a Change does to a value.
type Op string

// The operations; setting a value under a missing key creates the key.
const (
	OpSet    Op = "set"
	OpDelete Op = "delete"
)

// Change is one registry edit: a value set (with its old content, nil when
// absent) or deleted.
type Change struct {
	Key   string // from the hive root, e.g. `ControlSet001\Services\atapi`
	Value string
	Op    Op
	Old   *Value // nil when the value is absent
	New   *Value // nil for OpDelete
	Why   string // "boot fix", or the extra's name
}

// MissingFile is a driver file the profile needs that the install lacks.
type MissingFile struct {
	Path string // relative to the Windows directory
	From string // where it could be extracted from
}

// ChangeSet is the outcome of ComputeChanges.
type ChangeSet struct {
	Profile      string
	ControlSets  []ControlSet
	Changes      []Change
	MissingFiles []MissingFile
}

// ComputeChanges returns the edits that apply the target's profile (and the
// requested extras) to every control set Select references, keeping only
// what is missing or different.
func ComputeChanges(h Hive, facts Facts, target Target, extras []Extra) (*ChangeSet, error) {
	prof, err := ProfileFor(facts.Version, target)
	if err != nil {
		return nil, err
	}
	sets, err := ControlSets(h)
	if err != nil {
		return nil, err
	}
	cs := &ChangeSet{Profile: prof.Name, ControlSets: sets}
	for _, set := range sets {
		if err := cs.applyProfile(h, set.Name, prof); err != nil {
			return nil, err
		}
		for _, e := range extras {
			if err := cs.applyExtra(h, set.Name, e, facts); err != nil {
				return nil, err
			}
		}
	}
	if facts.FileExists != nil {
		for _, f := range prof.DriverFiles {
			if !facts.FileExists(f) {
				cs.MissingFiles = append(cs.MissingFiles, MissingFile{Path: f, From: driverSource(facts.Version, facts.Arch)})
			}
		}
	}
	return cs, nil
}

// driverSource names where Windows keeps spare copies of inbox drivers.
func driverSource(v Version, arch string) string {
	if v.Family() == FamilyNT5 {
		dir := "i386"
		if strings.EqualFold(arch, "AMD64") {
			dir = "amd64"
		}
		sp := "spN.cab"
		var n int
		if _, err := fmt.Sscanf(v.ServicePack, "Service Pack %d", &n); err == nil && n > 0 {
			sp = fmt.Sprintf("sp%d.cab", n)
		}
		return fmt.Sprintf(`Driver Cache\%s\%s or Driver Cache\%s\driver.cab`, dir, sp, dir)
	}
	return `System32\DriverStore\FileRepository\mshdc.inf_*`
}

func (cs *ChangeSet) applyProfile(h Hive, controlSet string, prof Profile) error {
	skip := map[string]bool{}
	for _, s := range prof.Settings {
		key := join(controlSet, s.Key)
		if s.IfKeyAbsent {
			done, seen := skip[strings.ToLower(key)]
			if !seen {
				exists, err := keyExists(h, key)
				if err != nil {
					return err
				}
				skip[strings.ToLower(key)] = exists
				done = exists
			}
			if done {
				continue
			}
		}
		if err := cs.set(h, key, s.Value, s.Want, "boot fix"); err != nil {
			return err
		}
	}
	for _, svc := range prof.ClearStartOverride {
		key := join(controlSet, servicesKey, svc)
		ovs, err := startOverrides(h, key)
		if err != nil {
			return err
		}
		for _, o := range ovs {
			if err := cs.del(h, join(key, startOverrideKey), o.name, "boot fix"); err != nil {
				return err
			}
		}
	}
	return nil
}

// set records a change when the value is absent or different.
func (cs *ChangeSet) set(h Hive, key, name string, want Value, why string) error {
	old, ok, err := h.Value(key, name)
	if err != nil {
		return err
	}
	if ok && old.Equal(want) {
		return nil
	}
	c := Change{Key: key, Value: name, Op: OpSet, New: &want, Why: why}
	if ok {
		c.Old = &old
	}
	cs.Changes = append(cs.Changes, c)
	return nil
}

// del records the deletion of a value that exists.
func (cs *ChangeSet) del(h Hive, key, name, why string) error {
	old, ok, err := h.Value(key, name)
	if err != nil || !ok {
		return err
	}
	cs.Changes = append(cs.Changes, Change{Key: key, Value: name, Op: OpDelete, Old: &old, Why: why})
	return nil
}

// Keys of the extras.
const (
	crashControlKey = `Control\CrashControl`
	classKey        = `Control\Class`
)

func (cs *ChangeSet) applyExtra(h Hive, controlSet string, e Extra, facts Facts) error {
	why := "extra " + string(e)
	switch e {
	case ExtraAutoReboot:
		return cs.set(h, join(controlSet, crashControlKey), "AutoReboot", DWORD(0), why)
	case ExtraIntelPPM:
		key := join(controlSet, servicesKey, "intelppm")
		if ok, err := keyExists(h, key); err != nil || !ok {
			return err
		}
		return cs.set(h, key, valueStart, DWORD(StartDisabled), why)
	case ExtraFilters:
		return cs.pruneFilters(h, controlSet, facts, why)
	}
	return fmt.Errorf("bootfix: unknown extra %q", e)
}

// pruneFilters drops class filter entries that name a service Windows could
// not load.
func (cs *ChangeSet) pruneFilters(h Hive, controlSet string, facts Facts, why string) error {
	classes, ok, err := h.Subkeys(join(controlSet, classKey))
	if err != nil || !ok {
		return err
	}
	for _, class := range classes {
		key := join(controlSet, classKey, class)
		for _, name := range []string{"UpperFilters", "LowerFilters"} {
			v, ok, err := h.Value(key, name)
			if err != nil {
				return err
			}
			if !ok || v.Type != TypeMultiSZ {
				continue
			}
			var keep []string
			entries := v.Strings()
			for _, svc := range entries {
				good, err := serviceLoadable(h, controlSet, svc, facts)
				if err != nil {
					return err
				}
				if good {
					keep = append(keep, svc)
				}
			}
			switch {
			case len(keep) == len(entries):
			case len(keep) == 0:
				if err := cs.del(h, key, name, why); err != nil {
					return err
				}
			default:
				if err := cs.set(h, key, name, MultiString(keep), why); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// serviceLoadable reports whether a service's key exists and its driver file
// (when files are known) is present.
func serviceLoadable(h Hive, controlSet, svc string, facts Facts) (bool, error) {
	key := join(controlSet, servicesKey, svc)
	ok, err := keyExists(h, key)
	if err != nil || !ok {
		return false, err
	}
	if facts.FileExists == nil {
		return true, nil
	}
	rel, known, err := driverFile(h, key, svc)
	if err != nil {
		return false, err
	}
	return !known || facts.FileExists(rel), nil
}

// Editor is the write side of the registry editor that Apply drives.
type Editor interface {
	// CreateKey creates the key at path and any missing parents; an
	// existing key is not an error.
	CreateKey(path string) error
	SetValue(path, name string, v Value) error
	DeleteValue(path, name string) error
}

// Apply performs the changes through an editor, in order.
func Apply(e Editor, changes []Change) error {
	for _, c := range changes {
		var err error
		switch c.Op {
		case OpSet:
			if err = e.CreateKey(c.Key); err == nil {
				err = e.SetValue(c.Key, c.Value, *c.New)
			}
		case OpDelete:
			err = e.DeleteValue(c.Key, c.Value)
		default:
			err = fmt.Errorf("unknown op %q", c.Op)
		}
		if err != nil {
			return fmt.Errorf("bootfix: applying %s %s\\%s: %w", c.Op, c.Key, c.Value, err)
		}
	}
	return nil
}
