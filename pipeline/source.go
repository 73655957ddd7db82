package pipeline

import (
	"fmt"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/source"
)

// Source is an opened, read-only input disk: its bytes, a way to release
// it, and the absolute paths of every file it reads (segments, extents,
// backing files), so no output is ever written over one of them.
type Source interface {
	disk.Reader
	Close() error
	InputFiles() []string
	// Format names the container (raw, split-raw, ewf, qcow2, nbd, ...).
	Format() string
}

var _ Source = source.Image(nil)

// OpenSource opens the image at path read-only, in the container format its
// content shows (package source: raw, split raw, E01, VHD(X), VMDK, qcow2,
// an NBD URI). It is the one place an image is opened.
// An empty image is refused: there is no disk to serve or plan.
func OpenSource(path string) (Source, error) {
	src, err := source.Open(path)
	if err != nil {
		return nil, err
	}
	if src.Size() == 0 {
		src.Close()
		return nil, fmt.Errorf("%s is empty (0 bytes): there is no disk in it; check the path, or the copy that produced it", path)
	}
	return src, nil
}
