package registry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Old-format log layout: the dirty vector starts in the second sector, and
// the dirty pages start at the first sector boundary after it.
const (
	dirtyVectorBitmapOffset = 4 // after the "DIRT" signature, from the vector's start

	// oldLogPageSize is the unit the dirty vector tracks: one bit per
	// 512-byte page of hive bins data, whatever the disk's sector size.
	oldLogPageSize = 512

	regfLastWrittenSize = 8
)

// dirtyVector is a decoded old-format log: which 512-byte pages of the hive
// bins data it holds, and where their copies start in the log.
type dirtyVector struct {
	bitmap     []byte // bit i (LSB first) set: page i is dirty
	pages      int    // pages described by the bitmap
	dirty      int    // bits set
	pagesStart int    // log offset of the first dirty page copy
}

func (v *dirtyVector) isDirty(page int) bool {
	return page >= 0 && page < v.pages && v.bitmap[page/8]&(1<<(page%8)) != 0
}

// parseDirtyVector decodes the dirty vector starting at start (the second
// sector, whose size also aligns the pages) of a log whose base block copy
// records hbinsSize bytes of hive bins data.
func parseDirtyVector(log []byte, start int, hbinsSize uint32) (*dirtyVector, error) {
	const structure = "dirty vector (DIRT)"
	bitmapAt := start + dirtyVectorBitmapOffset
	if len(log) < bitmapAt || [4]byte(log[start:bitmapAt]) != dirtSignature {
		return nil, formatErr(int64(start), structure, nil, "missing %q signature", "DIRT")
	}
	if hbinsSize == 0 || hbinsSize%hbinAlignment != 0 || hbinsSize > maxHiveBinsDataSize {
		return nil, formatErr(regfHiveBinsDataSizeOffset, "log base block", hbinsSize,
			"hive bins data size is not a positive multiple of %d", hbinAlignment)
	}
	v := &dirtyVector{pages: int(hbinsSize / oldLogPageSize)}
	n := (v.pages + 7) / 8
	if n > len(log)-bitmapAt {
		return nil, formatErr(int64(bitmapAt), structure, n, "bitmap of %d bytes runs past the end of the %d-byte log", n, len(log))
	}
	v.bitmap = log[bitmapAt : bitmapAt+n]
	for _, b := range v.bitmap {
		v.dirty += bits.OnesCount8(b)
	}
	v.pagesStart = (bitmapAt + n + start - 1) / start * start
	if v.dirty > (len(log)-v.pagesStart)/oldLogPageSize {
		return nil, formatErr(int64(v.pagesStart), "dirty pages", v.dirty,
			"the log holds only %d bytes of page data", max(len(log)-v.pagesStart, 0))
	}
	return v, nil
}

// recoverOld applies the applicable old-format log: a valid one whose base
// block copy has the primary's last-written timestamp, the newest if several.
func (g *replay) recoverOld() ([]byte, error) {
	stamp, ok := g.primaryTimestamp()
	best, bestVec := -1, (*dirtyVector)(nil)
	for i, h := range g.headers {
		lr := &g.rep.Logs[i]
		if h.format != LogFormatOld {
			continue
		}
		if !h.valid {
			continue // parseLogHeader said why
		}
		vec, err := parseDirtyVector(g.logs[i], h.dataOffset, h.bb.HiveBinsDataSize)
		if err != nil {
			lr.Problem = err.Error()
			continue
		}
		lr.DirtyPages = vec.dirty
		if !ok || !g.logMatchesPrimary(g.logs[i][regfLastWrittenOffset:regfLastWrittenOffset+regfLastWrittenSize], stamp) {
			lr.Problem = "last written timestamp differs from the primary's: the log belongs to another write"
			continue
		}
		if best < 0 || h.sequence > g.headers[best].sequence {
			best, bestVec = i, vec
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("%w: no applicable old-format log (%s)", ErrLogsUnusable, g.problems())
	}
	h, lr := g.headers[best], &g.rep.Logs[best]
	out, err := g.applyDirtyPages(best, bestVec, bestVec.pages)
	if err != nil {
		return nil, err
	}
	// A dirty page that should start a hive bin but does not stops the
	// replay there: only the pages before that bin are applied.
	if bad, ok := firstBadBin(out, h.bb.HiveBinsDataSize); ok {
		first := int(bad / oldLogPageSize)
		last := first + hbinAlignment/oldLogPageSize
		touched := false
		for p := first; p < last; p++ {
			touched = touched || bestVec.isDirty(p)
		}
		if touched {
			g.rep.Stopped = fmt.Sprintf("dirty hive bin at hive bins offset 0x%x is invalid; pages from there on were not applied", bad)
			if out, err = g.applyDirtyPages(best, bestVec, first); err != nil {
				return nil, err
			}
		} else {
			g.rep.Stopped = fmt.Sprintf("hive bin at hive bins offset 0x%x is invalid in the primary itself", bad)
		}
	}
	lr.Used = true
	lr.EntriesApplied = 1
	g.rep.EntriesApplied = 1
	g.rep.StartSequence, g.rep.EndSequence = h.sequence, h.sequence
	seq := max(g.pbb.PrimarySequence, h.sequence)
	if !g.pbb.ChecksumValid() {
		seq = h.sequence // a corrupt base block's numbers mean nothing
	}
	if err := finish(out, seq, h.bb.HiveBinsDataSize); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogsUnusable, err)
	}
	return out, nil
}

