// Package overlay is kvmify's copy-on-write layer: a persistent overlay file
// that takes every write, trim and zero meant for a read-only source disk,
// so the source is never written.
//
// # File layout
//
// All integers are little-endian. Offsets are absolute file offsets.
//
//	0x0000  header (immutable after creation, CRC-32C protected):
//	        magic "KVMIFYOV", version, block size, source size,
//	        source fingerprint (sha256), data offset
//	0x1000  commit root A  \ two roots, written alternately; each holds a
//	0x2000  commit root B  / generation, the location, length and CRC-32C
//	                         of a map record, and its own CRC-32C
//	0x10000 data area: slot i occupies [dataOffset + i*blockSize, +blockSize)
//
//	header      magic[8] version u32 blockSize u32 sourceSize u64
//	            fingerprint[32] dataOffset u64 headerCRC u32
//	commit root magic[8] generation u64 mapOffset u64 mapLength u64
//	            mapCRC u32 rootCRC u32
//	map record  magic[8] generation u64 entryCount u64 metaCount u32 pad u32
//	            entryCount x {vblock u32, value u32}  (1 = zero, 2+N = slot N)
//	            metaCount x {keyLen u16, valueLen u32, key, value}
//
// A slot holds either one virtual block's data or part of a map record. A
// map record lists, sorted by virtual block number, every block that differs
// from the source: "data in slot N" or "zero" (trimmed or zeroed, never read
// through again). It also carries the durable key/value metadata. Blocks not
// listed read through to the source. Block size is 64 KiB, the same unit as
// nbdkit's cow filter: it keeps the map small (16 Mi entries for a fully
// rewritten 1 TiB disk) and 64 KiB random writes need no read-modify-write.
//
// # Crash consistency
//
// A Flush commits the in-memory block map: the map record is written to free
// slots, the file is fsynced (data and record), the root not holding the
// current generation is overwritten with generation+1, and the file is
// fsynced again. Open picks the root with the highest generation whose CRC is
// valid, so a torn root write falls back to the previous commit, whose map
// record and data slots are still intact: a slot referenced by the last
// durable commit (or by the commit in progress) is never written in place.
// A write to such a block goes to a fresh slot, and the old slot is freed
// only once a later commit no longer references it. Blocks first written
// since the last commit are updated in place. Acknowledged but unflushed
// writes may therefore be lost by a crash; flushed ones are not, and what is
// recovered is always exactly the state of one completed Flush.
//
// A map record that fails its CRC under a valid root is reported as
// corruption rather than skipped: it was synced before its root, so only
// damage after the fact can explain it, and the older commit's slots may
// already be reused. Slots a crash left unreferenced are reused by later
// writes. Each commit rewrites the whole map record (8 bytes per changed
// block), which keeps recovery trivial at a cost that grows with the
// overlay. An exclusive flock keeps a second process from opening the same
// overlay.
//
// An ephemeral overlay lives in an already-unlinked temporary file; its
// Flush has nothing to make durable and returns at once.
//
// # Source fingerprint
//
// The overlay records the source's size and a sha256 over that size and
// samples of the source: the first and last MiB and 16 spread 64 KiB
// blocks (about 3 MiB read, whatever the source's size). It catches using
// the overlay with a different image or after the image was rewritten,
// resized or had its partition table or boot sectors changed; it does not
// catch a change confined to bytes outside the samples.
//
// # Concurrency
//
// All methods are safe for concurrent use. The block map is guarded by a
// RWMutex held only for lookups and updates, never across I/O; a striped
// per-block lock orders reads against the read-modify-write of the same
// block, so I/O on different blocks proceeds in parallel.
package overlay
