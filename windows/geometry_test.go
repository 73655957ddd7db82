package windows

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

// geometryProbe is MBR boot code (real mode, at 0x7C00) that asks the
// BIOS for the first hard disk's geometry (INT 13h AH=08h, DL=80h) and
// prints "GEOM " and four hex bytes on COM1 — DH (max head), CL (max sector
// in bits 0–5, cylinder bits 8–9 in 6–7), CH (cylinder bits 0–7) and the
// low flags byte (bit 0 = CF, set on error) — then powers the machine off
// as scripts/mkdisk.sh's marker code does. Hand-assembled:
//
//	00 cli; xor ax,ax; mov ds,ax; mov es,ax; mov ss,ax; mov sp,0x7C00; sti
//	0D mov ah,8; mov dl,0x80; xor di,di; int 0x13
//	15 mov [0x7E00],dh; mov [0x7E01],cl; mov [0x7E02],ch; lahf; mov [0x7E03],ah
//	26 mov dx,0x3F8; mov si,msg; call puts
//	2F mov si,0x7E00; mov cx,4
//	35 l: lodsb; call hexbyte; loop l
//	3B mov si,crlf; call puts
//	41 mov dx,0x604; mov ax,0x2000; out dx,ax; h: hlt; jmp h
//	4B puts: lodsb; test al,al; jz r; out dx,al; jmp puts; r: ret
//	54 hexbyte: mov ah,al; shr al,4; call nib; mov al,ah; and al,0x0F; call nib; ret
//	64 nib: add al,'0'; cmp al,'9'; jbe o; add al,7; o: out dx,al; ret
//	6E msg "GEOM \0"; 74 crlf "\r\n\0"
var geometryProbe = []byte{
	0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0, 0xBC, 0x00, 0x7C, 0xFB,
	0xB4, 0x08, 0xB2, 0x80, 0x31, 0xFF, 0xCD, 0x13,
	0x88, 0x36, 0x00, 0x7E, 0x88, 0x0E, 0x01, 0x7E, 0x88, 0x2E, 0x02, 0x7E, 0x9F, 0x88, 0x26, 0x03, 0x7E,
	0xBA, 0xF8, 0x03, 0xBE, 0x6E, 0x7C, 0xE8, 0x1C, 0x00,
	0xBE, 0x00, 0x7E, 0xB9, 0x04, 0x00,
	0xAC, 0xE8, 0x1B, 0x00, 0xE2, 0xFA,
	0xBE, 0x74, 0x7C, 0xE8, 0x0A, 0x00,
	0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, 0xF4, 0xEB, 0xFD,
	0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, 0xC3,
	0x88, 0xC4, 0xC0, 0xE8, 0x04, 0xE8, 0x08, 0x00, 0x88, 0xE0, 0x24, 0x0F, 0xE8, 0x01, 0x00, 0xC3,
	0x04, 0x30, 0x3C, 0x39, 0x76, 0x02, 0x04, 0x07, 0xEE, 0xC3,
	'G', 'E', 'O', 'M', ' ', 0, '\r', '\n', 0,
}

// probePartStart is where the probe disks' one partition starts (LBA 2048).
const probePartStart = 2048 * sectorSize

// probeDisk writes a sparse disk of size bytes: the probe as MBR code, one
// NTFS-typed partition from LBA 2048 whose end CHS says endHead/endSector
// (endHead 0: no partition entry), and at its start a boot sector with the
// NTFS OEM ID and the BPB geometry 255 heads / 63 sectors.
func probeDisk(t *testing.T, size int64, endHead, endSector byte) string {
	t.Helper()
	mbr := make([]byte, sectorSize)
	copy(mbr, geometryProbe)
	if endHead != 0 {
		e := mbr[mbrPartTable:]
		e[4] = 0x07 // NTFS
		e[mbrEndHead] = endHead
		e[mbrEndSector] = endSector | 0xC0
		e[7] = 0xFF
		binary.LittleEndian.PutUint32(e[8:], probePartStart/sectorSize)
		binary.LittleEndian.PutUint32(e[mbrNumSectors:], uint32(size/sectorSize-probePartStart/sectorSize))
	}
	mbr[mbrSignatureOffset], mbr[mbrSignatureOffset+1] = 0x55, 0xAA
	bs := make([]byte, sectorSize)
	copy(bs[3:], "NTFS    ") // the OEM ID fstype recognises
	binary.LittleEndian.PutUint16(bs[bpbSectorsPerTrack:], 63)
	binary.LittleEndian.PutUint16(bs[bpbHeads:], 255)
	path := filepath.Join(t.TempDir(), "probe.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bs, probePartStart); err != nil {
		t.Fatal(err)
	}
	return path
}

var probeLine = regexp.MustCompile(`GEOM ([0-9A-F]{2})([0-9A-F]{2})([0-9A-F]{2})([0-9A-F]{2})`)

