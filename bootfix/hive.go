package bootfix

import (
	"encoding/binary"
	"strings"
	"unicode/utf16"
)

// Registry value types that bootfix reads and writes, as stored in vk
// records.
const (
	TypeSZ       uint32 = 1 // REG_SZ
	TypeExpandSZ uint32 = 2 // REG_EXPAND_SZ
	TypeBinary   uint32 = 3 // REG_BINARY
	TypeDWORD    uint32 = 4 // REG_DWORD (little-endian)
	TypeMultiSZ  uint32 = 7 // REG_MULTI_SZ
)

// dwordSize is the length of a REG_DWORD's data.
const dwordSize = 4

// Hive is the read-only view of a registry hive that bootfix consults. Paths
// are key names from the hive's root joined with `\`; "" is the root. Name
// matching is case-insensitive, as in Windows.
type Hive interface {
	// Subkeys returns the names of the subkeys of the key at path; ok is
	// false when that key does not exist.
	Subkeys(path string) (names []string, ok bool, err error)
	// Values returns the names of the values of the key at path; ok is false
	// when that key does not exist.
	Values(path string) (names []string, ok bool, err error)
	// Value returns one value of the key at path; ok is false when the key
	// or the value does not exist.
	Value(path, name string) (v Value, ok bool, err error)
}

// Value is a registry value's type and raw data.
type Value struct {
	Type uint32
	Data []byte
}

// DWORD builds a REG_DWORD value.
func DWORD(n uint32) Value {
	b := make([]byte, dwordSize)
	binary.LittleEndian.PutUint32(b, n)
	return Value{Type: TypeDWORD, Data: b}
}

// String builds a REG_SZ (or, with typ, REG_EXPAND_SZ) value, UTF-16LE with
// its terminating NUL as Windows stores it.
func String(typ uint32, s string) Value {
	return Value{Type: typ, Data: utf16z(s)}
}

// MultiString builds a REG_MULTI_SZ value.
func MultiString(ss []string) Value {
	var b []byte
	for _, s := range ss {
		b = append(b, utf16z(s)...)
	}
	b = append(b, 0, 0)
	return Value{Type: TypeMultiSZ, Data: b}
}

func utf16z(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// Uint32 interprets the value as a DWORD; ok is false for other types or
// short data.
func (v Value) Uint32() (uint32, bool) {
	if v.Type != TypeDWORD || len(v.Data) < dwordSize {
		return 0, false
	}
	return binary.LittleEndian.Uint32(v.Data), true
}

// Strings decodes REG_SZ, REG_EXPAND_SZ and REG_MULTI_SZ data into its
// strings (one for the single-string types). A multi-string ends at its
// first empty string, as Windows reads it; an odd trailing byte is ignored.
func (v Value) Strings() []string {
	u := make([]uint16, len(v.Data)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(v.Data[2*i:])
	}
	var out []string
	start := 0
	for i := 0; i <= len(u); i++ {
		if i < len(u) && u[i] != 0 {
			continue
		}
		if i == start {
			break // an empty string ends the list
		}
		out = append(out, string(utf16.Decode(u[start:i])))
		if v.Type != TypeMultiSZ {
			break
		}
		start = i + 1
	}
	return out
}

// Text is the first string of a string value, or "".
func (v Value) Text() string {
	if ss := v.Strings(); len(ss) > 0 {
		return ss[0]
	}
	return ""
}

// Equal reports whether two values have the same type and data. Strings
// compare by their decoded text so that a missing or extra NUL terminator,
// which Windows tolerates, is not a difference.
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type {
		return false
	}
	switch v.Type {
	case TypeSZ, TypeExpandSZ, TypeMultiSZ:
		a, b := v.Strings(), w.Strings()
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	return string(v.Data) == string(w.Data)
}

// join builds a key path from components.
func join(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, `\`)
}

// dword reads a DWORD value; ok is false when absent or not a DWORD.
func dword(h Hive, path, name string) (uint32, bool, error) {
	v, ok, err := h.Value(path, name)
	if err != nil || !ok {
		return 0, false, err
	}
	n, ok := v.Uint32()
	return n, ok, nil
}

// text reads a string value; ok is false when absent.
func text(h Hive, path, name string) (string, bool, error) {
	v, ok, err := h.Value(path, name)
	if err != nil || !ok {
		return "", false, err
	}
	return v.Text(), true, nil
}

// keyExists reports whether the key at path exists.
func keyExists(h Hive, path string) (bool, error) {
	_, ok, err := h.Subkeys(path)
	return ok, err
}
