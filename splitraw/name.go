package splitraw

import (
	"os"
	"path/filepath"
	"strings"
)

// minSuffixWidth is the shortest segment suffix taken as a split set's
// numbering: dd | split and FTK Imager write at least two characters
// (".aa", ".001"), and a one-character extension is too common in ordinary
// names to mean a set.
const minSuffixWidth = 2

// pattern is how the segments of one split set are named: base, a dot, and
// a fixed-width suffix counting up in decimal (".000" or ".001" first) or
// in letters (".aa" first, as split(1) names them).
type pattern struct {
	base    string // path up to and including the dot
	numeric bool
	upper   bool // letter suffixes in capitals (".AA")
	width   int
	first   int // index of the first segment: 0 or 1 for decimal, 0 for letters
}

// parseName reports the set pattern path's name follows and the index of
// path in it, or ok false when the name follows none.
func parseName(path string) (p pattern, idx int, ok bool) {
	dot := strings.LastIndexByte(path, '.')
	if dot < 0 || strings.ContainsRune(path[dot:], filepath.Separator) {
		return pattern{}, 0, false
	}
	suf := path[dot+1:]
	if len(suf) < minSuffixWidth || len(suf) > 9 {
		return pattern{}, 0, false
	}
	p = pattern{base: path[:dot+1], width: len(suf)}
	switch {
	case allIn(suf, '0', '9'):
		p.numeric = true
		for _, c := range suf {
			idx = idx*10 + int(c-'0')
		}
		// A set numbered from 0 has a segment 0 beside any later one;
		// otherwise it starts at 1, as FTK Imager's ".001" does.
		p.first = 1
		if idx == 0 || exists(p.name(0)) {
			p.first = 0
		}
	case allIn(suf, 'a', 'z'):
	case allIn(suf, 'A', 'Z'):
		p.upper = true
	default:
		return pattern{}, 0, false
	}
	if !p.numeric {
		for _, c := range strings.ToLower(suf) {
			idx = idx*26 + int(c-'a')
		}
	}
	return p, idx, true
}

func allIn(s string, lo, hi byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < lo || s[i] > hi {
			return false
		}
	}
	return true
}

// name is the path of segment idx, or "" when idx does not fit the width.
func (p pattern) name(idx int) string {
	if idx < 0 {
		return ""
	}
	b := make([]byte, p.width)
	radix, zero := 10, byte('0')
	if !p.numeric {
		radix, zero = 26, 'a'
		if p.upper {
			zero = 'A'
		}
	}
	for i := p.width - 1; i >= 0; i-- {
		b[i] = zero + byte(idx%radix)
		idx /= radix
	}
	if idx != 0 {
		return ""
	}
	return p.base + string(b)
}

// lastPresent is the highest index of a file in path's directory that
// follows the pattern, or -1; it finds segments beyond a gap.
func (p pattern) lastPresent() int {
	dir := filepath.Dir(p.base)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	last := -1
	for _, e := range ents {
		full := filepath.Join(dir, e.Name())
		q, idx, ok := parseName(full)
		if ok && q.base == p.base && q.numeric == p.numeric && q.upper == p.upper && q.width == p.width && idx > last {
			last = idx
		}
	}
	return last
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}