// bootProbe boots the disk on QEMU's pc machine as kvmify's launch profile
// attaches it (ide-hd on ide.0, no geometry properties) and returns the
// geometry INT 13h AH=08h reported.
func bootProbe(t *testing.T, img string) Geometry {
	t.Helper()
	qemu := testutil.RequireTool(t, "qemu-system-x86_64")
	serial := filepath.Join(t.TempDir(), "serial.txt")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "pc,accel=kvm:tcg", "-m", "32", "-nodefaults",
		"-display", "none", "-serial", "file:"+serial, "-no-reboot",
		"-drive", "if=none,id=disk0,format=raw,snapshot=on,file="+img,
		"-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	b, err := os.ReadFile(serial)
	if err != nil {
		t.Fatal(err)
	}
	m := probeLine.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no GEOM line on the serial console: %q", b)
	}
	var v [4]uint32
	for i := range v {
		n, _ := strconv.ParseUint(m[i+1], 16, 8)
		v[i] = uint32(n)
	}
	if v[3]&1 != 0 {
		t.Fatalf("INT 13h AH=08h failed (CF set): %q", b)
	}
	// AH=08h returns maximum indices; SeaBIOS also keeps the last
	// cylinder back, so its count is the logical geometry's minus one.
	return Geometry{Cylinders: (v[1]&0xC0)<<2 | v[2] + 2, Heads: v[0] + 1, SectorsPerTrack: v[1] & 0x3F}
}

// TestGeometryProbeUnderQEMU boots the probe on disks of several sizes and
// partition tables and checks that FirmwareGeometry predicts what SeaBIOS
// reports, and that the boot-sector fix kvmify plans leaves the NTFS BPB
// holding exactly the heads and sectors the probe saw.
func TestGeometryProbeUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU five times")
	}
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		size             int64
		endHead, endSect byte
		heads, why       string
	}{
		{32 * mib, 0, 0, "16", "no partition: 65/16/63 fits CHS, no translation"},
		{2 * gib, 254, 63, "128", "255-head table: LARGE doubles heads to 128"},
		{10 * gib, 254, 63, "255", "over 8.4 GB: LBA gives 255"},
		{500 * mib, 14, 63, "15", "15-head table is taken as physical, no translation"},
		{4 * gib, 63, 32, "255", "64/32 table: size guess, LBA"},
	} {
		t.Run(fmt.Sprintf("%dMiB-h%d-s%d", tc.size/mib, tc.endHead, tc.endSect), func(t *testing.T) {
			img := probeDisk(t, tc.size, tc.endHead, tc.endSect)
			got := bootProbe(t, img)
			src, err := disk.OpenSource(img)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			fix, err := PlanGeometryFix(src, probePartStart)
			if err != nil {
				t.Fatal(err)
			}
			if fix.Firmware != got || strconv.Itoa(int(got.Heads)) != tc.heads {
				t.Fatalf("SeaBIOS reports %s, model %s, want %s heads (%s)", got, fix.Firmware, tc.heads, tc.why)
			}
			bpb := map[int64]uint16{bpbSectorsPerTrack: fix.OldSectors, bpbHeads: fix.OldHeads}
			for _, w := range fix.Writes {
				bpb[w.Offset-probePartStart] = binary.LittleEndian.Uint16(w.Data)
			}
			if uint32(bpb[bpbHeads]) != got.Heads || uint32(bpb[bpbSectorsPerTrack]) != got.SectorsPerTrack {
				t.Errorf("after the planned fix the BPB says %d heads %d sectors; the BIOS %s", bpb[bpbHeads], bpb[bpbSectorsPerTrack], got)
			}
			if (got.Heads == 255) != (len(fix.Writes) == 0) {
				t.Errorf("writes %+v for a BPB of 255 heads and a BIOS of %d", fix.Writes, got.Heads)
			}
		})
	}
}

// TestFirmwareGeometryTable pins the model to what the probe printed under
// QEMU 7.2 / SeaBIOS (GEOM lines 0F3F3F46, 7FBF0646, FEFFFE46 for the blank
// 32 MiB, blank 2 GiB and 255-head 10 GiB disks), without booting.
func TestFirmwareGeometryTable(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	mbr := func(endHead, endSect byte, size int64) []byte {
		b := make([]byte, sectorSize)
		if endHead != 0 {
			e := b[mbrPartTable:]
			e[mbrEndHead], e[mbrEndSector] = endHead, endSect
			binary.LittleEndian.PutUint32(e[mbrNumSectors:], uint32(size/sectorSize-2048))
		}
		b[mbrSignatureOffset], b[mbrSignatureOffset+1] = 0x55, 0xAA
		return b
	}
	for _, tc := range []struct {
		size             int64
		endHead, endSect byte
		want             Geometry
	}{
		{32 * mib, 0, 0, Geometry{65, 16, 63}},
		{2 * gib, 0, 0, Geometry{520, 128, 63}},
		{10 * gib, 254, 63, Geometry{1024, 255, 63}},
		{500 * mib, 14, 63, Geometry{1024, 15, 63}},
	} {
		if got := FirmwareGeometry(tc.size, mbr(tc.endHead, tc.endSect, tc.size)); got != tc.want {
			t.Errorf("%d bytes, end head %d: %s, want %s", tc.size, tc.endHead, got, tc.want)
		}
	}
}

func FuzzFirmwareGeometry(f *testing.F) {
	f.Add(int64(10<<30), make([]byte, sectorSize))
	f.Fuzz(func(t *testing.T, size int64, mbr []byte) {
		if size < 0 {
			size = -size
		}
		g := FirmwareGeometry(size, mbr)
		if g.Heads == 0 || g.Heads > 256 || g.SectorsPerTrack > 63 || g.Cylinders > maxBIOSCylinders {
			t.Fatalf("geometry %s for %d bytes", g, size)
		}
	})
}
