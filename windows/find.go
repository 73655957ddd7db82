package windows

import (
	"errors"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/fstype"
	"github.com/kvmify/kvmify/ntfs"
	"github.com/kvmify/kvmify/partition"
)

// VolumeOpener opens the NTFS file system of one partition (r is the
// partition alone, offset 0 = its first byte) and reports its state.
type VolumeOpener func(r io.ReaderAt, size int64) (FS, VolumeState, error)

// Volume is one partition of a disk and what was found on it.
type Volume struct {
	Partition partition.Partition
	// FS is the file system its boot sector names (package fstype).
	FS       fstype.Kind
	NTFS     bool
	State    VolumeState
	Installs []*Install
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
		kind, err := fstype.Detect(r, p.Start)
		if err != nil {
			v.Err = err
			out = append(out, v)
			continue
		}
		v.FS, v.NTFS = kind, kind == fstype.NTFS
		switch kind {
		case fstype.NTFS:
			v.Installs, v.State, v.Err = inspectVolume(io.NewSectionReader(r, p.Start, p.Size), p.Size, open)
		case fstype.BitLocker:
			v.State.BitLocker = true
			v.Err = fmt.Errorf("%w (boot sector at byte %d): its files cannot be read until it is decrypted (manage-bde -off in Windows)", ntfs.ErrBitLocker, p.Start)
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
