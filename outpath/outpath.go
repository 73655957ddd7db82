// Package outpath decides whether kvmify may write a file: never over a file
// it reads (compared by device and inode, so symlinks and hard links are
// caught too), never over an existing file unless forced, and always through
// a temporary name beside the target that is renamed into place on success.
package outpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrIsInput marks a refusal to write over a file kvmify reads.
var ErrIsInput = errors.New("output path is an input")

// InputError is the refusal to write What to Path because it is a file the
// command reads.
type InputError struct {
	What, Path string
	Input      string // how the input is named, e.g. "the source image"
	InputPath  string
}

func (e *InputError) Error() string {
	same := ""
	if e.InputPath != e.Path {
		same = fmt.Sprintf(" (the same file as %s)", e.InputPath)
	}
	return fmt.Sprintf("refusing to write %s to %s: it is %s%s, which kvmify only reads; choose another path (--force does not change this)",
		e.What, e.Path, e.Input, same)
}

// Unwrap makes errors.Is(err, ErrIsInput) true.
func (e *InputError) Unwrap() error { return ErrIsInput }

// ErrExists marks a refusal to replace an existing file without --force.
var ErrExists = errors.New("already exists")

type fileID struct{ dev, ino uint64 }

type input struct {
	id   fileID
	path string
	what string
}

// Guard holds the identities of every file a command reads.
type Guard struct {
	inputs []input
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// AddInput records path (following symlinks) as a file the command reads;
// what names it in messages ("the source image", "the overlay in use"). A
// path that does not exist reads nothing and is skipped.
func (g *Guard) AddInput(path, what string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	if id, ok := idOf(fi); ok {
		g.inputs = append(g.inputs, input{id: id, path: path, what: what})
	}
	return nil
}

// AddFile records an open file as an input.
func (g *Guard) AddFile(f *os.File, what string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, f.Name(), err)
	}
	if id, ok := idOf(fi); ok {
		g.inputs = append(g.inputs, input{id: id, path: f.Name(), what: what})
	}
	return nil
}

// Check refuses path as the destination of what ("the report", "OUT")
// when it is one of the inputs, whatever force says; when it exists and
// force is false; when it is a directory; or when its directory does not
// exist. It changes nothing.
func (g *Guard) Check(path, what string, force bool) error {
	if path == "" {
		return fmt.Errorf("%s: empty path", what)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if id, ok := idOf(fi); ok {
			for _, in := range g.inputs {
				if in.id == id {
					return &InputError{What: what, Path: path, Input: in.what, InputPath: in.path}
				}
			}
		}
		if fi.IsDir() {
			return fmt.Errorf("refusing to write %s to %s: it is a directory; name a file", what, path)
		}
		if !force {
			return fmt.Errorf("refusing to write %s to %s: it %w; choose another path, or --force to replace it", what, path, ErrExists)
		}
	case errors.Is(err, fs.ErrNotExist):
		if _, lerr := os.Lstat(path); lerr == nil && !force {
			// A dangling symlink: writing would replace the link.
			return fmt.Errorf("refusing to write %s to %s: it is a symlink to a missing file; choose another path, or --force to replace the link", what, path)
		}
		dir := filepath.Dir(path)
		di, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cannot write %s to %s: directory %s does not exist; create it or choose another path", what, path, dir)
		}
		if err != nil {
			return fmt.Errorf("cannot write %s to %s: directory %s: %w", what, path, dir, err)
		}
		if !di.IsDir() {
			return fmt.Errorf("cannot write %s to %s: %s is not a directory", what, path, dir)
		}
	default:
		return fmt.Errorf("cannot write %s to %s: %w", what, path, err)
	}
	return nil
}

// TempPrefix starts the name of every temporary file written beside a
// target, so a stale one is recognisable.
const TempPrefix = ".kvmify-tmp-"

// WriteFile writes data to path through a temporary file beside it, synced
// and then renamed into place; on any error the temporary file is removed
// and path is untouched. Without replace, a file that appeared at path
// meanwhile is not replaced (the rename is a link that fails if path
// exists). Callers Check the path first.
func WriteFile(path string, data []byte, perm fs.FileMode, replace bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return Publish(name, path, replace)
}

// Publish moves the finished file tmp to path: a rename when replace is
// set, otherwise a link that fails when path exists, followed by removing
// tmp.
func Publish(tmp, path string, replace bool) error {
	if replace {
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	} else {
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s appeared while it was being written; not replaced: %w", path, ErrExists)
			}
			return err
		}
		os.Remove(tmp)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
