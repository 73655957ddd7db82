package bootfix

import "testing"

// FuzzValueDecode feeds arbitrary value data to the decoders Predict and
// ComputeChanges use on hive content: they must not panic, and a string
// value rebuilt from its decoded text must compare equal to it.
func FuzzValueDecode(f *testing.F) {
	f.Add(uint32(TypeSZ), String(TypeSZ, "atapi").Data)
	f.Add(uint32(TypeMultiSZ), MultiString([]string{"a", "bc"}).Data)
	f.Add(uint32(TypeDWORD), DWORD(3).Data)
	f.Add(uint32(TypeSZ), []byte{0x41})
	f.Fuzz(func(t *testing.T, typ uint32, data []byte) {
		v := Value{Type: typ, Data: data}
		v.Uint32()
		ss := v.Strings()
		_ = v.Text()
		if typ == TypeMultiSZ {
			w := MultiString(ss)
			if !w.Equal(Value{Type: TypeMultiSZ, Data: w.Data}) || len(w.Strings()) != len(ss) {
				t.Fatalf("multi-string %q does not round-trip", ss)
			}
		}
	})
}
