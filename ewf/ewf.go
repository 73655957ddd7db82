// Package ewf reads EWF-E01 evidence files (EnCase 1 to 6, FTK Imager,
// ewfacquire; and the SMART S01 variant) as a read-only disk.
//
// A set is found from its first segment file (.E01, then .E02 … .E99,
// .EAA …). Every structure that carries a checksum is checked as it is
// read: section descriptors, the volume, the chunk tables (a damaged table
// falls back on its table2 copy), and every chunk (zlib's Adler-32 for a
// compressed chunk, the stored Adler-32 for a plain one). A fault is an
// error naming the segment file and byte offset; the reader never returns
// zeros or stale bytes in place of a chunk it could not read. The MD5 and
// SHA-1 stored by the acquiring tool are exposed for Verify.
//
// Chunks are inflated by internal/container/inflate, which decodes a slice
// straight into the chunk buffer (faster than compress/zlib and
// klauspost/compress; README has the numbers), and checked with the
// plain-Go Adler-32 of internal/adler.
//
// go-ewf (Velocidex) is not used: it reads E01 version 1 only, never checks
// the stored hashes, and returns zeros when a chunk fails to decompress.
package ewf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/kvmify/kvmify/internal/adler"
	"github.com/kvmify/kvmify/internal/container/inflate"

	"github.com/kvmify/kvmify/disk"
)

// DefaultCacheBytes bounds the decompressed chunks an Image keeps.
const DefaultCacheBytes = 64 << 20

// Options tune an Image.
type Options struct {
	// CacheBytes bounds the memory of decompressed chunks kept for reuse;
	// zero means DefaultCacheBytes.
	CacheBytes int64
}

// Image is an open E01 segment set.
type Image struct {
	files    []*os.File
	paths    []string // absolute
	sizes    []int64
	media    Media
	size     int64
	chunk    int64 // bytes of media per chunk
	tables   []tableRef
	chunks   int64
	hashes   Hashes
	problems []error
	cache    *chunkCache
	twins    *twinTable
	verified verifiedSet
	dpool    sync.Pool // *inflate.Decoder, reused per chunk
	runBufs  sync.Pool // *[]byte of stored chunks read in one run
}

// tableRef places a table's chunks in the set.
type tableRef struct {
	first int64 // index of the table's first chunk
	seg   int
	t     *table
}

var _ disk.Reader = (*Image)(nil)

// Open opens the E01 set whose first segment file is path.
func Open(path string) (*Image, error) { return OpenWith(path, Options{}) }

