// Package overlay is kvmify's copy-on-write layer: a persistent overlay file
// that takes every write, trim and zero meant for a read-only source disk,
// so the source is never written.
//
// # File layout (format version 2)
//
// All integers are little-endian. Offsets are absolute file offsets.
//
//	0x0000  header (immutable after creation, CRC-32C protected)
//	0x1000  commit root A  \ two root locations, written alternately (A for
//	0x2000  commit root B  / even generations, B for odd); each holds two
//	                         identical copies of the root, at +0x000 and
//	                         +0x200, so each copy has a device sector of
//	                         its own
//	0x10000 data area: slot i occupies [dataOffset + i*blockSize, +blockSize)
//
//	header      magic[8] version u32 blockSize u32 sourceSize u64
//	            sampleFingerprint[32] dataOffset u64 sumSize u32 flags u32
//	            sourceSHA256[32] headerCRC u32
//	commit root magic[8] generation u64 mapOffset u64 mapLength u64
//	            mapCRC u32 rootCRC u32
//	map record  magic[8] generation u64 entryCount u64 metaCount u32 pad u32
//	            entryCount x {vblock u32, value u32 (1 = zero, 2+N = slot N),
//	                          and for a slot: blockSize/sumSize x crc u32}
//	            metaCount x {keyLen u16, valueLen u32, key, value}
//
// A slot holds either one virtual block's data or part of a map record. A
// map record lists, sorted by virtual block number, every block that differs
// from the source: "data in slot N" or "zero" (trimmed or zeroed, never read
// through again). It also carries the durable key/value metadata. Blocks not
// listed read through to the source. Block size is 64 KiB, the same unit as
// nbdkit's cow filter: it keeps the map small and 64 KiB random writes need
// no read-modify-write.
//
// Nothing in the file records its own path or name (only the source's size
// and fingerprints), so an overlay may be created under a temporary name
// and renamed into place, or moved, without changing what it means.
//
// Version 1 files (before block checksums) are refused with
// ErrUnsupportedVersion, naming the version; they are not read.
//
// # Block checksums
//
// Every sumSize (4 KiB) granule of every data slot has a CRC-32C
// (Castagnoli, hardware accelerated), computed from the bytes in hand when
// the block is written: a whole new block is summed as it is written; an
// in-place write sums the granules it covers, first reading (and
// verifying) the granules it covers only in part. The sums live in memory
// per slot and are committed in the map record beside the entry naming the
// slot. Every read of overlay data verifies every granule it touches,
// reading whole granules so that no unverified byte is returned; a mismatch
// is a DataError (ErrDataChecksum) naming the virtual block, the slot and
// its file offset, and no data. An NBD server answers it with EIO.
// FileRange hands out only ranges that read through to the source, never
// overlay slots, so sendfile never sends unverified overlay bytes.
//
// # Commit protocol
//
// A Flush commits the in-memory block map: the map record (with the block
// checksums) is written to free slots, the file is fsynced (data and
// record), the root location not holding the current generation is
// overwritten with both copies of the root of generation+1, and the file is
// fsynced again. The Flush is acknowledged only after that.
//
// # Slot reuse
//
// A slot referenced by the last durable commit (or by the commit in
// progress) is never written in place: a write to such a block goes to a
// fresh slot, and the old slot is freed only once a later commit no longer
// references it. Blocks first written since the last commit are updated in
// place. So the newest durable commit's slots are always intact; the
// previous commit's slots are intact only until the first write after the
// newest commit, and may hold other blocks' data afterwards. Slots that no
// commit references (left by a crash) are reused by later writes.
//
// # What Open accepts and what it refuses
//
// Acknowledged but unflushed writes may be lost by a crash; flushed ones
// are not, and what is recovered is always exactly the state of one
// completed commit. Open picks the newest intact root, by these rules:
//
//   - One copy of a root failing its CRC while its twin is intact is
//     survived: a crash can tear the root write only at sector granularity,
//     leaving each copy wholly old or wholly new, and damage at rest that
//     spares the other sector leaves the twin. The commit chosen is then
//     verified block by block (every slot it references read and checked)
//     before it is served, and the damage is reported in Info.Warnings. The
//     damaged copy is rewritten by the next commit to that location.
//   - A root location whose both copies are damaged (or blank, once a second
//     commit was made) is refused with a CommitError: it held either the
//     newest commit, whose acknowledged writes a fallback would lose, or the
//     previous one, and nothing on disk says which. A crash cannot produce
//     it, so it is damage, and silent fallback is exactly the loss the
//     format exists to prevent.
//   - A newest root whose map record fails its CRC or checks is refused the
//     same way: the record was synced before its root, so only damage after
//     the fact explains it, and the older commit's slots may already be
//     reused.
//
// A refusal names the generation that would be lost and the generation
// that could be accepted. Accepting it is explicit: Options.AcceptGeneration
// (the CLI's 'kvmify overlay rollback PATH --to-generation N'). The accepted
// generation's every slot is read and checked against its checksums, which
// proves that none was reused since; if any fails, it is refused too. Once
// accepted, it is committed twice at once, so that both root locations hold
// it and the damaged root is gone.
//
// Each commit rewrites the whole map record (8 bytes per changed block plus
// 4 bytes per 4 KiB of data), which keeps recovery trivial at a cost that
// grows with the overlay. An exclusive flock keeps a second process from
// opening the same overlay. Discard releases an overlay without committing,
// so that a caller failing half way through a change leaves the file at its
// last commit.
//
// An ephemeral overlay lives in an already-unlinked temporary file; its
// Flush has nothing to make durable and returns at once. Its reads are
// checksummed like any other.
//
// # Source fingerprints
//
// The overlay records the source's size and a sample fingerprint: a sha256
// over that size and samples of the source, the first and last MiB and 16
// spread 64 KiB blocks (about 3 MiB read, whatever the source's size). It
// is not the source's sha256. It catches using the overlay with a different
// image or after the image was rewritten, resized or had its partition
// table or boot sectors changed; it does not catch a change confined to
// bytes outside the samples. With Options.FullHash a new overlay also
// records the sha256 of the whole source, and Open checks it (reading the
// whole source) on every open that asks for it.
//
// # Concurrency
//
// All methods are safe for concurrent use. The block map and checksums are
// guarded by a RWMutex held only for lookups and updates, never across I/O;
// a striped per-block lock orders reads against the read-modify-write of
// the same block, so I/O on different blocks proceeds in parallel.
package overlay
