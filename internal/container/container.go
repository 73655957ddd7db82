// Package container holds what the read-only container readers (qcow2,
// vhd, vhdx, vmdk) share: a bounded cache of decoded blocks, exact reads
// of their files that name the file and offset when bytes are missing, and
// building extent lists.
package container

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/kvmify/kvmify/disk"
)

// ErrTruncated is wrapped by reads that find fewer bytes in a file than its
// tables promise.
var ErrTruncated = errors.New("file is truncated")

// File is one input file of a container, opened read-only.
type File struct {
	f    *os.File
	Path string // absolute path
	Size int64  // length when opened
}

// OpenFile opens path with O_RDONLY only; a container file is never
// written.
func OpenFile(path string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(abs, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file or block device", abs)
	}
	size := fi.Size()
	if fi.Mode()&os.ModeDevice != 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: device size: %w", abs, err)
		}
	}
	return &File{f: f, Path: abs, Size: size}, nil
}

// ReadAt reads len(p) bytes at off exactly: fewer bytes are an error
// wrapping ErrTruncated that names the file and offset, never zeros.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.f.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		return n, fmt.Errorf("%s: %d bytes at offset %d (0x%x) lie past its end (%d bytes): %w",
			f.Path, len(p), off, off, f.Size, ErrTruncated)
	}
	return n, fmt.Errorf("%s: read at offset %d: %w", f.Path, off, err)
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// OS is the underlying read-only file, for disk.FileRanger answers.
func (f *File) OS() *os.File { return f.f }

// Contiguous checks, for a FileRange answer, that n bytes from host lie
// inside the file.
func (f *File) Contiguous(host, n int64) bool { return host >= 0 && n >= 0 && host <= f.Size-n }

// Cache is a bounded least-recently-used map from block numbers to decoded
// blocks (tables, decompressed grains). Its lock covers only the map: the
// decoding happens outside it, so concurrent readers decode in parallel
// (two may decode the same block at once; both results are equal).
type Cache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[int64]*list.Element
}

type cacheEntry struct {
	key int64
	val []byte
}

// NewCache makes a cache holding at most max blocks.
func NewCache(max int) *Cache {
	if max < 1 {
		max = 1
	}
	return &Cache{max: max, ll: list.New(), items: map[int64]*list.Element{}}
}

// Get returns the block cached under key, if any. Callers must not modify
// it.
func (c *Cache) Get(key int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*cacheEntry).val, true
	}
	return nil, false
}

// Add caches val under key, evicting the least recently used block when
// full.
func (c *Cache) Add(key int64, val []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		e.Value.(*cacheEntry).val = val
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key, val})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).key)
	}
}

// Load returns the block under key, decoding it with load on a miss.
func (c *Cache) Load(key int64, load func() ([]byte, error)) ([]byte, error) {
	if b, ok := c.Get(key); ok {
		return b, nil
	}
	b, err := load()
	if err != nil {
		return nil, err
	}
	c.Add(key, b)
	return b, nil
}

// Extents builds an extent list, joining adjacent runs of equal flags as
// the disk.Extenter contract requires.
type Extents []disk.Extent

// Add appends a run of length bytes with flags.
func (e *Extents) Add(length int64, flags disk.ExtentFlags) {
	if length <= 0 {
		return
	}
	if n := len(*e); n > 0 && (*e)[n-1].Flags == flags {
		(*e)[n-1].Length += length
		return
	}
	*e = append(*e, disk.Extent{Length: length, Flags: flags})
}

// Unallocated is how a block with no storage behind it reads: a hole of
// zeros.
const Unallocated = disk.ExtentHole | disk.ExtentZero

// CheckRange validates an Extents request against the disk size.
func CheckRange(off, length, size int64) error {
	if off < 0 || length <= 0 || off+length > size || off+length < off {
		return fmt.Errorf("extents %d+%d: %w", off, length, disk.ErrOutOfRange)
	}
	return nil
}

// ReadRange is the common shape of every reader's ReadAt: it splits
// [off, off+len(p)) at block boundaries, calls read for each piece within
// size, and returns io.EOF when the request runs past size.
func ReadRange(p []byte, off, size, block int64, read func(p []byte, blk, within int64) error) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, disk.ErrOutOfRange)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		blk, within := pos/block, pos%block
		l := int64(len(p) - n)
		if l > block-within {
			l = block - within
		}
		if err := read(p[n:n+int(l)], blk, within); err != nil {
			return n, err
		}
		n += int(l)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Runs batches the reads of a request whose blocks lie one after another
// in a file into one pread per run, so a sequential request over many
// small clusters costs few system calls.
type Runs struct {
	p          []byte // the request's buffer
	f          *File
	start, end int   // the pending run, as indexes into p
	host       int64 // file offset of p[start]
}

// NewRuns batches reads into p.
func NewRuns(p []byte) *Runs { return &Runs{p: p} }

// Add schedules reading p[i:i+n] from f at host, reading the pending run
// first when this does not extend it.
func (r *Runs) Add(f *File, i, n int, host int64) error {
	if r.end > r.start && r.f == f && r.end == i && r.host+int64(r.end-r.start) == host {
		r.end += n
		return nil
	}
	if err := r.Flush(); err != nil {
		return err
	}
	r.f, r.start, r.end, r.host = f, i, i+n, host
	return nil
}

// Flush reads the pending run.
func (r *Runs) Flush() error {
	if r.end == r.start {
		return nil
	}
	_, err := r.f.ReadAt(r.p[r.start:r.end], r.host)
	r.start = r.end
	return err
}
