package source

import (
	"bytes"
	"encoding/binary"
)

// Kind is a container format told apart by its content.
type Kind int

// The kinds Detect tells apart.
const (
	KindRaw   Kind = iota // no container: the bytes are the disk
	KindEWF               // EWF-E01 / EWF-S01 (EnCase, FTK Imager, ewfacquire)
	KindEWF2              // EWF2-Ex01 (EnCase 7 v2)
	KindLEF               // EWF logical evidence (L01): files, not a disk
	KindVHD               // Microsoft VHD, fixed or dynamic/differencing
	KindVHDX              // Microsoft VHDX
	KindVMDK              // VMware VMDK: sparse extent or text descriptor
	KindQCOW2             // QEMU qcow / qcow2
)

var kindNames = [...]string{
	KindRaw:   "raw",
	KindEWF:   "ewf",
	KindEWF2:  "ewf2",
	KindLEF:   "ewf-logical",
	KindVHD:   "vhd",
	KindVHDX:  "vhdx",
	KindVMDK:  "vmdk",
	KindQCOW2: "qcow2",
}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Signatures, each at the start of the file unless said otherwise.
var (
	sigEWF        = []byte("EVF\x09\x0d\x0a\xff\x00")
	sigEWF2       = []byte("EVF2\x0d\x0a\x81\x00")
	sigLEF        = []byte("LVF\x09\x0d\x0a\xff\x00")
	sigLEF2       = []byte("LEF2\x0d\x0a\x81\x00")
	sigQCOW       = []byte("QFI\xfb")
	sigVHDX       = []byte("vhdxfile")
	sigVMDKSparse = []byte("KDMV")
	sigVMDKCOWD   = []byte("COWD") // ESX Server sparse extent
	sigVMDKText   = []byte("# Disk DescriptorFile")
	sigVHD        = []byte("conectix") // footer cookie: at the end, and copied at 0 if dynamic
)

const (
	// HeadSize is how much of a file's start Detect looks at.
	HeadSize = 4096
	// TailSize is how much of a file's end Detect looks at: a VHD footer.
	TailSize = vhdFooterSize

	vhdFooterSize     = 512
	vhdChecksumOffset = 64
)

// Detect names the container whose signature head (a file's first bytes,
// up to HeadSize) or tail (its last TailSize bytes, or fewer) holds, or
// KindRaw. It never looks at a file's name.
func Detect(head, tail []byte) Kind {
	switch {
	case bytes.HasPrefix(head, sigEWF):
		return KindEWF
	case bytes.HasPrefix(head, sigEWF2):
		return KindEWF2
	case bytes.HasPrefix(head, sigLEF), bytes.HasPrefix(head, sigLEF2):
		return KindLEF
	case bytes.HasPrefix(head, sigQCOW):
		return KindQCOW2
	case bytes.HasPrefix(head, sigVHDX):
		return KindVHDX
	case bytes.HasPrefix(head, sigVMDKSparse), bytes.HasPrefix(head, sigVMDKCOWD):
		return KindVMDK
	case isVMDKDescriptor(head):
		return KindVMDK
	case isVHDFooter(head):
		// A dynamic VHD starts with a copy of its footer.
		return KindVHD
	}
	if len(tail) >= vhdFooterSize && isVHDFooter(tail[len(tail)-vhdFooterSize:]) {
		return KindVHD
	}
	// Virtual PC before 2004 wrote a 511-byte footer.
	if len(tail) >= vhdFooterSize && isVHDFooter(tail[len(tail)-vhdFooterSize+1:]) {
		return KindVHD
	}
	return KindRaw
}

// isVMDKDescriptor reports whether head starts a VMDK text descriptor,
// after any blank lines or a UTF-8 byte order mark.
func isVMDKDescriptor(head []byte) bool {
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n")
	return bytes.HasPrefix(head, sigVMDKText)
}

// isVHDFooter reports whether b starts with a VHD footer whose checksum
// holds; the cookie alone could be a raw disk's data.
func isVHDFooter(b []byte) bool {
	if len(b) < vhdChecksumOffset+4 || !bytes.HasPrefix(b, sigVHD) {
		return false
	}
	n := min(len(b), vhdFooterSize)
	var sum uint32
	for i := 0; i < n; i++ {
		if i >= vhdChecksumOffset && i < vhdChecksumOffset+4 {
			continue
		}
		sum += uint32(b[i])
	}
	return ^sum == binary.BigEndian.Uint32(b[vhdChecksumOffset:])
}
