package registry

import "encoding/binary"

// Key security ("sk") layout, offsets within the cell data. sk cells form a
// doubly linked ring and are shared by every key with the same descriptor.
const (
	skFlinkOffset          = 4
	skBlinkOffset          = 8
	skReferenceCountOffset = 12
	skDescriptorSizeOffset = 16
	skDescriptorOffset     = 20
	skFixedSize            = skDescriptorOffset
)

// Self-relative security descriptor header facts (from the Windows
// SECURITY_DESCRIPTOR_RELATIVE layout) used to sanity-check sk contents.
const (
	sdRevision     = 1
	sdControlOff   = 2
	sdSelfRelative = 0x8000
	sdHeaderSize   = 20
)

// SecurityDescriptor returns a copy of the key's self-relative security
// descriptor, as stored in its sk cell.
func (k *Key) SecurityDescriptor() ([]byte, error) {
	b, err := k.h.record(k.rec.security, sigSK, skFixedSize)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(b[skDescriptorSizeOffset:])
	if uint64(n) > uint64(len(b)-skDescriptorOffset) {
		return nil, formatErr(abs(k.rec.security)+cellSizeFieldSize+skDescriptorSizeOffset, "sk", n, "security descriptor size exceeds its cell (%d bytes)", len(b))
	}
	return append([]byte(nil), b[skDescriptorOffset:skDescriptorOffset+int(n)]...), nil
}
