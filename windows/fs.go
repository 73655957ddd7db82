package windows

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvmify/kvmify/disk"
)

// FS is the read-only file access Inspect needs from one volume. Paths are
// relative to the volume root, separated by `\`, and matched without regard
// to case, as on NTFS.
type FS interface {
	// Open returns a file's content as a fixed-size reader; a missing file
	// is an error matching fs.ErrNotExist.
	Open(path string) (disk.Reader, error)
}

// maxReadFile bounds what readFile loads into memory: hives are the largest
// files kvmify reads whole, and Windows caps a hive at 2 GiB but real SYSTEM
// hives stay far below this.
const maxReadFile = 512 << 20

// readFile reads a whole file, refusing one larger than maxReadFile.
func readFile(fsys FS, path string) ([]byte, error) {
	r, err := fsys.Open(path)
	if err != nil {
		return nil, err
	}
	if r.Size() > maxReadFile {
		return nil, fmt.Errorf("windows: %s is %d bytes, more than the %d kvmify reads", path, r.Size(), maxReadFile)
	}
	b := make([]byte, r.Size())
	if _, err := r.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("windows: reading %s: %w", path, err)
	}
	return b, nil
}

// exists reports whether a file exists.
func exists(fsys FS, path string) (bool, error) {
	_, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// DirFS is an FS over a host directory, such as a Windows volume mounted
// with ntfs-3g; it resolves each path component without regard to case.
type DirFS string

// Open implements FS.
func (d DirFS) Open(path string) (disk.Reader, error) {
	p, err := d.resolve(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("windows: %s is not a regular file: %w", path, fs.ErrNotExist)
	}
	return dirFile{path: p, size: fi.Size()}, nil
}

// resolve maps a `\`-separated, case-insensitive path to a host path.
func (d DirFS) resolve(path string) (string, error) {
	cur := string(d)
	for _, part := range strings.Split(strings.ReplaceAll(path, "/", `\`), `\`) {
		if part == "" || part == "." {
			continue
		}
		if part == ".." {
			return "", fmt.Errorf("windows: %q leaves the volume: %w", path, fs.ErrNotExist)
		}
		next := filepath.Join(cur, part)
		if _, err := os.Lstat(next); err != nil {
			ents, rerr := os.ReadDir(cur)
			if rerr != nil {
				return "", rerr
			}
			found := false
			for _, e := range ents {
				if strings.EqualFold(e.Name(), part) {
					next, found = filepath.Join(cur, e.Name()), true
					break
				}
			}
			if !found {
				return "", fmt.Errorf("windows: %s: %w", path, fs.ErrNotExist)
			}
		}
		cur = next
	}
	return cur, nil
}

// dirFile reads a host file, opening it for each read so no handle is held.
type dirFile struct {
	path string
	size int64
}

func (f dirFile) Size() int64 { return f.size }

func (f dirFile) ReadAt(p []byte, off int64) (int, error) {
	h, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	return h.ReadAt(p, off)
}

// errNotExist is fs.ErrNotExist, named for errors.Is in this package.
var errNotExist = fs.ErrNotExist
