package main

import (
	"bytes"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/ntfs"
	parttable "github.com/kvmify/kvmify/partition"
	"github.com/kvmify/kvmify/source"
)

// ntfsOEMID is the boot sector OEM ID that marks an NTFS partition.
const (
	ntfsOEMIDOffset = 3
	ntfsOEMID       = "NTFS    "
	bitLockerOEMID  = "-FVE-FS-"
)

// openNTFS opens the image read-only and the NTFS volume on partition
// partNum (Linux numbering), or on the only or first NTFS partition when
// partNum is 0. The returned close releases the image.
func openNTFS(image string, partNum int) (*ntfs.Volume, func() error, error) {
	src, err := source.Open(image)
	if err != nil {
		return nil, nil, err
	}
	v, err := volumeOn(src, src.Size(), partNum)
	if err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("%s: %w", image, err)
	}
	return v, src.Close, nil
}

func volumeOn(r io.ReaderAt, size int64, partNum int) (*ntfs.Volume, error) {
	tab, err := parttable.Read(r, size)
	if err != nil {
		return nil, err
	}
	var chosen, bitlocker *parttable.Partition
	for i := range tab.Partitions {
		p := &tab.Partitions[i]
		if partNum != 0 {
			if p.Index == partNum {
				chosen = p
				break
			}
			continue
		}
		oem := make([]byte, len(ntfsOEMID))
		if _, err := r.ReadAt(oem, p.Start+ntfsOEMIDOffset); err == nil {
			if bytes.Equal(oem, []byte(ntfsOEMID)) {
				chosen = p
				break
			}
			if bytes.Equal(oem, []byte(bitLockerOEMID)) && bitlocker == nil {
				bitlocker = p
			}
		}
	}
	if chosen == nil && bitlocker != nil {
		// Let ntfs.Open explain that the volume is encrypted.
		chosen = bitlocker
	}
	switch {
	case chosen == nil && partNum != 0:
		return nil, fmt.Errorf("no partition %d (the %s table has %d)", partNum, tab.Scheme, len(tab.Partitions))
	case chosen == nil:
		return nil, fmt.Errorf("no NTFS partition found (%s table, %d partitions)", tab.Scheme, len(tab.Partitions))
	}
	v, err := ntfs.Open(chosen.Section(r), chosen.Size)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", chosen.Index, err)
	}
	return v, nil
}
