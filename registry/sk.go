package registry

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
