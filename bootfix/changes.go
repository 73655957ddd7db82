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
	// Detail says which broken link a boot-fix change repairs beyond the
	// profile ("removes the dead UpperFilters entry X"), or "".
	Detail string
}

// MissingFile is a driver file the profile needs that the install lacks.
type MissingFile struct {
	Path string // relative to the Windows directory
	From string // where it could be extracted from
}

// ChangeSet is the outcome of ComputeChanges.
type ChangeSet struct {
	Profile     string
	ControlSets []ControlSet
	// Booting lists the control sets that already boot on the target and
	// are left alone.
	Booting      []string
	Changes      []Change
	MissingFiles []MissingFile
}

// maxFixRounds bounds the links one control set's fix repairs one by one.
const maxFixRounds = 64

// ComputeChanges returns the edits that make every control set Select
// references boot on the target, plus the requested extras. A control set
// that already boots gets no boot-fix change at all (minimal footprint);
// one that does not gets the target's profile (what is missing or
// different), then each link the prediction still finds broken and the
// registry can repair: a service's Start, a StartOverride, a dead or
// non-boot-start storage class filter, a third-party CriticalDeviceDatabase
// entry that wins over the inbox one.
func ComputeChanges(h Hive, facts Facts, target Target, extras []Extra) (*ChangeSet, error) {
	prof, err := ProfileFor(facts.Version, target)
	if err != nil {
		return nil, err
	}
	h = newCachedHive(h)
	sets, err := ControlSets(h)
	if err != nil {
		return nil, err
	}
	cs := &ChangeSet{Profile: prof.Name, ControlSets: sets}
	needFiles := false
	for _, set := range sets {
		p, err := PredictControlSet(h, set.Name, facts, target)
		if err != nil {
			return nil, err
		}
		if p.OK {
			cs.Booting = append(cs.Booting, set.Name)
		} else {
			needFiles = true
			if err := cs.fixControlSet(h, set.Name, facts, target, prof); err != nil {
				return nil, err
			}
		}
		for _, e := range extras {
			if err := cs.applyExtra(h, set.Name, e, facts); err != nil {
				return nil, err
			}
		}
	}
	if facts.FileExists != nil && needFiles {
		for _, f := range prof.DriverFiles {
			if !facts.FileExists(f) {
				cs.addMissing(MissingFile{Path: f, From: driverSource(facts.Version, facts.Arch)})
			}
		}
	}
	return cs, nil
}

// fixControlSet makes one control set boot with as few changes as it can:
// the broken links alone when repairing them is enough (a dead filter on a
// hive that otherwise boots needs nothing of the profile), else the
// profile and then the links still broken.
func (cs *ChangeSet) fixControlSet(h Hive, controlSet string, facts Facts, target Target, prof Profile) error {
	links := &ChangeSet{Changes: append([]Change(nil), cs.Changes...)}
	if err := links.fixLinks(h, controlSet, facts, target); err != nil {
		return err
	}
	p, err := PredictControlSet(WithChanges(h, links.Changes), controlSet, facts, target)
	if err != nil {
		return err
	}
	if p.OK {
		cs.Changes = links.Changes
		return nil
	}
	if err := cs.applyProfile(h, controlSet, prof); err != nil {
		return err
	}
	if err := cs.fixLinks(h, controlSet, facts, target); err != nil {
		return err
	}
	return cs.noteMissing(h, controlSet, facts, target)
}

func (cs *ChangeSet) addMissing(m MissingFile) {
	for _, x := range cs.MissingFiles {
		if strings.EqualFold(x.Path, m.Path) {
			return
		}
	}
	cs.MissingFiles = append(cs.MissingFiles, m)
}

// noteMissing records the file the fixed control set still lacks (a driver
// or an export driver it imports), which no registry change supplies.
func (cs *ChangeSet) noteMissing(h Hive, controlSet string, facts Facts, target Target) error {
	p, err := PredictControlSet(WithChanges(h, cs.Changes), controlSet, facts, target)
	if err != nil || p.OK || p.Broken == nil {
		return err
	}
	if l := p.Broken; l.File != "" && (l.Kind == LinkFile || l.Kind == LinkImport) {
		cs.addMissing(MissingFile{Path: l.File, From: driverSource(facts.Version, facts.Arch)})
	}
	return nil
}

