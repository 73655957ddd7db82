package windows

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/ntfs"
)

// ntfsLogFileV2 is the $LogFile version Windows 8 and later write; with a
// hibernation file present it marks a Fast Startup (hybrid) shutdown.
const ntfsLogFileV2 = "2.0"

// ntfsFS is an FS over an NTFS volume read by package ntfs.
type ntfsFS struct{ v *ntfs.Volume }

// Open implements FS, mapping a missing file (or a directory) to
// fs.ErrNotExist.
func (n ntfsFS) Open(path string) (disk.Reader, error) {
	s, err := n.v.OpenStream(path)
	if errors.Is(err, ntfs.ErrNotFound) || errors.Is(err, ntfs.ErrIsDirectory) || errors.Is(err, ntfs.ErrNotDirectory) {
		return nil, fmt.Errorf("windows: %s: %w (%v)", path, fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenNTFS is the VolumeOpener for NTFS partitions: package ntfs reads the
// file system and reports $Volume, $LogFile, hibernation and BitLocker
// state.
func OpenNTFS(r io.ReaderAt, size int64) (FS, VolumeState, error) {
	v, err := ntfs.Open(r, size)
	if err != nil {
		return nil, VolumeState{}, err
	}
	st, err := v.State()
	if err != nil {
		return nil, VolumeState{}, fmt.Errorf("windows: NTFS volume state: %w", err)
	}
	vs := VolumeState{
		Dirty:          st.Dirty,
		LogFileUnclean: !st.LogFileClean && !st.LogFileEmpty,
		BitLocker:      st.BitLocker,
		Hibernated:     st.Hibernation != "",
		Hiberfil:       st.Hibernation,
	}
	vs.FastStartup = vs.Hibernated && st.LogFileVersion == ntfsLogFileV2
	return ntfsFS{v}, vs, nil
}

// ntfsRewriter plans file rewrites on the NTFS volume an install was read
// from; nil when the install's FS is not package ntfs's.
func ntfsRewriter(fsys FS, allowUnsafe bool) FileRewriter {
	n, ok := fsys.(ntfsFS)
	if !ok {
		return nil
	}
	return func(path string, content []byte) ([]disk.Write, error) {
		ws, err := n.v.PlanRewrite(path, content, ntfs.PlanOptions{AllowUnsafeVolume: allowUnsafe})
		if err != nil {
			return nil, err
		}
		out := make([]disk.Write, len(ws))
		for i, w := range ws {
			out[i] = disk.Write{Offset: w.Offset, Data: w.Data, What: w.What}
		}
		return out, nil
	}
}
