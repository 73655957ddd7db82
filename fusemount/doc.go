// Package fusemount exposes a disk as a regular file in a FUSE mount, beside
// small read-only files (reports, hive copies), so that QEMU or an examiner's
// tools can use a plain path such as DIR/disk.img.
//
// The disk file is fixed-size and opened with direct_io: every read and
// write goes straight to the disk layer (normally the copy-on-write
// overlay), so the kernel's page cache never holds a second, possibly stale,
// copy and large requests (up to MaxWrite) arrive whole.
//
// When the disk implements disk.Extenter, the disk file has holes where it
// reads as zeros: SEEK_DATA and SEEK_HOLE and st_blocks follow its extents,
// so cp --sparse and qemu-img skip them as on a sparse local file.
package fusemount
