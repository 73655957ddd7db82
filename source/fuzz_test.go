package source

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDetect checks that detection of any head and tail ends in a kind,
// and that a file's head alone decides every kind but VHD's footer.
func FuzzDetect(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, s := range seeds {
		if fi, err := os.Stat(s); err != nil || fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		head := data[:min(len(data), HeadSize)]
		tail := data[max(0, len(data)-TailSize):]
		k := Detect(head, tail)
		if k.String() == "unknown" {
			t.Fatalf("kind %d has no name", k)
		}
		if k != KindVHD && k != Detect(head, nil) {
			t.Fatalf("kind %v depends on the tail", k)
		}
	})
}
