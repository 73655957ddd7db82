package export

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"github.com/kvmify/kvmify/disk"
)

// The qcow2 images written here are version 3 with 64 KiB clusters and
// 16-bit refcounts, what qemu-img create makes by default (layout from
// docs/interop/qcow2.txt of QEMU). Clusters are laid out in one pass:
//
//	header | L1 table | data clusters, in guest order | L2 tables |
//	refcount blocks | refcount table
//
// L2 tables are kept in memory until the data is written (64 KiB per
// 512 MiB of guest disk that holds data), and every cluster of the file is
// in use exactly once, so the refcounts are a run of ones.
const (
	qcowMagic         = 0x514649fb // "QFI\xfb"
	qcowVersion       = 3
	clusterBits       = 16
	clusterSize       = 1 << clusterBits
	l2Entries         = clusterSize / 8
	refcountOrder     = 4 // 16-bit refcounts
	refcountsPerBlock = clusterSize / 2
	qcowHeaderLength  = 104 // the version 3 header without optional fields

	// L1 and L2 entry flags: COPIED says the cluster's refcount is one, so
	// QEMU may write it in place; ZERO (L2, version 3) says it reads as
	// zeros whatever the backing file holds.
	oflagCopied = 1 << 63
	oflagZero   = 1 << 0

	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
)

// Offsets of the version 3 header's fields.
const (
	hdrMagic                 = 0
	hdrVersion               = 4
	hdrBackingFileOffset     = 8
	hdrBackingFileSize       = 16
	hdrClusterBits           = 20
	hdrSize                  = 24
	hdrL1Size                = 36
	hdrL1TableOffset         = 40
	hdrRefcountTableOffset   = 48
	hdrRefcountTableClusters = 56
	hdrRefcountOrder         = 96
	hdrHeaderLength          = 100
)

// qcowWriter lays out one image.
type qcowWriter struct {
	f       *os.File
	size    int64
	backing string // raw backing file, or ""
	l1      []uint64
	l2      map[int][]uint64 // by L1 index
	next    int64            // the next free cluster
	done    int64            // guest clusters below this were handled
	buf     []byte
	p       *progressCounter
}

func newQCOWWriter(f *os.File, size int64, backing string, p *progressCounter) *qcowWriter {
	l1Size := (size + clusterSize*l2Entries - 1) / (clusterSize * l2Entries)
	l1Clusters := max(1, (l1Size*8+clusterSize-1)/clusterSize)
	return &qcowWriter{
		f: f, size: size, backing: backing,
		l1:   make([]uint64, l1Size),
		l2:   make(map[int][]uint64),
		next: 1 + l1Clusters,
		buf:  make([]byte, chunkSize),
		p:    p,
	}
}

// writeQCOW2 writes src as a standalone image to f.
func writeQCOW2(ctx context.Context, src disk.Reader, f *os.File, p *progressCounter) error {
	w := newQCOWWriter(f, src.Size(), "", p)
	if err := dataRuns(ctx, src, func(off, n int64) error {
		return w.copyRange(ctx, src, off, off+n)
	}, func(_, n int64) { p.add(n) }); err != nil {
		return err
	}
	return w.finish()
}

// copyRange writes the clusters that [lo, hi) of the guest touches, reading
// whole clusters from src; clusters a previous range touched are done.
func (w *qcowWriter) copyRange(ctx context.Context, src disk.Reader, lo, hi int64) error {
	first := max(lo/clusterSize, w.done)
	last := (hi + clusterSize - 1) / clusterSize // exclusive
	if w.p != nil {
		w.p.add(hi - lo)
	}
	for c := first; c < last; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(last-c, int64(len(w.buf)/clusterSize))
		off := c * clusterSize
		b := w.buf[:n*clusterSize]
		valid := min(int64(len(b)), w.size-off)
		if err := readView(src, b[:valid], off); err != nil {
			return err
		}
		clear(b[valid:]) // the last cluster past the end of the disk
		if err := w.clusters(c, b); err != nil {
			return err
		}
		c += n
		w.done = c
	}
	return nil
}

// clusters stores the guest clusters from c on whose data is b: all-zero
// ones are left unallocated (reading as zeros) or, over a backing file,
// marked zero; runs of the others are written with one call each.
func (w *qcowWriter) clusters(c int64, b []byte) error {
	for i := int64(0); i*clusterSize < int64(len(b)); {
		data := b[i*clusterSize : (i+1)*clusterSize]
		if allZero(data) {
			if w.backing != "" {
				w.setL2(c+i, oflagZero)
			}
			i++
			continue
		}
		start, host := i, w.next
		for i*clusterSize < int64(len(b)) && !allZero(b[i*clusterSize:(i+1)*clusterSize]) {
			w.setL2(c+i, uint64(w.next*clusterSize)|oflagCopied)
			w.next++
			i++
		}
		if _, err := w.f.WriteAt(b[start*clusterSize:i*clusterSize], host*clusterSize); err != nil {
			return fmt.Errorf("writing %s at byte %d: %w", w.f.Name(), host*clusterSize, err)
		}
	}
	return nil
}

