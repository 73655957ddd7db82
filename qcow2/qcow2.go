// Package qcow2 reads QEMU's qcow2 images (versions 2 and 3) read-only:
// L1/L2 tables, zero clusters, deflate-compressed clusters and backing
// files (qcow2 or raw), followed read-only. Encryption, external data
// files, extended L2 entries and zstd compression are refused.
package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/container"
	"github.com/kvmify/kvmify/internal/container/inflate"
)

// Entry bits of L1 and L2 tables.
const (
	offsetMask     = 0x00fffffffffffe00 // bits 9-55: host offset
	l2Compressed   = 1 << 62
	l2ZeroFlag     = 1 << 0
	maxBackingLink = 16 // deeper chains are refused (and loops end)
	// Cache budgets in bytes, so memory stays bounded whatever the
	// cluster size.
	l2CacheBytes      = 32 << 20
	clusterCacheBytes = 16 << 20
)

// backing is what a qcow2 image reads unallocated clusters from.
type backing interface {
	io.ReaderAt
	Size() int64
	Close() error
	InputFiles() []string
}

// Image is an open qcow2 image; it is safe for concurrent ReadAt.
type Image struct {
	f        *container.File
	h        *header
	cs       int64 // cluster size
	l2n      int64 // entries per L2 table
	l1       []uint64
	l2       *container.Cache // L2 tables by host offset
	clusters *container.Cache // decompressed clusters by guest cluster
	back     backing
	// inflaters reuses deflate state and input buffers across clusters:
	// a fresh decompressor per cluster was most of the garbage a
	// compressed image made.
	inflaters sync.Pool
}

// inflater is a reusable deflate decoder with its input buffer.
type inflater struct {
	d    inflate.Decoder
	comp []byte
}

var _ disk.Extenter = (*Image)(nil)

// Open opens the qcow2 image at path read-only, and its backing chain.
func Open(path string) (*Image, error) { return open(path, 0) }

func open(path string, depth int) (*Image, error) {
	f, err := container.OpenFile(path)
	if err != nil {
		return nil, err
	}
	img, err := newImage(f, depth)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

func newImage(f *container.File, depth int) (*Image, error) {
	n := f.Size
	if n > 1<<maxClusterBits+maxBackingName+1 {
		n = 1<<maxClusterBits + maxBackingName + 1
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	h, backingFormat, err := parseHeader(b, f.Path, f.Size)
	if err != nil {
		return nil, err
	}
	img := &Image{f: f, h: h, cs: 1 << h.ClusterBits}
	img.l2n = img.cs / 8
	img.l2 = container.NewCache(int(l2CacheBytes / img.cs))
	img.clusters = container.NewCache(int(clusterCacheBytes / img.cs))
	raw := make([]byte, int64(h.L1Size)*8)
	if _, err := f.ReadAt(raw, int64(h.L1TableOffset)); err != nil {
		return nil, err
	}
	img.l1 = make([]uint64, h.L1Size)
	for i := range img.l1 {
		img.l1[i] = binary.BigEndian.Uint64(raw[i*8:])
	}
	if h.BackingFileOffset != 0 {
		name := string(b[h.BackingFileOffset : h.BackingFileOffset+uint64(h.BackingFileSize)])
		if img.back, err = openBacking(f.Path, name, backingFormat, depth); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// openBacking opens a backing file read-only, its path taken relative to
// the child's directory as QEMU does.
func openBacking(child, name, format string, depth int) (backing, error) {
	if depth+1 >= maxBackingLink {
		return nil, &FormatError{File: child, Offset: 8, What: "backing chain deeper than 16 (or a loop)", Value: name, Err: ErrUnsupported}
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(child), p)
	}
	if format == "" {
		magic := make([]byte, 4)
		bf, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%s: backing file %q: %w", child, name, err)
		}
		_, err = io.ReadFull(bf, magic)
		bf.Close()
		if err == nil && Sniff(magic) {
			format = "qcow2"
		} else {
			format = "raw"
		}
	}
	switch format {
	case "qcow2":
		b, err := open(p, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: backing file: %w", child, err)
		}
		return b, nil
	case "raw":
		bf, err := container.OpenFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: backing file %q: %w", child, name, err)
		}
		return rawBacking{bf}, nil
	}
	return nil, &FormatError{File: child, Offset: 8, What: "backing file format (only qcow2 and raw backing files are followed)", Value: format, Err: ErrUnsupported}
}

// rawBacking is a raw backing file.
type rawBacking struct{ f *container.File }

func (r rawBacking) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r rawBacking) Size() int64                             { return r.f.Size }
func (r rawBacking) Close() error                            { return r.f.Close() }
func (r rawBacking) InputFiles() []string                    { return []string{r.f.Path} }

