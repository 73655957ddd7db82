package windows

import "testing"

func FuzzKernelVersion(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = KernelVersion(b)
	})
}
