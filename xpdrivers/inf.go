package xpdrivers

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf16"
)

// maxINF bounds the drvindex.inf read: XP SP3's is about 70 KiB.
const maxINF = 4 << 20

// inf is a parsed INF file: section names (lower case) to their lines, in
// order, each split at its first '=' into key and value (a line without
// '=' is a key alone, as drvindex.inf's file lists are).
type inf map[string][]infLine

type infLine struct{ key, value string }

// parseINF reads the INF syntax drvindex.inf uses: [Section] headers,
// key=value or bare lines, ';' comments outside double quotes. A UTF-16LE
// file (with its byte-order mark) is decoded first, as INF files may be.
func parseINF(b []byte) (inf, error) {
	if len(b) > maxINF {
		return nil, fmt.Errorf("INF of %d bytes, over %d", len(b), maxINF)
	}
	text := string(b)
	if bytes.HasPrefix(b, []byte{0xFF, 0xFE}) {
		u := make([]uint16, (len(b)-2)/2)
		for i := range u {
			u[i] = uint16(b[2+2*i]) | uint16(b[3+2*i])<<8
		}
		text = string(utf16.Decode(u))
	}
	text = strings.TrimPrefix(text, "\uFEFF")
	out := inf{}
	var sect string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n") {
		line = strings.TrimSpace(stripComment(line))
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("section header %q has no ']'", line)
			}
			sect = strings.ToLower(strings.TrimSpace(line[1:end]))
			if _, ok := out[sect]; !ok {
				out[sect] = nil
			}
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		out[sect] = append(out[sect], infLine{key: unquote(k), value: unquote(v)})
	}
	return out, nil
}

// value returns the value of key in section (both without regard to case).
func (f inf) value(section, key string) (string, bool) {
	for _, l := range f[strings.ToLower(section)] {
		if strings.EqualFold(l.key, key) {
			return l.value, true
		}
	}
	return "", false
}

// stripComment removes a ';' comment outside double quotes.
func stripComment(s string) string {
	quoted := false
	for i, r := range s {
		switch r {
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				return s[:i]
			}
		}
	}
	return s
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return s
}

// splitList splits a comma-separated INF value.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = unquote(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