// Size is the logical disk size in bytes.
func (img *Image) Size() int64 { return int64(img.h.Size) }

// Format names the container format.
func (img *Image) Format() string { return "qcow2" }

// InputFiles lists the absolute paths of the image and its backing chain.
func (img *Image) InputFiles() []string {
	files := []string{img.f.Path}
	if img.back != nil {
		files = append(files, img.back.InputFiles()...)
	}
	return files
}

// Close closes the image and its backing chain.
func (img *Image) Close() error {
	err := img.f.Close()
	if img.back != nil {
		if e := img.back.Close(); err == nil {
			err = e
		}
	}
	return err
}

// l2Entry returns the L2 entry of guest cluster c (0 when its L2 table is
// unallocated).
func (img *Image) l2Entry(c int64) (uint64, error) {
	i := c / img.l2n
	l1e := img.l1[i]
	l2off := int64(l1e & offsetMask)
	if l2off == 0 {
		return 0, nil
	}
	if l2off%img.cs != 0 || l2off > img.f.Size-img.cs {
		return 0, &FormatError{File: img.f.Path, Offset: int64(img.h.L1TableOffset) + i*8,
			What: "L1 entry (L2 table not inside the file)", Value: fmt.Sprintf("0x%x", l1e), Err: ErrCorrupt}
	}
	t, err := img.l2.Load(l2off, func() ([]byte, error) {
		t := make([]byte, img.cs)
		if _, err := img.f.ReadAt(t, l2off); err != nil {
			return nil, err
		}
		return t, nil
	})
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(t[(c%img.l2n)*8:]), nil
}

// ReadAt reads the logical disk. Bytes past Size give io.EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	runs := container.NewRuns(p)
	n, err := container.ReadRange(p, off, img.Size(), img.cs, func(q []byte, c, within int64) error {
		e, err := img.l2Entry(c)
		if err != nil {
			return err
		}
		if host, ok, err := img.standard(c, e); err != nil {
			return err
		} else if ok {
			return runs.Add(img.f, int(c*img.cs+within-off), len(q), host+within)
		}
		if err := runs.Flush(); err != nil {
			return err
		}
		return img.readCluster(q, c, within, e)
	})
	if ferr := runs.Flush(); ferr != nil {
		return 0, ferr
	}
	return n, err
}

var _ disk.FileRanger = (*Image)(nil)

// FileRange reports when [off, off+n) is plain clusters stored one after
// another in the image file, so a server can send them with sendfile(2).
// It answers from cached L2 tables only, never reading, as servers ask it
// on their request loop.
func (img *Image) FileRange(off, n int64) (*os.File, int64, bool) {
	if off < 0 || n <= 0 || off > img.Size()-n {
		return nil, 0, false
	}
	start := int64(-1)
	for pos := off; pos < off+n; {
		c := pos / img.cs
		t, ok := img.l2.Get(int64(img.l1[c/img.l2n] & offsetMask))
		if !ok {
			return nil, 0, false
		}
		e := binary.BigEndian.Uint64(t[(c%img.l2n)*8:])
		host, ok, err := img.standard(c, e)
		if err != nil || !ok {
			return nil, 0, false
		}
		h := host + pos%img.cs
		if start < 0 {
			start = h
		} else if h != start+(pos-off) {
			return nil, 0, false
		}
		pos = min((c+1)*img.cs, off+n)
	}
	if !img.f.Contiguous(start, n) {
		return nil, 0, false
	}
	return img.f.OS(), start, true
}

// l2Where is the absolute offset of guest cluster c's L2 entry, for errors.
func (img *Image) l2Where(c int64) int64 {
	return int64(img.l1[c/img.l2n]&offsetMask) + (c%img.l2n)*8
}

