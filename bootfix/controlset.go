package bootfix

import (
	"fmt"
)

// selectKey names the key whose DWORD values say which ControlSetNNN is in
// use for what.
const selectKey = "Select"

// Names of the Select values that reference control sets; Failed is not one
// Windows boots from.
var selectValues = []string{"Current", "Default", "LastKnownGood"}

// maxControlSet bounds the number in ControlSetNNN (three decimal digits).
const maxControlSet = 999

// ControlSet is one ControlSetNNN key and the Select values that reference
// it.
type ControlSet struct {
	Name   string   // e.g. "ControlSet001"
	Number uint32   // NNN
	Roles  []string // Select value names pointing here: Current, Default, LastKnownGood
}

// ControlSets returns the distinct control sets that Select references, the
// Current one first. A Select reference to a control set that does not
// exist is skipped, except for Current, which is an error: Windows could not
// boot from such a hive.
func ControlSets(h Hive) ([]ControlSet, error) {
	var out []ControlSet
	for _, role := range selectValues {
		n, ok, err := dword(h, selectKey, role)
		if err != nil {
			return nil, err
		}
		if !ok || n == 0 || n > maxControlSet {
			if role == "Current" {
				return nil, fmt.Errorf("bootfix: %s\\%s is missing or out of range (%d): %w", selectKey, role, n, ErrNoControlSet)
			}
			continue
		}
		name := fmt.Sprintf("ControlSet%03d", n)
		exists, err := keyExists(h, name)
		if err != nil {
			return nil, err
		}
		if !exists {
			if role == "Current" {
				return nil, fmt.Errorf("bootfix: %s\\Current names %s, which does not exist: %w", selectKey, name, ErrNoControlSet)
			}
			continue
		}
		merged := false
		for i := range out {
			if out[i].Number == n {
				out[i].Roles = append(out[i].Roles, role)
				merged = true
			}
		}
		if !merged {
			out = append(out, ControlSet{Name: name, Number: n, Roles: []string{role}})
		}
	}
	return out, nil
}

// CurrentControlSet returns the control set Select\Current names: the one
// the running system used last, not necessarily the one it boots from.
func CurrentControlSet(h Hive) (ControlSet, error) {
	cs, err := ControlSets(h)
	if err != nil {
		return ControlSet{}, err
	}
	return cs[0], nil
}

// BootControlSet returns the control set the boot loader reads: the one
// Select\Default names, or Select\LastKnownGood when the user picks "Last
// Known Good Configuration" at the boot menu. (Current is only set by the
// kernel once it has chosen, so offline it merely records the last boot.)
// A hive without a usable Default falls back to Current.
func BootControlSet(h Hive, lastKnownGood bool) (ControlSet, error) {
	sets, err := ControlSets(h)
	if err != nil {
		return ControlSet{}, err
	}
	role := "Default"
	if lastKnownGood {
		role = "LastKnownGood"
	}
	for _, s := range sets {
		for _, r := range s.Roles {
			if r == role {
				return s, nil
			}
		}
	}
	if lastKnownGood {
		return ControlSet{}, fmt.Errorf("bootfix: %s\\LastKnownGood names no existing control set: %w", selectKey, ErrNoControlSet)
	}
	return sets[0], nil
}
