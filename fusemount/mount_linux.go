//go:build linux

package fusemount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kvmify/kvmify/disk"
)

// maxRequest is the largest read or write the kernel sends in one request;
// 1 MiB was measured to let direct_io reads reach several GiB/s.
const maxRequest = 1 << 20

// StaticFile is a read-only file shown beside the disk.
type StaticFile struct {
	Name string
	Data []byte
}

// Options describe what a mount shows.
type Options struct {
	// Disk is served as DiskName; it is writable when it implements
	// disk.Writer and ReadOnly is false.
	Disk     disk.Reader
	DiskName string // default "disk.img"
	ReadOnly bool
	// Files are shown read-only beside the disk.
	Files []StaticFile
	// FsName appears as the mount's source in /proc/mounts.
	FsName string
	// AllowOther lets users other than the one mounting use the mount
	// (FUSE allow_other; a user other than root needs user_allow_other in
	// /etc/fuse.conf). They get what the files' modes allow them: the
	// kernel checks permissions (default_permissions), and the disk is
	// writable by its owner only.
	AllowOther bool
}

// Mount is a live FUSE mount.
type Mount struct {
	dir    string
	server *fuse.Server
}

// ErrStaleMount reports a dead FUSE mount left at the target directory.
var ErrStaleMount = errors.New("stale FUSE mount")

// New mounts opts at dir, which must be an existing empty directory.
func New(dir string, opts Options) (*Mount, error) {
	if err := checkMountPoint(dir); err != nil {
		return nil, err
	}
	if opts.DiskName == "" {
		opts.DiskName = "disk.img"
	}
	if opts.FsName == "" {
		opts.FsName = "kvmify"
	}
	root := &rootNode{opts: opts}
	// The files never change behind the kernel's back except through this
	// mount, so attributes can be cached for a while.
	timeout := time.Second
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:       opts.FsName,
			Name:         "kvmify",
			DirectMount:  true,
			MaxWrite:     maxRequest,
			MaxReadAhead: maxRequest,
			AllowOther:   opts.AllowOther,
			// The kernel enforces the modes and owners shown: without it a
			// FUSE file system that does not check every access itself
			// lets anyone who can reach it write the disk, whatever
			// disk.img's mode says.
			Options:       []string{"default_permissions"},
			DisableXAttrs: true,
		},
		// Files belong to whoever mounted them.
		UID:          uint32(os.Getuid()),
		GID:          uint32(os.Getgid()),
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return &Mount{dir: dir, server: server}, nil
}

// Dir is the mount point.
func (m *Mount) Dir() string { return m.dir }

// Wait blocks until the file system is unmounted.
func (m *Mount) Wait() { m.server.Wait() }

// Unmount detaches the file system; it fails while files are open.
func (m *Mount) Unmount() error { return m.server.Unmount() }

// CheckMountPoint checks dir as New would, without mounting, so a caller
// can refuse a bad mount point before creating anything else.
func CheckMountPoint(dir string) error { return checkMountPoint(dir) }

// checkMountPoint gives a useful message for the mistakes users make most: a
// missing directory, a non-empty one, and a stale mount of a process that
// died.
func checkMountPoint(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("%s: %w left by a process that died; detach it with 'fusermount3 -u %s' (or 'umount -l %s') and retry", dir, ErrStaleMount, dir, dir)
		}
		return fmt.Errorf("mount point: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("%s: %w left by a process that died; detach it with 'fusermount3 -u %s' (or 'umount -l %s') and retry", dir, ErrStaleMount, dir, dir)
		}
		return fmt.Errorf("mount point: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("mount point %s is not empty (is something already mounted there?)", dir)
	}
	return nil
}

type rootNode struct {
	fs.Inode
	opts Options
}

var _ = (fs.NodeOnAdder)((*rootNode)(nil))

func (r *rootNode) OnAdd(ctx context.Context) {
	d := &diskNode{disk: r.opts.Disk}
	if w, ok := r.opts.Disk.(disk.Writer); ok && !r.opts.ReadOnly {
		d.w = w
	}
	if f, ok := r.opts.Disk.(disk.Flusher); ok {
		d.flusher = f
	}
	r.AddChild(r.opts.DiskName, r.NewPersistentInode(ctx, d, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2}), false)
	for i, f := range r.opts.Files {
		node := &fs.MemRegularFile{Data: f.Data, Attr: fuse.Attr{Mode: 0o444}}
		r.AddChild(f.Name, r.NewPersistentInode(ctx, &readOnlyFile{node}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: uint64(3 + i)}), false)
	}
}

// readOnlyFile refuses writes and truncation of an in-memory file.
type readOnlyFile struct {
	*fs.MemRegularFile
}

var _ = (fs.NodeOpener)((*readOnlyFile)(nil))

func (f *readOnlyFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EACCES
	}
	return nil, fuse.FOPEN_KEEP_CACHE, fs.OK
}

func (f *readOnlyFile) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EACCES
}

func (f *readOnlyFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EACCES
}

// diskNode is the fixed-size disk file.
type diskNode struct {
	fs.Inode
	disk    disk.Reader
	w       disk.Writer  // nil when read-only
	flusher disk.Flusher // nil when the disk needs no flush
}

var (
	_ = (fs.NodeOpener)((*diskNode)(nil))
	_ = (fs.NodeReader)((*diskNode)(nil))
	_ = (fs.NodeWriter)((*diskNode)(nil))
	_ = (fs.NodeGetattrer)((*diskNode)(nil))
	_ = (fs.NodeSetattrer)((*diskNode)(nil))
	_ = (fs.NodeFsyncer)((*diskNode)(nil))
	_ = (fs.NodeFlusher)((*diskNode)(nil))
)

func (d *diskNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if d.w == nil && flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	if flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EPERM
	}
	return nil, fuse.FOPEN_DIRECT_IO, fs.OK
}

func (d *diskNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = 0o444
	if d.w != nil {
		out.Mode = 0o644
	}
	out.Size = uint64(d.disk.Size())
	out.Blocks = (uint64(d.allocatedBytes()) + 511) / 512
	out.Blksize = 4096
	return fs.OK
}

// Setattr accepts only what does not change the disk's size: QEMU and cp
// may "truncate" to the current size, or touch times.
func (d *diskNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && int64(sz) != d.disk.Size() {
		return syscall.EPERM
	}
	return d.Getattr(ctx, fh, out)
}

func (d *diskNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := d.disk.Size()
	if off >= size || off < 0 {
		return fuse.ReadResultData(nil), fs.OK
	}
	if rest := size - off; int64(len(dest)) > rest {
		dest = dest[:rest]
	}
	n, err := d.disk.ReadAt(dest, off)
	if err != nil && n < len(dest) {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), fs.OK
}

func (d *diskNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if d.w == nil {
		return 0, syscall.EROFS
	}
	size := d.disk.Size()
	if off < 0 || off >= size {
		return 0, syscall.ENOSPC
	}
	if rest := size - off; int64(len(data)) > rest {
		data = data[:rest] // a short write, as at the end of a block device
	}
	n, err := d.w.WriteAt(data, off)
	if err != nil {
		return uint32(n), fs.ToErrno(err)
	}
	return uint32(n), fs.OK
}

func (d *diskNode) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	if d.flusher == nil {
		return fs.OK
	}
	return fs.ToErrno(d.flusher.Flush())
}

// Flush runs at every close(2); making closes durable costs little and means
// a tool that writes and closes without fsync loses nothing on a crash.
func (d *diskNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return d.Fsync(ctx, fh, 0)
}
