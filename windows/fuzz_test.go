package windows

import (
	"encoding/binary"
	"testing"
)

func FuzzKernelVersion(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("MZ"))
	rsrc := make([]byte, 0x40)
	binary.LittleEndian.PutUint32(rsrc[0x10:], vsFixedFileInfoSignature)
	f.Add(handBuiltPE(rsrc))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = KernelVersion(b)
	})
}
