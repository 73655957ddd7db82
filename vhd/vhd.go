// Package vhd reads Microsoft VHD images (Virtual PC, Hyper-V, Disk2vhd;
// QEMU's "vpc") read-only: fixed and dynamic disks. Differencing disks are
// refused.
package vhd

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/container"
)

// Image is an open VHD; it is safe for concurrent ReadAt.
type Image struct {
	f          *container.File
	ft         footer
	size       int64
	blockSize  int64 // dynamic only
	bitmapSize int64 // bytes of sector bitmap before each block's data
	bat        []uint32
}

var _ disk.Extenter = (*Image)(nil)

// Open opens the VHD at path read-only.
func Open(path string) (*Image, error) {
	f, err := container.OpenFile(path)
	if err != nil {
		return nil, err
	}
	img, err := newImage(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

func newImage(f *container.File) (*Image, error) {
	bad := func(off int64, what string, v any, err error) error {
		return &FormatError{File: f.Path, Offset: off, What: what, Value: v, Err: err}
	}
	if f.Size < footerSize {
		return nil, bad(0, "file shorter than a footer", f.Size, ErrNotVHD)
	}
	// A dynamic disk's footer copy at offset 0 is what QEMU reads; the
	// footer at the end is used when the copy is missing or damaged, and is
	// the only one of a fixed disk.
	head := make([]byte, footerSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		return nil, err
	}
	tail := make([]byte, footerSize)
	if _, err := f.ReadAt(tail, f.Size-footerSize); err != nil {
		return nil, err
	}
	var ft footer
	switch {
	case validFooter(head):
		ft = decodeFooter(head)
	case validFooter(tail):
		ft = decodeFooter(tail)
	case Sniff(head):
		return nil, bad(footerChecksumAt, "footer copy checksum (and no valid footer at the end)", nil, ErrCorrupt)
	case string(tail[:8]) == footerCookie:
		return nil, bad(f.Size-footerSize+footerChecksumAt, "footer checksum", nil, ErrCorrupt)
	default:
		return nil, bad(f.Size-footerSize, "footer cookie", nil, ErrNotVHD)
	}
	img := &Image{f: f, ft: ft, size: ft.size()}
	if img.size <= 0 || img.size > maxSize {
		return nil, bad(48, "disk size", img.size, ErrCorrupt)
	}
	switch ft.DiskType {
	case diskTypeFixed:
		if img.size > f.Size-footerSize {
			return nil, bad(f.Size, fmt.Sprintf("fixed disk of %d bytes in a file of %d bytes: the file is truncated", img.size, f.Size), nil, ErrCorrupt)
		}
		return img, nil
	case diskTypeDynamic, diskTypeDiff:
	default:
		return nil, bad(60, "disk type", ft.DiskType, ErrUnsupported)
	}

	if ft.DataOffset > uint64(f.Size) || dynamicSize > uint64(f.Size)-ft.DataOffset {
		return nil, bad(16, "dynamic header offset", ft.DataOffset, ErrCorrupt)
	}
	hoff := int64(ft.DataOffset)
	hb := make([]byte, dynamicSize)
	if _, err := f.ReadAt(hb, hoff); err != nil {
		return nil, err
	}
	dh := decodeDynamicHeader(hb)
	if dh.Cookie != dynamicCookie {
		return nil, bad(hoff, "dynamic header cookie", dh.Cookie, ErrCorrupt)
	}
	if checksum(hb, dynChecksumAt) != dh.Checksum {
		return nil, bad(hoff+dynChecksumAt, "dynamic header checksum", nil, ErrCorrupt)
	}
	if ft.DiskType == diskTypeDiff {
		// QEMU cannot make or read a differencing VHD, so there is no
		// oracle to check a parent chain against.
		return nil, bad(60, "differencing VHD refused (no parent is followed)", fmt.Sprintf("parent %q", dh.ParentUnicodeName), ErrUnsupported)
	}
	bs := int64(dh.BlockSize)
	if bs < sectorSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return nil, bad(hoff+32, "block size", bs, ErrCorrupt)
	}
	img.blockSize = bs
	// One bit per sector, padded to whole sectors.
	img.bitmapSize = (bs/sectorSize/8 + sectorSize - 1) / sectorSize * sectorSize
	blocks := (img.size + bs - 1) / bs
	if int64(dh.MaxTableEntries) < blocks {
		return nil, bad(hoff+28, fmt.Sprintf("MaxTableEntries below the %d blocks of the disk", blocks), dh.MaxTableEntries, ErrCorrupt)
	}
	if dh.TableOffset > uint64(f.Size) || uint64(blocks)*4 > uint64(f.Size)-dh.TableOffset {
		return nil, bad(hoff+16, "BAT not inside the file", dh.TableOffset, ErrCorrupt)
	}
	raw := make([]byte, blocks*4)
	if _, err := f.ReadAt(raw, int64(dh.TableOffset)); err != nil {
		return nil, err
	}
	img.bat = make([]uint32, blocks)
	for i := range img.bat {
		e := binary.BigEndian.Uint32(raw[i*4:])
		img.bat[i] = e
		if e == batUnused {
			continue
		}
		// The block's bytes that belong to the disk must exist.
		need := img.bitmapSize + min(bs, img.size-int64(i)*bs)
		if off := int64(e) * sectorSize; off > f.Size-need {
			return nil, bad(int64(dh.TableOffset)+int64(i)*4, fmt.Sprintf("BAT entry of block %d points past the end of the file (%d bytes)", i, f.Size), e, ErrCorrupt)
		}
	}
	return img, nil
}

// Size is the logical disk size in bytes.
func (img *Image) Size() int64 { return img.size }

// Format names the container and its disk type: "vhd/fixed" or
// "vhd/dynamic".
func (img *Image) Format() string {
	if img.ft.DiskType == diskTypeFixed {
		return "vhd/fixed"
	}
	return "vhd/dynamic"
}

// InputFiles lists the absolute path of the image file.
func (img *Image) InputFiles() []string { return []string{img.f.Path} }

// Close closes the image file.
func (img *Image) Close() error { return img.f.Close() }

// ReadAt reads the logical disk; unallocated blocks read as zeros. Bytes
// past Size give io.EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if img.bat == nil {
		return container.ReadRange(p, off, img.size, img.size, func(p []byte, _, within int64) error {
			_, err := img.f.ReadAt(p, within)
			return err
		})
	}
	// A dynamic disk's allocated block holds zeros in sectors never
	// written, so its data is read as it is, bitmap unread (as QEMU and
	// Windows read a dynamic, non-differencing disk).
	return container.ReadRange(p, off, img.size, img.blockSize, func(p []byte, b, within int64) error {
		e := img.bat[b]
		if e == batUnused {
			clear(p)
			return nil
		}
		_, err := img.f.ReadAt(p, int64(e)*sectorSize+img.bitmapSize+within)
		return err
	})
}

