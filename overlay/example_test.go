package overlay_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/overlay"
)

// Writes go to the overlay file; the source image is opened read-only and
// never changes.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "overlay-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o444); err != nil {
		log.Fatal(err)
	}

	src, err := disk.OpenSource(img)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, overlay.DefaultPath(img))
	o, err := overlay.Open(path, src, overlay.Options{SourcePath: img})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := o.WriteAt([]byte("hello"), 70000); err != nil {
		log.Fatal(err)
	}
	if err := o.Trim(256<<10, 128<<10); err != nil {
		log.Fatal(err)
	}
	if err := o.SetMeta("note", []byte("written by the example")); err != nil { // commits too
		log.Fatal(err)
	}
	if err := o.Close(); err != nil {
		log.Fatal(err)
	}

	in, err := overlay.ReadInfo(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(path), in.SourceSize, in.MetaKeys)
	for _, e := range in.Extents {
		fmt.Printf("%d+%d zero=%v\n", e.Offset, e.Length, e.Zero)
	}
	// Output:
	// disk.img.kvmify-overlay 1048576 [note]
	// 65536+65536 zero=false
	// 262144+131072 zero=true
}