// applyDirtyPages copies the primary and writes the log's dirty pages below
// page index limit onto the copy, counting them in the report.
func (g *replay) applyDirtyPages(idx int, vec *dirtyVector, limit int) ([]byte, error) {
	h, lr := g.headers[idx], &g.rep.Logs[idx]
	out, err := g.grow(append([]byte(nil), g.primary...), h.bb.HiveBinsDataSize)
	if err != nil {
		return nil, fmt.Errorf("%w: log #%d: %v", ErrLogsUnusable, idx, err)
	}
	g.rep.BaseBlockFromLog = -1
	if !g.pbb.ChecksumValid() {
		// The primary's base block is corrupt: the log's copy replaces it.
		copy(out[:min(h.dataOffset, BaseBlockSize)], g.logs[idx])
		g.rep.BaseBlockFromLog = idx
	}
	log := g.logs[idx]
	lr.PagesApplied, g.rep.PagesApplied, g.rep.BytesApplied = 0, 0, 0
	k := 0
	for p := range vec.pages {
		if !vec.isDirty(p) {
			continue
		}
		if p < limit {
			src := log[vec.pagesStart+k*oldLogPageSize:][:oldLogPageSize]
			copy(out[BaseBlockSize+p*oldLogPageSize:], src)
			lr.PagesApplied++
			g.rep.PagesApplied++
			g.rep.BytesApplied += oldLogPageSize
		}
		k++
	}
	return out, nil
}

// logMatchesPrimary reports whether a log whose base block copy carries
// the last-written timestamp logStamp belongs to the primary whose stamp
// is primaryStamp. With a valid primary base block the two must be equal,
// as the specification says. With a corrupt one the primary's stamp is the
// first hive bin's backup copy, which Windows does not refresh on every
// write (yarp's BadBaseBlockHive: the bin's copy is older than the base
// block's and the log's, which agree), so a log at least as new applies,
// the rule yarp uses.
func (g *replay) logMatchesPrimary(logStamp, primaryStamp []byte) bool {
	if g.pbb.ChecksumValid() {
		return bytes.Equal(logStamp, primaryStamp)
	}
	return binary.LittleEndian.Uint64(logStamp) >= binary.LittleEndian.Uint64(primaryStamp)
}

// primaryTimestamp is the last-written timestamp a log must carry to apply:
// the base block's, or the first hive bin's backup copy when the base block
// is corrupt.
func (g *replay) primaryTimestamp() ([]byte, bool) {
	if g.pbb.ChecksumValid() {
		return g.primary[regfLastWrittenOffset : regfLastWrittenOffset+regfLastWrittenSize], true
	}
	at := BaseBlockSize + hbinTimestampOffset
	if len(g.primary) < at+regfLastWrittenSize {
		return nil, false
	}
	return g.primary[at : at+regfLastWrittenSize], true
}

// firstBadBin walks the hive bins of a recovered image and returns the
// offset (relative to the first bin) of the first invalid one.
func firstBadBin(out []byte, hbinsSize uint32) (uint32, bool) {
	_, err := parseBins(out[BaseBlockSize : BaseBlockSize+int(hbinsSize)])
	var fe *FormatError
	if err == nil || !errors.As(err, &fe) {
		return 0, false
	}
	// Bins start on 4 KiB boundaries; the error may point into the header.
	return uint32(fe.Offset-BaseBlockSize) &^ (hbinAlignment - 1), true
}
