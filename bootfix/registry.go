package bootfix

import (
	"errors"

	"github.com/kvmify/kvmify/registry"
)

// regHive adapts a parsed *registry.Hive to Hive.
type regHive struct{ h *registry.Hive }

// FromRegistry gives bootfix's read-only view of a parsed hive.
func FromRegistry(h *registry.Hive) Hive { return regHive{h} }

func (r regHive) lookup(path string) (*registry.Key, bool, error) {
	k, err := r.h.Lookup(path)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return k, true, nil
}

func (r regHive) Subkeys(path string) ([]string, bool, error) {
	k, ok, err := r.lookup(path)
	if !ok || err != nil {
		return nil, ok, err
	}
	sub, err := k.Subkeys()
	if err != nil {
		return nil, false, err
	}
	names := make([]string, len(sub))
	for i, s := range sub {
		names[i] = s.Name
	}
	return names, true, nil
}

func (r regHive) Values(path string) ([]string, bool, error) {
	k, ok, err := r.lookup(path)
	if !ok || err != nil {
		return nil, ok, err
	}
	vals, err := k.Values()
	if err != nil {
		return nil, false, err
	}
	names := make([]string, len(vals))
	for i, v := range vals {
		names[i] = v.Name
	}
	return names, true, nil
}

func (r regHive) Value(path, name string) (Value, bool, error) {
	k, ok, err := r.lookup(path)
	if !ok || err != nil {
		return Value{}, ok, err
	}
	v, err := k.Value(name)
	if errors.Is(err, registry.ErrNotFound) {
		return Value{}, false, nil
	}
	if err != nil {
		return Value{}, false, err
	}
	return Value{Type: uint32(v.Type), Data: v.Raw()}, true, nil
}
