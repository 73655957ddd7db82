package vmdk

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/container"
	"github.com/kvmify/kvmify/internal/container/containertest"
)

// FuzzOpen feeds sparse extents (in the page encoding of
// container.EncodePages, seeded from testdata/) to Open and reads the
// disk: any outcome but a panic or a hang is fine, and a read either fills
// its buffer or fails.
func FuzzOpen(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.pages")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.vmdk")
		if err := container.WritePages(p, data, 16<<20/container.FuzzPageSize); err != nil {
			t.Fatal(err)
		}
		readAll(t, p)
	})
}

// FuzzDescriptor feeds text descriptors to Open; the extents they may name
// are a flat file and a sparse extent beside them.
func FuzzDescriptor(f *testing.F) {
	b, err := os.ReadFile("testdata/monolithicFlat-qemu-img.descriptor")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("# Disk DescriptorFile\nparentCID=ffffffff\ncreateType=\"x\"\nRW 8 FLAT \"flat.bin\" 1\nRDONLY 4 ZERO\nRW 128 SPARSE \"sparse.vmdk\"\n"))
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "flat.bin"), make([]byte, 64<<10), 0o644)
	// The qemu-img seed's flat extent: 64 MiB, sparse.
	if fl, err := os.Create(filepath.Join(dir, "mf-flat.vmdk")); err == nil {
		fl.Truncate(64 << 20)
		fl.Close()
	}
	if s, err := os.ReadFile("testdata/monolithicSparse-qemu-img.pages"); err == nil {
		container.WritePages(filepath.Join(dir, "sparse.vmdk"), s, 1<<12)
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		p := filepath.Join(dir, "fuzz.vmdk")
		if err := os.WriteFile(p, text, 0o644); err != nil {
			t.Fatal(err)
		}
		readAll(t, p)
	})
}

func readAll(t *testing.T, p string) {
	img, err := Open(p)
	if err != nil {
		return
	}
	defer img.Close()
	containertest.ReadSome(t, img)
}