// OpenWith opens the E01 set whose first segment is path, with options.
func OpenWith(path string, opts Options) (*Image, error) {
	im := &Image{}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	var mediaFrom string
	for n := 1; ; n++ {
		name := path
		if n > 1 {
			name = segmentName(path, n)
			if name == "" {
				im.Close()
				return nil, &FormatError{Path: im.paths[n-2], What: "segment set", Msg: fmt.Sprintf("segment %d has no file name", n), Err: ErrUnsupported}
			}
		}
		f, err := os.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			im.Close()
			if n > 1 && errors.Is(err, os.ErrNotExist) {
				return nil, &FormatError{Path: name, What: "segment file",
					Msg: fmt.Sprintf("segment %d of the set, which %s continues, cannot be opened", n, filepath.Base(im.paths[n-2])), Err: ErrMissingSegment}
			}
			return nil, err
		}
		abs, err := filepath.Abs(name)
		if err != nil {
			abs = name
		}
		im.files = append(im.files, f)
		im.paths = append(im.paths, abs)
		fi, err := f.Stat()
		if err != nil {
			im.Close()
			return nil, err
		}
		im.sizes = append(im.sizes, fi.Size())
		seg, err := parseSegment(f, name, fi.Size())
		if err != nil {
			im.Close()
			return nil, err
		}
		if seg.Number != n {
			im.Close()
			msg := fmt.Sprintf("the header says segment %d, the set needs segment %d here", seg.Number, n)
			if n == 1 {
				msg = fmt.Sprintf("this is segment %d of its set; open the first segment (.E01)", seg.Number)
			}
			return nil, &FormatError{Path: name, What: "file header", Msg: msg, Err: ErrFormat}
		}
		if seg.Media != nil {
			if mediaFrom == "" {
				im.media, mediaFrom = *seg.Media, name
			} else if *seg.Media != im.media {
				im.Close()
				return nil, &FormatError{Path: name, Offset: seg.MediaAt, What: "data section",
					Msg: fmt.Sprintf("media %+v differ from %s's %+v", *seg.Media, mediaFrom, im.media), Err: ErrFormat}
			}
		}
		for _, t := range seg.Tables {
			im.tables = append(im.tables, tableRef{first: im.chunks, seg: n - 1, t: t})
			im.chunks += int64(len(t.Entries))
		}
		if seg.MD5 != nil {
			im.hashes.MD5 = seg.MD5
		}
		if seg.SHA1 != nil {
			im.hashes.SHA1 = seg.SHA1
		}
		im.problems = append(im.problems, seg.Problems...)
		if seg.Done {
			break
		}
	}
	if err := im.checkMedia(mediaFrom); err != nil {
		im.Close()
		return nil, err
	}
	im.cache = newChunkCache(opts.CacheBytes)
	im.twins = newTwinTable()
	im.verified = newVerifiedSet(im.chunks)
	im.runBufs.New = func() any { return new([]byte) }
	return im, nil
}

// checkMedia checks that the volume section and the tables agree on how
// many chunks hold the media.
func (im *Image) checkMedia(mediaFrom string) error {
	last := im.paths[len(im.paths)-1]
	if mediaFrom == "" {
		return &FormatError{Path: im.paths[0], What: "segment set", Msg: "no volume section", Err: ErrFormat}
	}
	im.size, im.chunk = im.media.Size(), im.media.ChunkSize()
	need := (im.size + im.chunk - 1) / im.chunk
	switch {
	case im.size == 0:
		return &FormatError{Path: mediaFrom, What: "volume section", Msg: "the media holds no sectors", Err: ErrFormat}
	case im.chunks < need:
		return &FormatError{Path: last, What: "segment set",
			Msg: fmt.Sprintf("the tables list %d chunks; %d bytes of media need %d", im.chunks, im.size, need), Err: ErrTruncated}
	case im.media.ChunkCount != 0 && int64(im.media.ChunkCount) < need:
		return &FormatError{Path: mediaFrom, What: "volume section",
			Msg: fmt.Sprintf("%d chunks for %d bytes of media in %d-byte chunks", im.media.ChunkCount, im.size, im.chunk), Err: ErrFormat}
	}
	return nil
}

// Size is the media's length in bytes.
func (im *Image) Size() int64 { return im.size }

// Format names the container.
func (im *Image) Format() string { return "ewf" }

// Media describes the acquired medium as the volume section does.
func (im *Image) Media() Media { return im.media }

// Hashes are the digests stored in the set (nil fields were not stored).
func (im *Image) Hashes() Hashes { return im.hashes }

// Problems lists faults found at open that a redundant copy made harmless
// (a damaged table whose table2 was used).
func (im *Image) Problems() []error { return im.problems }

// InputFiles lists every segment file as an absolute path.
func (im *Image) InputFiles() []string { return append([]string(nil), im.paths...) }

// Close closes every segment file.
func (im *Image) Close() error {
	var err error
	for _, f := range im.files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	im.files = nil
	return err
}

// ReadAt reads media bytes, decompressing (or taking from the cache) each
// chunk the range touches. A read ending past Size returns io.EOF with the
// bytes before it; a chunk that cannot be read is an error naming its
// segment file and offset.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ewf: negative offset %d", off)
	}
	if off >= im.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), im.size-off))
	if err := im.fill(p[:n], off, true); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// chunkLocation finds where chunk ci is stored.
