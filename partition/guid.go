package partition

import "fmt"

// GUID is a GPT GUID in its on-disk byte order (first three fields little
// endian).
type GUID [16]byte

// GUIDBasicData is the GPT type of Windows basic data partitions (NTFS,
// FAT, exFAT).
var GUIDBasicData = mustGUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")

// String formats the GUID in the usual upper-case registry form.
func (g GUID) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le32(g[0:]), le16(g[4:]), le16(g[6:]), g[8:10], g[10:16])
}

// ParseGUID parses the textual form produced by String.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	var a uint32
	var b, c uint16
	var d [2]byte
	var e [6]byte
	n, err := fmt.Sscanf(s, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X",
		&a, &b, &c, &d[0], &d[1], &e[0], &e[1], &e[2], &e[3], &e[4], &e[5])
	if err != nil || n != 11 {
		return g, fmt.Errorf("partition: bad GUID %q", s)
	}
	g[0], g[1], g[2], g[3] = byte(a), byte(a>>8), byte(a>>16), byte(a>>24)
	g[4], g[5] = byte(b), byte(b>>8)
	g[6], g[7] = byte(c), byte(c>>8)
	copy(g[8:], d[:])
	copy(g[10:], e[:])
	return g, nil
}

func mustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}