// standard returns the host offset of guest cluster c when its entry e
// is a plain allocated cluster, checked.
func (img *Image) standard(c int64, e uint64) (int64, bool, error) {
	if e&l2Compressed != 0 || e&l2ZeroFlag != 0 && img.h.Version >= 3 || e&offsetMask == 0 {
		return 0, false, nil
	}
	host := int64(e & offsetMask)
	if host%img.cs != 0 || e&^(offsetMask|1<<63|l2ZeroFlag) != 0 {
		return 0, false, &FormatError{File: img.f.Path, Offset: img.l2Where(c), What: "L2 entry", Value: fmt.Sprintf("0x%x", e), Err: ErrCorrupt}
	}
	return host, true, nil
}

// readCluster reads what is not a plain allocated cluster: compressed,
// zero, or from the backing file.
func (img *Image) readCluster(p []byte, c, within int64, e uint64) error {
	switch {
	case e&l2Compressed != 0:
		data, err := img.clusters.Load(c, func() ([]byte, error) { return img.inflate(c, e) })
		if err != nil {
			return err
		}
		copy(p, data[within:])
		return nil
	case e&l2ZeroFlag != 0 && img.h.Version >= 3:
		clear(p)
		return nil
	}
	return img.readBacking(p, c*img.cs+within)
}

// readBacking reads an unallocated range: from the backing file, zeros past
// its end (as QEMU reads a shorter backing file), or zeros without one.
func (img *Image) readBacking(p []byte, off int64) error {
	if img.back == nil {
		clear(p)
		return nil
	}
	n := int64(len(p))
	if bs := img.back.Size(); off+n > bs {
		if off < bs {
			n = bs - off
		} else {
			n = 0
		}
	}
	clear(p[n:])
	if n == 0 {
		return nil
	}
	_, err := img.back.ReadAt(p[:n], off)
	return err
}

// inflate decompresses guest cluster c stored compressed as entry e.
func (img *Image) inflate(c int64, e uint64) ([]byte, error) {
	x := 62 - (img.h.ClusterBits - 8)
	host := int64(e & (1<<x - 1))
	sectors := int64((e>>x)&(1<<(img.h.ClusterBits-8)-1)) + 1
	n := sectors*512 - host%512
	if host >= img.f.Size {
		return nil, &FormatError{File: img.f.Path, Offset: img.l2Where(c), What: "compressed cluster offset past the end of the file", Value: host, Err: ErrCorrupt}
	}
	// The sector count is an upper bound; the last cluster of a file may
	// end before it.
	if n > img.f.Size-host {
		n = img.f.Size - host
	}
	z, _ := img.inflaters.Get().(*inflater)
	if z == nil {
		z = &inflater{}
	}
	defer img.inflaters.Put(z)
	if int64(cap(z.comp)) < n {
		z.comp = make([]byte, n)
	}
	comp := z.comp[:n]
	if _, err := img.f.ReadAt(comp, host); err != nil {
		return nil, err
	}
	out := make([]byte, img.cs)
	// Like QEMU, the cluster must fill; the stream may go on into the
	// padding of its last sector.
	if k, err := z.d.Deflate(out, comp); err != nil || k != len(out) {
		if err == nil {
			err = fmt.Errorf("stream ends after %d of %d bytes", k, len(out))
		}
		return nil, &FormatError{File: img.f.Path, Offset: host, What: fmt.Sprintf("compressed cluster %d (deflate)", c), Value: err.Error(), Err: ErrCorrupt}
	}
	return out, nil
}

// maxExtentClusters bounds the work of one Extents call.
const maxExtentClusters = 1 << 16

// Extents reports unallocated clusters as holes (data when a backing file
// may hold them), zero clusters as zero, and the rest as data.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if err := container.CheckRange(off, length, img.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", img.f.Path, err)
	}
	var out container.Extents
	end := off + length
	for pos, n := off, 0; pos < end && n < maxExtentClusters; n++ {
		c := pos / img.cs
		next := min((c+1)*img.cs, img.Size())
		e, err := img.l2Entry(c)
		if err != nil {
			return nil, err
		}
		var fl disk.ExtentFlags
		switch {
		case e&l2Compressed != 0:
		case e&l2ZeroFlag != 0 && img.h.Version >= 3:
			fl = disk.ExtentZero
			if e&offsetMask == 0 {
				fl = container.Unallocated
			}
		case e&offsetMask == 0 && img.back == nil:
			fl = container.Unallocated
		}
		out.Add(next-pos, fl)
		pos = next
	}
	return out, nil
}
