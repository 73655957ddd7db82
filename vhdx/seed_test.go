package vhdx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/container"
)

// TestSeedsOpen keeps the fuzz seeds meaningful: each decodes to an image
// that opens.
func TestSeedsOpen(t *testing.T) {
	seeds, _ := filepath.Glob("testdata/*.pages")
	if len(seeds) == 0 {
		t.Fatal("no seeds")
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "seed.vhdx")
		if err := container.WritePages(p, b, 1<<20); err != nil {
			t.Fatal(err)
		}
		img, err := Open(p)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		img.Close()
	}
}
