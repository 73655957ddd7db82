package vhdx

import (
	"testing"

	"github.com/kvmify/kvmify/internal/container/containertest"
)

// TestSeedsOpen keeps the fuzz seeds meaningful: each decodes to an image
// that opens.
func TestSeedsOpen(t *testing.T) {
	containertest.SeedsOpen(t, "seed.vhdx", Open)
}