func (im *Image) chunkLocation(ci int64) (seg int, start, stored int64, compressed bool) {
	k := sort.Search(len(im.tables), func(i int) bool { return im.tables[i].first > ci }) - 1
	tr := im.tables[k]
	j := ci - tr.first
	e := tr.t.Entries[j]
	start = tr.t.Base + int64(e&tableEntryOffsetMask)
	end := tr.t.DataEnd
	if j+1 < int64(len(tr.t.Entries)) {
		end = tr.t.Base + int64(tr.t.Entries[j+1]&tableEntryOffsetMask)
	}
	return tr.seg, start, end - start, e&tableEntryCompressed != 0
}

// chunkLoc is where a chunk is stored, checked against the chunk size.
type chunkLoc struct {
	seg        int
	start      int64
	stored     int64
	compressed bool
}

// locate finds chunk ci's stored bytes.
func (im *Image) locate(ci int64) (chunkLoc, error) {
	if ci < 0 || ci >= im.chunks {
		return chunkLoc{}, fmt.Errorf("ewf: chunk %d of %d", ci, im.chunks)
	}
	seg, start, stored, compressed := im.chunkLocation(ci)
	if stored <= 0 || stored > 2*im.chunk+4096 {
		return chunkLoc{}, &FormatError{Path: im.paths[seg], Offset: start, What: fmt.Sprintf("chunk %d", ci),
			Msg: fmt.Sprintf("stored size %d for a %d-byte chunk", stored, im.chunk), Err: ErrFormat}
	}
	return chunkLoc{seg, start, stored, compressed}, nil
}

// chunkWhat names chunks first to last in errors; built only on the error
// path, as formatting on every read is measurable.
func chunkWhat(first, last int64) string {
	if first == last {
		return fmt.Sprintf("chunk %d", first)
	}
	return fmt.Sprintf("chunks %d to %d", first, last)
}

// pread reads p from segment seg at off, all of it or an error naming
// chunks first to last.
func (im *Image) pread(seg int, p []byte, off, first, last int64) error {
	if off >= 0 && int64(len(p)) <= im.sizes[seg]-off {
		if n, _ := im.files[seg].ReadAt(p, off); n == len(p) {
			return nil
		}
	}
	return readFull(im.files[seg], im.paths[seg], im.sizes[seg], p, off, chunkWhat(first, last))
}

// readChunk reads, checks and inflates compressed chunk ci; shared data
// belongs to the twin table (see twins.go).
func (im *Image) readChunk(ci int64) (data []byte, shared bool, err error) {
	loc, err := im.locate(ci)
	if err != nil {
		return nil, false, err
	}
	bp := im.runBufs.Get().(*[]byte)
	defer im.runBufs.Put(bp)
	if int64(cap(*bp)) < loc.stored {
		*bp = make([]byte, loc.stored)
	}
	buf := (*bp)[:loc.stored]
	if err := im.pread(loc.seg, buf, loc.start, ci, ci); err != nil {
		return nil, false, err
	}
	data, shared, err = im.decode(ci, loc, buf)
	if err == nil && !loc.compressed {
		// Only inflated bytes outlive buf.
		data = bytes.Clone(data)
	}
	return data, shared, err
}

// readPlainPart copies the part [off, off+len(p)) of plain chunk ci into
// p. A chunk whose checksum has passed before is read as just those bytes;
// otherwise the whole stored chunk is read and checked first.
func (im *Image) readPlainPart(ci int64, loc chunkLoc, p []byte, off int64) error {
	rel := off - ci*im.chunk
	if im.verified.has(ci) {
		return im.pread(loc.seg, p, loc.start+rel, ci, ci)
	}
	bp := im.runBufs.Get().(*[]byte)
	defer im.runBufs.Put(bp)
	if int64(cap(*bp)) < loc.stored {
		*bp = make([]byte, loc.stored)
	}
	buf := (*bp)[:loc.stored]
	if err := im.pread(loc.seg, buf, loc.start, ci, ci); err != nil {
		return err
	}
	data, _, err := im.decode(ci, loc, buf)
	if err != nil {
		return err
	}
	copy(p, data[rel:])
	return nil
}

