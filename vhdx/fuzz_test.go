package vhdx

import (
	"testing"

	"github.com/kvmify/kvmify/internal/container/containertest"
)

// FuzzOpen feeds images (in the page encoding of container.EncodePages,
// seeded from testdata/) to Open and reads the disk: any outcome but a
// panic or a hang is fine, and a read either fills its buffer or fails.
func FuzzOpen(f *testing.F) {
	containertest.FuzzOpen(f, "fuzz.vhdx", 64<<20, Open)
}
