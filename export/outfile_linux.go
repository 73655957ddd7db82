package export

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// outFile is an export being written. It has no name under the target
// until publish: on file systems that support O_TMPFILE it has no name at
// all, so a run killed half-way leaves nothing behind; elsewhere it is a
// hidden temporary file beside the target, removed on failure.
type outFile struct {
	*os.File
	target string
	tmp    string // the temporary name, or "" for an O_TMPFILE file
}

// createOut starts an export to target, refusing a target that exists.
func createOut(target string) (*outFile, error) {
	if _, err := os.Lstat(target); err == nil {
		return nil, fmt.Errorf("%s already exists; kvmify does not overwrite files", target)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	dir := filepath.Dir(target)
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		if err == nil {
			return &outFile{File: os.NewFile(uintptr(fd), target), target: target}, nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("creating %s: %w", target, err)
		}
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(target)+".kvmify-*.tmp")
	if err != nil {
		return nil, err
	}
	return &outFile{File: f, target: target, tmp: f.Name()}, nil
}

// publish makes the finished file appear under the target's name, in one
// step and without replacing a file that appeared meanwhile, and makes the
// name durable.
func (o *outFile) publish() error {
	if err := o.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", o.target, err)
	}
	var err error
	if o.tmp == "" {
		// linkat through /proc gives the unnamed file its name; it fails
		// with EEXIST rather than replacing.
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(o.Fd())), unix.AT_FDCWD, o.target, unix.AT_SYMLINK_FOLLOW)
	} else {
		err = unix.Renameat2(unix.AT_FDCWD, o.tmp, unix.AT_FDCWD, o.target, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// A file system without RENAME_NOREPLACE: link, which
			// refuses to replace, then drop the temporary name.
			if err = os.Link(o.tmp, o.target); err == nil {
				os.Remove(o.tmp)
			}
		}
	}
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s appeared while exporting; kvmify does not overwrite files", o.target)
		}
		return fmt.Errorf("naming %s: %w", o.target, err)
	}
	o.tmp = ""
	if d, err := os.Open(filepath.Dir(o.target)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// finish closes the file, publishing it if err is nil, and otherwise
// removing any temporary name; it returns the first error.
func (o *outFile) finish(err error) error {
	if err == nil {
		err = o.publish()
	}
	if cerr := o.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing %s: %w", o.target, cerr)
	}
	if o.tmp != "" {
		os.Remove(o.tmp)
	}
	return err
}