// decode checks and (if compressed) inflates chunk ci from its stored
// bytes buf. A plain chunk's data is a slice of buf; a compressed chunk's
// is new, or shared with its twins (shared: never modify it).
func (im *Image) decode(ci int64, loc chunkLoc, buf []byte) (data []byte, shared bool, err error) {
	path, start, stored := im.paths[loc.seg], loc.start, loc.stored
	want := min(im.chunk, im.size-ci*im.chunk) // the last chunk may be short
	if loc.compressed {
		if d := im.twins.lookup(buf); d != nil && (int64(len(d)) == want || int64(len(d)) == im.chunk) {
			im.verified.mark(ci)
			return d[:want:want], true, nil
		}
		d, n, err := im.inflate(buf, want, path, start, ci)
		if err != nil {
			return nil, false, err
		}
		im.verified.mark(ci)
		if stored <= twinMaxStored {
			im.twins.add(buf, d[:n:n])
		}
		return d[:want:want], false, nil
	}
	// A plain chunk is its bytes and their Adler-32. Writers store the
	// media's last chunk short, or padded to a whole chunk.
	if im.verified.has(ci) && stored >= want+4 {
		return buf[:want:want], false, nil
	}
	for _, l := range []int64{want, im.chunk} {
		if stored >= l+4 && adler.Checksum(buf[:l]) == binary.LittleEndian.Uint32(buf[l:]) {
			im.verified.mark(ci)
			return buf[:want:want], false, nil
		}
	}
	if stored < want+4 {
		return nil, false, &FormatError{Path: path, Offset: start, What: chunkWhat(ci, ci),
			Msg: fmt.Sprintf("stored size %d, %d needed for its bytes and checksum", stored, want+4), Err: ErrTruncated}
	}
	return nil, false, &FormatError{Path: path, Offset: start, What: chunkWhat(ci, ci),
		Msg: fmt.Sprintf("stored Adler-32 %#08x, computed %#08x", binary.LittleEndian.Uint32(buf[want:]), adler.Checksum(buf[:want])), Err: ErrChecksum}
}

// inflate decompresses a zlib chunk that must inflate to want bytes (or a
// whole chunk, for a padded last one) and end there, its Adler-32 checked;
// it returns the inflated bytes and their count.
func (im *Image) inflate(buf []byte, want int64, path string, start int64, ci int64) ([]byte, int, error) {
	d, _ := im.dpool.Get().(*inflate.Decoder)
	if d == nil {
		d = new(inflate.Decoder)
	}
	out := make([]byte, im.chunk)
	n, err := d.Zlib(out, buf)
	im.dpool.Put(d)
	fail := func(msg string, err error) ([]byte, int, error) {
		return nil, 0, &FormatError{Path: path, Offset: start, What: chunkWhat(ci, ci), Msg: msg, Err: err}
	}
	switch {
	case errors.Is(err, inflate.ErrChecksum):
		return fail(err.Error(), ErrChecksum)
	case errors.Is(err, inflate.ErrTooLong):
		return fail(fmt.Sprintf("inflates to more than %d bytes", im.chunk), ErrCorruptChunk)
	case err != nil:
		return fail("inflating", fmt.Errorf("%w: %w", ErrCorruptChunk, err))
	case int64(n) != want && int64(n) != im.chunk:
		return fail(fmt.Sprintf("inflates to %d bytes, %d expected", n, want), ErrCorruptChunk)
	}
	return out, n, nil
}
