package ntfs

import (
	"strings"
)

const maxPathComponents = 1024

// DirEntry is one name in a directory listing.
type DirEntry struct {
	Name      string
	Record    uint64
	Namespace uint8
	// IsDir and the index key's sizes come from the directory index;
	// they may lag the file's own record (Windows updates them lazily).
	IsDir     bool
	IndexSize int64
	Entry     IndexEntry
}

// SplitPath splits a path with / or \ separators, and an optional
// ":stream" suffix on the last component, into components and a stream name.
func SplitPath(path string) (parts []string, stream string) {
	path = strings.ReplaceAll(path, `\`, "/")
	for _, p := range strings.Split(path, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	if n := len(parts); n > 0 {
		if i := strings.IndexByte(parts[n-1], ':'); i >= 0 {
			parts[n-1], stream = parts[n-1][:i], parts[n-1][i+1:]
			stream = strings.TrimSuffix(stream, ":$DATA")
			if parts[n-1] == "" {
				parts = parts[:n-1]
			}
		}
	}
	return parts, stream
}

// Lookup resolves a path (case-insensitive, / or \ separated, from the
// root directory) to its file. A ":stream" suffix is returned separately.
func (v *Volume) Lookup(path string) (*File, string, error) {
	parts, stream := SplitPath(path)
	if len(parts) > maxPathComponents {
		return nil, "", formatErr(0, "path", ErrNotFound, len(parts), "path too deep")
	}
	f, err := v.OpenRecord(RecordRoot)
	if err != nil {
		return nil, "", err
	}
	for i, name := range parts {
		if !f.IsDirectory() {
			return nil, "", &PathError{Path: strings.Join(parts[:i], "/"), Err: ErrNotDirectory}
		}
		ix, err := v.openIndex(f)
		if err != nil {
			return nil, "", err
		}
		e, err := ix.lookup(name)
		if err == ErrNotFound {
			return nil, "", &PathError{Path: strings.Join(parts[:i+1], "/"), Err: ErrNotFound}
		}
		if err != nil {
			return nil, "", err
		}
		if f, err = v.OpenRecord(e.Record); err != nil {
			return nil, "", err
		}
	}
	return f, stream, nil
}

// OpenStream resolves path (optionally "file:stream") and returns the
// requested $DATA stream.
func (v *Volume) OpenStream(path string) (*Stream, error) {
	f, stream, err := v.Lookup(path)
	if err != nil {
		return nil, err
	}
	if f.IsDirectory() && stream == "" {
		return nil, &PathError{Path: path, Err: ErrIsDirectory}
	}
	return f.Stream(stream)
}

// ReadDir lists a directory in index order, leaving out DOS-only short
// names (which duplicate a long name).
func (v *Volume) ReadDir(dir *File) ([]DirEntry, error) {
	ix, err := v.openIndex(dir)
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	err = ix.walk(func(e *IndexEntry) {
		if e.Key.Namespace == NamespaceDOS {
			return
		}
		out = append(out, DirEntry{
			Name: e.Key.Name, Record: e.Record, Namespace: e.Key.Namespace,
			IsDir: e.Key.Attributes&FileAttrDirectory != 0, IndexSize: e.Key.DataSize, Entry: *e,
		})
	})
	return out, err
}

// IndexEntries lists every $I30 entry of a directory (including DOS
// names) with its on-disk location, for planners.
func (v *Volume) IndexEntries(dir *File) ([]IndexEntry, error) {
	ix, err := v.openIndex(dir)
	if err != nil {
		return nil, err
	}
	var out []IndexEntry
	err = ix.walk(func(e *IndexEntry) { out = append(out, *e) })
	return out, err
}

// IndexNode reads the INDX block at vcn of a directory's $I30 allocation,
// with its raw fixed-up bytes and disk extents.
func (v *Volume) IndexNode(dir *File, vcn int64) (*IndexNode, error) {
	ix, err := v.openIndex(dir)
	if err != nil {
		return nil, err
	}
	return ix.readNode(vcn)
}

// ErrIsDirectory is returned when file data is asked of a directory.
var ErrIsDirectory = errorString("is a directory")

type errorString string

func (e errorString) Error() string { return string(e) }

// PathError records which path a lookup failed on.
type PathError struct {
	Path string
	Err  error
}

func (e *PathError) Error() string { return "ntfs: " + e.Path + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }
