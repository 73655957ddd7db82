package cab

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

// Extract calls fn with the content of each member named in names (matched
// as Lookup matches), streaming each folder that holds one of them once, in
// order. r is valid only until fn returns; fn may leave it unread. A name the cabinet lacks is an error matching
// fs.ErrNotExist and a member spanning cabinets one matching ErrSplit, both
// reported before any member is decoded.
func (c *Cabinet) Extract(names []string, fn func(f *File, r io.Reader) error) error {
	var want []*File
	seen := map[*File]bool{}
	var missing []string
	for _, n := range names {
		f, ok := c.Lookup(n)
		if !ok {
			missing = append(missing, n)
			continue
		}
		if !seen[f] {
			seen[f] = true
			want = append(want, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cab: %s not in the cabinet: %w", strings.Join(missing, ", "), fs.ErrNotExist)
	}
	for _, f := range want {
		if _, whole := f.folder(len(c.Folders)); !whole {
			return c.splitErr(f)
		}
	}
	// Members in folder order, then by offset, so each folder streams once.
	sort.SliceStable(want, func(i, j int) bool {
		if want[i].FolderID != want[j].FolderID {
			return want[i].FolderID < want[j].FolderID
		}
		return want[i].Offset < want[j].Offset
	})
	var s *folderStream
	for _, f := range want {
		fi := int(f.FolderID)
		// A member that starts before the stream's position (members may
		// overlap) restarts the folder: rare, and memory stays bounded.
		if s == nil || s.f.Index != fi || s.pos > int64(f.Offset) {
			var err error
			if s, err = c.openFolder(fi); err != nil {
				return err
			}
		}
		if err := s.skip(int64(f.Offset) - s.pos); err != nil {
			return c.memberErr(f, s, err)
		}
		mr := &memberReader{s: s, left: int64(f.Size)}
		err := fn(f, mr)
		if mr.err != nil {
			// The folder failed under fn; report that, with the member.
			return c.memberErr(f, s, mr.err)
		}
		if err != nil {
			return err
		}
		// What fn left unread is skipped only if a later member of this
		// folder needs the stream past it (the skip above does that).
	}
	return nil
}

// ReadFile returns the content of the member name, refusing (with
// ErrTooLarge) one over limit bytes before decoding anything.
func (c *Cabinet) ReadFile(name string, limit int64) ([]byte, error) {
	f, ok := c.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("cab: %s not in the cabinet: %w", name, fs.ErrNotExist)
	}
	if int64(f.Size) > limit {
		return nil, fmt.Errorf("cab: %s is %d bytes, over the %d-byte limit: %w", f.Name, f.Size, limit, ErrTooLarge)
	}
	var data []byte
	err := c.Extract([]string{name}, func(_ *File, r io.Reader) error {
		data = make([]byte, f.Size)
		_, err := io.ReadFull(r, data)
		return err
	})
	return data, err
}

func (c *Cabinet) splitErr(f *File) error {
	other := c.Header.NextCabinet
	dir := "into the next cabinet"
	if f.FolderID == ifoldContinuedFromPrev {
		other, dir = c.Header.PrevCabinet, "from the previous cabinet"
	}
	return formatErr(f.EntryAt+8, "CFFILE iFolder", ErrSplit, fmt.Sprintf("0x%04x", f.FolderID),
		"member %s continues %s %q, which cab does not read", f.Name, dir, other)
}

// memberErr names the member an error of its folder stream hit.
func (c *Cabinet) memberErr(f *File, s *folderStream, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErr(f.EntryAt, "CFFILE", ErrFormat, nil,
			"member %s (%d bytes at folder offset %d) ends past folder %d's data, which ends at %d",
			f.Name, f.Size, f.Offset, s.f.Index, s.pos)
	}
	var fe *FormatError
	if errors.As(err, &fe) {
		named := *fe
		named.Msg = "member " + f.Name + ": " + fe.Msg
		return &named
	}
	return fmt.Errorf("cab: member %s: %w", f.Name, err)
}

// memberReader reads one member's bytes from a folder stream.
type memberReader struct {
	s    *folderStream
	left int64
	err  error
}

func (m *memberReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if m.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.s.Read(p)
	m.left -= int64(n)
	if err != nil {
		// The folder's end before the member's is corruption, not EOF.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.ErrUnexpectedEOF
		}
		m.err = err
		return n, err
	}
	return n, nil
}