// fixLinks repairs, one at a time, the links the prediction of the control
// set (with the changes so far) finds broken, as long as each is fixable
// in the registry and each round changes something.
func (cs *ChangeSet) fixLinks(h Hive, controlSet string, facts Facts, target Target) error {
	for round := 0; round < maxFixRounds; round++ {
		view := WithChanges(h, cs.Changes)
		p, err := PredictControlSet(view, controlSet, facts, target)
		if err != nil {
			return err
		}
		if p.OK || p.Broken == nil || !p.Broken.Fixable() {
			return nil
		}
		l := *p.Broken
		n := len(cs.Changes)
		switch l.Kind {
		case LinkStart, LinkFilterStart:
			key := join(controlSet, servicesKey, l.Service)
			err = cs.setDetail(view, key, valueStart, DWORD(StartBoot),
				fmt.Sprintf("%s: service %s made boot-start", l.Device, l.Service))
		case LinkStartOverride:
			err = cs.delDetail(view, l.Key, l.Value, fmt.Sprintf("%s: StartOverride of %s removed", l.Device, l.Service))
		case LinkFilterDead:
			err = cs.dropFilter(view, l)
		case LinkThirdParty:
			inbox := inboxControllerServices(target, facts.Version.Family())
			class := target.classes(facts.Version.Family())[0].guid
			detail := fmt.Sprintf("%s: third-party entry %s → %s replaced by the inbox %s", l.Device, l.Key, l.Service, inbox[0])
			if err = cs.setDetail(view, l.Key, valueService, String(TypeSZ, inbox[0]), detail); err == nil {
				err = cs.setDetail(view, l.Key, "ClassGUID", String(TypeSZ, class), detail)
			}
		}
		if err != nil {
			return err
		}
		if len(cs.Changes) == n {
			return nil // nothing changed: the link is not one the registry fixes
		}
	}
	return nil
}

// dropFilter removes one dead service name from a class filter list,
// keeping every other entry in order; the value goes when none is left.
func (cs *ChangeSet) dropFilter(h Hive, l Link) error {
	v, ok, err := h.Value(l.Key, l.Value)
	if err != nil || !ok {
		return err
	}
	var keep []string
	for _, e := range v.Strings() {
		if !strings.EqualFold(e, l.Service) {
			keep = append(keep, e)
		}
	}
	detail := fmt.Sprintf("%s: dead %s entry %s removed", l.Device, l.Value, l.Service)
	if len(keep) == 0 {
		return cs.delDetail(h, l.Key, l.Value, detail)
	}
	return cs.setDetail(h, l.Key, l.Value, MultiString(keep), detail)
}

func (cs *ChangeSet) setDetail(h Hive, key, name string, want Value, detail string) error {
	n := len(cs.Changes)
	if err := cs.set(h, key, name, want, "boot fix"); err != nil {
		return err
	}
	if len(cs.Changes) > n {
		cs.Changes[n].Detail = detail
	}
	return nil
}

func (cs *ChangeSet) delDetail(h Hive, key, name, detail string) error {
	n := len(cs.Changes)
	if err := cs.del(h, key, name, "boot fix"); err != nil {
		return err
	}
	if len(cs.Changes) > n {
		cs.Changes[n].Detail = detail
	}
	return nil
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
		if s.FoldCase {
			if old, ok, err := h.Value(key, s.Value); err != nil {
				return err
			} else if ok && old.Type == s.Want.Type && strings.EqualFold(old.Text(), s.Want.Text()) {
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
	case ExtraCPUPower:
		for _, svc := range cpuPowerServices {
			key := join(controlSet, servicesKey, svc)
			if ok, err := keyExists(h, key); err != nil {
				return err
			} else if !ok {
				continue
			}
			if err := cs.set(h, key, valueStart, DWORD(StartDisabled), why); err != nil {
				return err
			}
		}
		return nil
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
