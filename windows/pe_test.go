package windows

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
)

// handBuiltPE lays out the smallest PE32 image debug/pe accepts with one
// .rsrc section holding rsrc at its start. Field offsets follow the PE/COFF
// specification.
func handBuiltPE(rsrc []byte) []byte {
	const (
		lfanew       = 0x40 // e_lfanew: PE signature right after the DOS header
		coffSize     = 20
		optSize      = 224 // IMAGE_OPTIONAL_HEADER32 with 16 data directories
		sectHdrSize  = 40
		fileAlign    = 0x200
		machineI386  = 0x14c
		optMagicPE32 = 0x10b
	)
	img := make([]byte, fileAlign+len(rsrc))
	copy(img, "MZ")
	binary.LittleEndian.PutUint32(img[0x3c:], lfanew)
	copy(img[lfanew:], "PE\x00\x00")
	coff := img[lfanew+4:]
	binary.LittleEndian.PutUint16(coff[0:], machineI386) // Machine
	binary.LittleEndian.PutUint16(coff[2:], 1)           // NumberOfSections
	binary.LittleEndian.PutUint16(coff[16:], optSize)    // SizeOfOptionalHeader
	opt := coff[coffSize:]
	binary.LittleEndian.PutUint16(opt[0:], optMagicPE32) // Magic
	binary.LittleEndian.PutUint32(opt[92:], 16)          // NumberOfRvaAndSizes
	sh := opt[optSize:]
	copy(sh[0:8], ".rsrc")
	binary.LittleEndian.PutUint32(sh[8:], uint32(len(rsrc)))  // VirtualSize
	binary.LittleEndian.PutUint32(sh[12:], 0x1000)            // VirtualAddress
	binary.LittleEndian.PutUint32(sh[16:], uint32(len(rsrc))) // SizeOfRawData
	binary.LittleEndian.PutUint32(sh[20:], fileAlign)         // PointerToRawData
	copy(img[fileAlign:], rsrc)
	return img
}

func TestKernelVersionHandBuilt(t *testing.T) {
	// A VS_FIXEDFILEINFO for 5.1.2600.5512 (XP SP3's ntoskrnl), preceded by
	// padding as in a real VS_VERSIONINFO block.
	rsrc := make([]byte, 0x80)
	fixed := rsrc[0x28:]
	binary.LittleEndian.PutUint32(fixed[0:], vsFixedFileInfoSignature)
	binary.LittleEndian.PutUint32(fixed[4:], 0x00010000)     // dwStrucVersion
	binary.LittleEndian.PutUint32(fixed[8:], 5<<16|1)        // dwFileVersionMS
	binary.LittleEndian.PutUint32(fixed[12:], 2600<<16|5512) // dwFileVersionLS
	got, err := KernelVersion(handBuiltPE(rsrc))
	if err != nil {
		t.Fatal(err)
	}
	if got != (FileVersion{Major: 5, Minor: 1, Build: 2600, Revision: 5512}) {
		t.Errorf("version %+v, want 5.1.2600.5512", got)
	}
	if _, err := KernelVersion(handBuiltPE(make([]byte, 0x80))); !errors.Is(err, ErrNoVersionResource) {
		t.Errorf("no signature: %v, want ErrNoVersionResource", err)
	}
	// A signature cut off by the end of the section is not read past it.
	short := make([]byte, 8)
	binary.LittleEndian.PutUint32(short, vsFixedFileInfoSignature)
	if _, err := KernelVersion(handBuiltPE(short)); !errors.Is(err, ErrNoVersionResource) {
		t.Errorf("truncated: %v, want ErrNoVersionResource", err)
	}
}

func TestInspectVersionFromKernel(t *testing.T) {
	root := testutil.WindowsTree(t, "win7-sp1-x64.SYSTEM", nil)
	rsrc := make([]byte, 0x40)
	binary.LittleEndian.PutUint32(rsrc[0x10:], vsFixedFileInfoSignature)
	binary.LittleEndian.PutUint32(rsrc[0x18:], 6<<16|1)
	binary.LittleEndian.PutUint32(rsrc[0x1c:], 7601<<16|17514)
	if err := os.WriteFile(filepath.Join(root, "Windows", "System32", "ntoskrnl.exe"), handBuiltPE(rsrc), 0o644); err != nil {
		t.Fatal(err)
	}
	in := inspectOne(t, root)
	if in.Version.String() != "6.1.7601" || in.Version.Source != bootfix.SourceKernelImage {
		t.Errorf("version %s from %s, want 6.1.7601 from the kernel image", in.Version, in.Version.Source)
	}
}
