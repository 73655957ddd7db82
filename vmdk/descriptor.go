package vmdk

import (
	"fmt"
	"strconv"
	"strings"
)

// descriptor is a parsed text descriptor: its keys and its extents.
type descriptor struct {
	CreateType         string
	ParentCID          string
	ParentFileNameHint string
	Extents            []extentLine
}

// extentLine is one extent description: "RW 4192256 SPARSE "a-s001.vmdk"".
type extentLine struct {
	Access  string // RW, RDONLY, NOACCESS
	Sectors int64
	Type    string // FLAT, SPARSE, ZERO, VMFS, ...
	File    string
	Offset  int64 // in sectors, FLAT/VMFS only
	Line    int
}

// noParent is the parentCID of a disk without a parent.
const noParent = "ffffffff"

// parseDescriptor parses descriptor text; name is for errors, which carry
// the line number as their offset.
func parseDescriptor(text, name string) (*descriptor, error) {
	bad := func(line int, what string, v any) error {
		return &FormatError{File: name, Offset: int64(line), What: "descriptor line " + strconv.Itoa(line) + ": " + what, Value: v, Err: ErrCorrupt}
	}
	// An embedded descriptor is padded with NULs to its sector count.
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	d := &descriptor{ParentCID: noParent}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "RW", "RDONLY", "NOACCESS":
			e, err := parseExtentLine(line, n)
			if err != nil {
				return nil, bad(n, err.Error(), line)
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, bad(n, "neither key=value nor an extent", line)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch k {
		case "createType":
			d.CreateType = v
		case "parentCID":
			d.ParentCID = strings.ToLower(v)
		case "parentFileNameHint":
			d.ParentFileNameHint = v
		}
	}
	if len(d.Extents) == 0 {
		return nil, &FormatError{File: name, What: "descriptor lists no extent", Err: ErrCorrupt}
	}
	return d, nil
}

func parseExtentLine(line string, n int) (extentLine, error) {
	e := extentLine{Line: n}
	rest := line
	next := func() string {
		rest = strings.TrimLeft(rest, " \t")
		i := strings.IndexAny(rest, " \t")
		if i < 0 {
			i = len(rest)
		}
		w := rest[:i]
		rest = rest[i:]
		return w
	}
	e.Access = next()
	sectors, err := strconv.ParseInt(next(), 10, 64)
	if err != nil || sectors <= 0 || sectors > maxCapacity {
		return e, fmt.Errorf("extent size")
	}
	e.Sectors = sectors
	e.Type = next()
	rest = strings.TrimLeft(rest, " \t")
	if e.Type == "ZERO" {
		if rest != "" {
			return e, fmt.Errorf("ZERO extent with a file")
		}
		return e, nil
	}
	if !strings.HasPrefix(rest, `"`) {
		return e, fmt.Errorf("extent file name not quoted")
	}
	end := strings.IndexByte(rest[1:], '"')
	if end < 0 {
		return e, fmt.Errorf("extent file name not closed")
	}
	e.File = rest[1 : 1+end]
	if e.File == "" {
		return e, fmt.Errorf("empty extent file name")
	}
	rest = strings.TrimSpace(rest[2+end:])
	if rest != "" {
		off, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || off < 0 || off > maxCapacity {
			return e, fmt.Errorf("extent offset")
		}
		e.Offset = off
	}
	return e, nil
}
