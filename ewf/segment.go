package ewf

import (
	"fmt"
	"io"
	"strings"
)

// segmentInfo is what one segment file holds.
type segmentInfo struct {
	Number   int
	Sections []section
	Media    *Media // from a volume, disk or data section
	MediaAt  int64
	Tables   []*table
	MD5      []byte
	SHA1     []byte
	Done     bool    // ends with "done": the last segment of the set
	Problems []error // faults that a redundant copy made harmless
}

// parseSegment reads a segment file's header and section chain and the
// sections kvmify needs: volume, tables, hashes. A table whose checksum
// fails is replaced by its table2 copy and the fault kept in Problems; a
// table and table2 that both check out but differ are an error.
func parseSegment(r io.ReaderAt, path string, size int64) (*segmentInfo, error) {
	num, err := parseFileHeader(r, path, size)
	if err != nil {
		return nil, err
	}
	secs, err := parseSections(r, path, size)
	if err != nil {
		return nil, err
	}
	seg := &segmentInfo{Number: num, Sections: secs}
	var pending *table // the last table, until its table2 is seen
	var pendingErr error
	flush := func() error {
		if pendingErr != nil {
			return pendingErr
		}
		if pending != nil {
			seg.Tables = append(seg.Tables, pending)
		}
		pending, pendingErr = nil, nil
		return nil
	}
	for _, s := range secs {
		switch s.Type {
		case "volume", "disk", "data":
			m, err := parseVolume(r, path, size, s)
			if err != nil {
				return nil, err
			}
			if seg.Media == nil {
				seg.Media, seg.MediaAt = &m, s.Start
			} else if *seg.Media != m {
				return nil, &FormatError{Path: path, Offset: s.Start, What: s.Type + " section",
					Msg: fmt.Sprintf("media %+v differs from the %+v of byte %d", m, *seg.Media, seg.MediaAt), Err: ErrFormat}
			}
		case "table":
			if err := flush(); err != nil {
				return nil, err
			}
			pending, pendingErr = parseTable(r, path, size, s)
			if pendingErr != nil {
				pending = nil
			}
		case "table2":
			t2, err2 := parseTable(r, path, size, s)
			switch {
			case pending == nil && pendingErr == nil:
				// A table2 with no table before it stands alone.
				if err2 != nil {
					return nil, err2
				}
				pending = t2
			case pendingErr != nil && err2 != nil:
				return nil, pendingErr
			case pendingErr != nil:
				seg.Problems = append(seg.Problems, fmt.Errorf("%w (its table2 copy at byte %d is used)", pendingErr, s.Start))
				pending, pendingErr = t2, nil
			case err2 != nil:
				seg.Problems = append(seg.Problems, fmt.Errorf("%w (the table before it is used)", err2))
			case !pending.equal(t2):
				return nil, &FormatError{Path: path, Offset: s.Start, What: "table2 section",
					Msg: fmt.Sprintf("lists other chunks than the table at byte %d", pending.Offset), Err: ErrFormat}
			}
			if err := flush(); err != nil {
				return nil, err
			}
		case "hash":
			md5, err := parseHash(r, path, size, s)
			if err != nil {
				return nil, err
			}
			if seg.MD5 == nil {
				seg.MD5 = md5
			}
		case "digest":
			md5, sha1, err := parseDigest(r, path, size, s)
			if err != nil {
				return nil, err
			}
			if md5 != nil {
				seg.MD5 = md5
			}
			seg.SHA1 = sha1
		case "done":
			seg.Done = true
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for _, t := range seg.Tables {
		if err := t.setDataEnd(path, secs); err != nil {
			return nil, err
		}
	}
	return seg, nil
}

// setDataEnd finds where the table's last chunk ends: at the end of the
// section (sectors, or table in EnCase 1) that holds it.
func (t *table) setDataEnd(path string, secs []section) error {
	last := t.Base + int64(t.Entries[len(t.Entries)-1]&tableEntryOffsetMask)
	for _, s := range secs {
		if last >= s.dataStart() && last < s.End {
			t.DataEnd = s.End
			return nil
		}
	}
	return &FormatError{Path: path, Offset: t.Offset, What: "table section",
		Msg: fmt.Sprintf("its last chunk at byte %d lies in no section's data", last), Err: ErrFormat}
}

// segmentName is the path of segment n (1-based) of the set whose first
// segment is first: .E01 … .E99, then .EAA … .EZZ, .FAA …, keeping the
// first's letter and case. It returns "" past the last possible name.
func segmentName(first string, n int) string {
	dot := strings.LastIndexByte(first, '.')
	if dot < 0 || len(first)-dot != 4 {
		return ""
	}
	ext := first[dot+1:]
	lead := ext[0]
	lower := lead >= 'a' && lead <= 'z'
	if n < 1 {
		return ""
	}
	if n < 100 {
		return fmt.Sprintf("%s%c%02d", first[:dot+1], lead, n)
	}
	i := n - 100
	l := int(lead|0x20-'a') + i/(26*26) // the leading letter counts on past E
	if l >= 26 {
		return ""
	}
	a := byte('A')
	if lower {
		a = 'a'
	}
	return fmt.Sprintf("%s%c%c%c", first[:dot+1], a+byte(l), a+byte(i/26%26), a+byte(i%26))
}
