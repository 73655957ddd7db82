package bootfix

import (
	"testing"

	"github.com/kvmify/kvmify/registry"
)

// regEdit adapts *registry.Editor to Editor for building test hives.
type regEdit struct{ e *registry.Editor }

func (r regEdit) CreateKey(path string) error { return r.e.CreateKey(path) }
func (r regEdit) SetValue(path, name string, v Value) error {
	return r.e.SetValue(path, name, registry.ValueType(v.Type), v.Data)
}
func (r regEdit) DeleteValue(path, name string) error { return r.e.DeleteValue(path, name) }

// editHive applies changes to a copy of a hive file with kvmify's registry
// editor and returns the parsed, checked result.
func editHive(t testing.TB, data []byte, changes []Change) *registry.Hive {
	t.Helper()
	h, err := registry.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	e, err := registry.NewEditor(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(regEdit{e}, changes); err != nil {
		t.Fatal(err)
	}
	res, err := e.Save()
	if err != nil {
		t.Fatal(err)
	}
	out, err := registry.Open(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Check(); err != nil {
		t.Fatalf("edited hive fails Check: %v", err)
	}
	return out
}