func (w *qcowWriter) setL2(c int64, entry uint64) {
	k := int(c / l2Entries)
	t := w.l2[k]
	if t == nil {
		t = make([]uint64, l2Entries)
		w.l2[k] = t
	}
	t[c%l2Entries] = entry
}

// finish writes the L2 tables, refcounts, L1 table and header after the
// data.
func (w *qcowWriter) finish() error {
	keys := make([]int, 0, len(w.l2))
	for k := range w.l2 {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	table := make([]byte, clusterSize)
	for _, k := range keys {
		for i, e := range w.l2[k] {
			binary.BigEndian.PutUint64(table[i*8:], e)
		}
		if err := w.writeCluster(w.next, table); err != nil {
			return err
		}
		w.l1[k] = uint64(w.next*clusterSize) | oflagCopied
		w.next++
	}

	used := w.next
	blocks, tables := refcountLayout(used)
	total := used + blocks + tables
	rtable := make([]byte, tables*clusterSize)
	for i := range blocks {
		clear(table)
		for j := int64(0); j < refcountsPerBlock && i*refcountsPerBlock+j < total; j++ {
			binary.BigEndian.PutUint16(table[j*2:], 1)
		}
		if err := w.writeCluster(used+i, table); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(rtable[i*8:], uint64((used+i)*clusterSize))
	}
	rtableOff := (used + blocks) * clusterSize
	if _, err := w.f.WriteAt(rtable, rtableOff); err != nil {
		return fmt.Errorf("writing %s at byte %d: %w", w.f.Name(), rtableOff, err)
	}

	l1 := make([]byte, len(w.l1)*8)
	for i, e := range w.l1 {
		binary.BigEndian.PutUint64(l1[i*8:], e)
	}
	if _, err := w.f.WriteAt(l1, clusterSize); err != nil {
		return fmt.Errorf("writing %s at byte %d: %w", w.f.Name(), clusterSize, err)
	}

	hdr, err := w.header(rtableOff, tables)
	if err != nil {
		return err
	}
	if _, err := w.f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("writing %s at byte 0: %w", w.f.Name(), err)
	}
	return nil
}

// refcountLayout gives how many refcount blocks and refcount table
// clusters an image of used clusters needs, placed after them: they count
// themselves too, so they grow until they cover every cluster.
func refcountLayout(used int64) (blocks, tables int64) {
	total := used
	for {
		blocks = (total + refcountsPerBlock - 1) / refcountsPerBlock
		tables = (blocks*8 + clusterSize - 1) / clusterSize
		if used+blocks+tables == total {
			return blocks, tables
		}
		total = used + blocks + tables
	}
}

func (w *qcowWriter) writeCluster(c int64, b []byte) error {
	if _, err := w.f.WriteAt(b, c*clusterSize); err != nil {
		return fmt.Errorf("writing %s at byte %d: %w", w.f.Name(), c*clusterSize, err)
	}
	return nil
}

// header builds cluster 0: the header, its extensions (the backing file's
// format, so QEMU does not probe a raw backing file) and the backing file
// name.
func (w *qcowWriter) header(rtableOff, rtableClusters int64) ([]byte, error) {
	h := make([]byte, qcowHeaderLength, clusterSize)
	be := binary.BigEndian
	be.PutUint32(h[hdrMagic:], qcowMagic)
	be.PutUint32(h[hdrVersion:], qcowVersion)
	be.PutUint32(h[hdrClusterBits:], clusterBits)
	be.PutUint64(h[hdrSize:], uint64(w.size))
	be.PutUint32(h[hdrL1Size:], uint32(len(w.l1)))
	be.PutUint64(h[hdrL1TableOffset:], clusterSize)
	be.PutUint64(h[hdrRefcountTableOffset:], uint64(rtableOff))
	be.PutUint32(h[hdrRefcountTableClusters:], uint32(rtableClusters))
	be.PutUint32(h[hdrRefcountOrder:], refcountOrder)
	be.PutUint32(h[hdrHeaderLength:], qcowHeaderLength)
	ext := func(typ uint32, data []byte) {
		h = be.AppendUint32(h, typ)
		h = be.AppendUint32(h, uint32(len(data)))
		h = append(h, data...)
		for len(h)%8 != 0 {
			h = append(h, 0)
		}
	}
	if w.backing != "" {
		ext(extBackingFormat, []byte("raw"))
	}
	ext(extEnd, nil)
	if w.backing != "" {
		if len(h)+len(w.backing) > clusterSize || len(w.backing) > 1023 {
			return nil, fmt.Errorf("backing file name of %d bytes is too long for qcow2", len(w.backing))
		}
		be.PutUint64(h[hdrBackingFileOffset:], uint64(len(h)))
		be.PutUint32(h[hdrBackingFileSize:], uint32(len(w.backing)))
		h = append(h, w.backing...)
	}
	return h, nil
}
