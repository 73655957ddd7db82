package fstype

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func sector(oem string) []byte {
	b := make([]byte, SectorSize)
	copy(b[oemIDOffset:], oem)
	return b
}

func TestOfBootSector(t *testing.T) {
	fat32 := make([]byte, SectorSize)
	copy(fat32[fat32TypeOffset:], "FAT32   ")
	fat32[510], fat32[511] = 0x55, 0xaa
	fatNoSig := append([]byte(nil), fat32...)
	fatNoSig[510] = 0
	for _, c := range []struct {
		name string
		b    []byte
		want Kind
	}{
		{"ntfs", sector("NTFS    "), NTFS},
		{"bitlocker", sector("-FVE-FS-"), BitLocker},
		{"exfat", sector("EXFAT   "), ExFAT},
		{"fat32", fat32, FAT},
		{"fat without signature", fatNoSig, Unknown},
		{"zeros", make([]byte, SectorSize), Unknown},
		{"short", []byte("xxxNTFS    "), Unknown},
	} {
		if got := OfBootSector(c.b); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDetectShortRead(t *testing.T) {
	r := bytes.NewReader(sector("-FVE-FS-"))
	if k, err := Detect(r, 0); err != nil || k != BitLocker {
		t.Fatalf("Detect = %v, %v", k, err)
	}
	if _, err := Detect(r, 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated sector: got %v", err)
	}
}

func FuzzOfBootSector(f *testing.F) {
	f.Add(sector("NTFS    "))
	f.Add(sector("-FVE-FS-"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k := OfBootSector(b)
		if k < Unknown || k > FAT {
			t.Fatalf("kind %d", k)
		}
	})
}