var _ disk.FileRanger = (*Image)(nil)

// FileRange reports when [off, off+n) reads as one run of the image file
// (any range of a fixed disk; a range within one allocated block of a
// dynamic one), so a server can send it with sendfile(2).
func (img *Image) FileRange(off, n int64) (*os.File, int64, bool) {
	if off < 0 || n <= 0 || off > img.size-n {
		return nil, 0, false
	}
	host := off
	if img.bat != nil {
		b := off / img.blockSize
		if (off+n-1)/img.blockSize != b || img.bat[b] == batUnused {
			return nil, 0, false
		}
		host = int64(img.bat[b])*sectorSize + img.bitmapSize + off%img.blockSize
	}
	if !img.f.Contiguous(host, n) {
		return nil, 0, false
	}
	return img.f.OS(), host, true
}

// Extents reports unallocated blocks of a dynamic disk as holes and the
// rest as data.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if err := container.CheckRange(off, length, img.size); err != nil {
		return nil, fmt.Errorf("%s: %w", img.f.Path, err)
	}
	if img.bat == nil {
		return []disk.Extent{{Length: img.size - off}}, nil
	}
	var out container.Extents
	for pos := off; pos < off+length; {
		b := pos / img.blockSize
		next := min((b+1)*img.blockSize, img.size)
		var fl disk.ExtentFlags
		if img.bat[b] == batUnused {
			fl = container.Unallocated
		}
		out.Add(next-pos, fl)
		pos = next
	}
	return out, nil
}
