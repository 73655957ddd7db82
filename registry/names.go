package registry

import (
	"encoding/binary"
	"unicode"
	"unicode/utf16"
)

// decodeName decodes a key or value name: Latin-1 bytes when comp is set
// (each byte is one code point), UTF-16LE otherwise.
func decodeName(b []byte, comp bool) string {
	if comp {
		ascii := true
		for _, c := range b {
			if c >= 0x80 {
				ascii = false
				break
			}
		}
		if ascii {
			return string(b)
		}
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r)
	}
	return decodeUTF16(b)
}

// decodeUTF16 decodes UTF-16LE; an odd trailing byte is ignored.
func decodeUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// nameUnits returns a stored name as the UTF-16 code units Windows compares
// and hashes.
func nameUnits(b []byte, comp bool) []uint16 {
	if comp {
		u := make([]uint16, len(b))
		for i, c := range b {
			u[i] = uint16(c)
		}
		return u
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return u
}

// upcaseUnit upcases one UTF-16 unit the way the registry compares names:
// unit by unit, never across surrogate pairs.
func upcaseUnit(c uint16) uint16 {
	switch {
	case c < 'a':
		return c
	case c <= 'z':
		return c - ('a' - 'A')
	case c < 0x80:
		return c
	case c >= 0xD800 && c <= 0xDFFF:
		return c
	}
	u := unicode.ToUpper(rune(c))
	if u > 0xFFFF {
		return c
	}
	return uint16(u)
}

func upcaseUnits(u []uint16) []uint16 {
	for i, c := range u {
		u[i] = upcaseUnit(c)
	}
	return u
}

// compareUnits orders two upcased names as Windows sorts subkey lists.
func compareUnits(a, b []uint16) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// lhHash is the hash stored in lh lists: hash*37 + upcased unit over the
// whole name.
func lhHash(units []uint16) uint32 {
	var h uint32
	for _, u := range units {
		h = h*lhHashMultiplier + uint32(upcaseUnit(u))
	}
	return h
}

const (
	lhHashMultiplier = 37
	lfHintChars      = 4
)

// lfHint is the name hint stored in lf lists: the first four characters of
// the name, one byte each, zero-padded. A character that does not fit in a
// byte cannot be hinted, and then the whole hint is zero: the regf
// specification says the characters are converted "if possible" and
// otherwise the hint starts with a null byte, and every lf element of the
// yarp test hives whose name has a character above U+00FF among its first
// four (11 names: Cyrillic, U+0178, U+FFFD, a surrogate pair) holds
// 0x00000000. No hive we could read has such a character only past the
// fourth, so the rule looks at the first four alone, as the hint does.
func lfHint(units []uint16) uint32 {
	var b [lfHintChars]byte
	for i := 0; i < lfHintChars && i < len(units); i++ {
		if units[i] > 0xff {
			return 0
		}
		b[i] = byte(units[i])
	}
	return binary.LittleEndian.Uint32(b[:])
}

func utf16Bytes(u []uint16) []byte {
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}
