package windows

import (
	"fmt"
	"time"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/registry"
)

// RegistryEditor is the HiveEditor backed by package registry: it applies
// the changes to a copy of the hive file and returns the saved file, whose
// sequence numbers are equal (clean) and one past the input's. Timestamps it
// writes are the hive's own last-written time, not the clock, so the same
// image always yields the same patched bytes (plans made by serve, mount and
// export agree, and a plan can be recomputed to verify it).
func RegistryEditor(hive []byte, changes []bootfix.Change) ([]byte, error) {
	h, err := registry.Open(hive)
	if err != nil {
		return nil, err
	}
	e, err := registry.NewEditor(h)
	if err != nil {
		return nil, err
	}
	stamp := h.BaseBlock().LastWritten
	e.Now = func() time.Time { return stamp }
	if err := bootfix.Apply(regEditor{e}, changes); err != nil {
		return nil, err
	}
	res, err := e.Save()
	if err != nil {
		return nil, fmt.Errorf("windows: saving the edited hive: %w", err)
	}
	return res.Data, nil
}

// regEditor adapts *registry.Editor to bootfix.Editor.
type regEditor struct{ e *registry.Editor }

func (r regEditor) CreateKey(path string) error { return r.e.CreateKey(path) }

func (r regEditor) SetValue(path, name string, v bootfix.Value) error {
	return r.e.SetValue(path, name, registry.ValueType(v.Type), v.Data)
}

func (r regEditor) DeleteValue(path, name string) error { return r.e.DeleteValue(path, name) }
