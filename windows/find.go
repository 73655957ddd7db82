package windows

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/partition"
)

// NTFS boot sector: the OEM ID at offset 3 names the file system.
const (
	ntfsOEMOffset = 3
	ntfsOEMID     = "NTFS    "
)

// VolumeOpener opens the NTFS file system of one partition (r is the
// partition alone, offset 0 = its first byte) and reports its state.
type VolumeOpener func(r io.ReaderAt, size int64) (FS, VolumeState, error)

// Volume is one partition of a disk and what was found on it.
type Volume struct {
	Partition partition.Partition
	NTFS      bool
	State     VolumeState
	Installs  []*Install
	// Err is why the volume could not be inspected; other volumes are
	// still reported.
	Err error
}

// ErrNoOpener marks an NTFS partition that could not be read because no
// VolumeOpener was given.
var ErrNoOpener = errors.New("windows: no NTFS reader available")

// Find reads the disk's partition table and looks for Windows on every NTFS
// partition.
func Find(r io.ReaderAt, size int64, open VolumeOpener) ([]Volume, error) {
	t, err := partition.Read(r, size)
	if err != nil {
		return nil, fmt.Errorf("windows: %w", err)
	}
	var out []Volume
	for _, p := range t.Partitions {
		v := Volume{Partition: p}
		oem := make([]byte, len(ntfsOEMID))
		if _, err := r.ReadAt(oem, p.Start+ntfsOEMOffset); err != nil {
			v.Err = fmt.Errorf("reading boot sector at %d: %w", p.Start, err)
			out = append(out, v)
			continue
		}
		v.NTFS = bytes.Equal(oem, []byte(ntfsOEMID))
		if v.NTFS {
			v.Installs, v.State, v.Err = inspectVolume(io.NewSectionReader(r, p.Start, p.Size), p.Size, open)
		}
		out = append(out, v)
	}
	return out, nil
}

func inspectVolume(r io.ReaderAt, size int64, open VolumeOpener) ([]*Install, VolumeState, error) {
	if open == nil {
		return nil, VolumeState{}, ErrNoOpener
	}
	fsys, vs, err := open(r, size)
	if err != nil {
		return nil, vs, err
	}
	sig, hib, err := Hiberfil(fsys)
	if err != nil {
		return nil, vs, err
	}
	if hib {
		vs.Hiberfil, vs.Hibernated = sig, true
	}
	ins, err := Inspect(fsys)
	return ins, vs, err
}
