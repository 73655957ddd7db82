package registry

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// New-format (Windows 8.1+) log entry ("HvLE") layout, offsets from the
// start of the entry.
const (
	hvleSignatureOffset        = 0
	hvleSizeOffset             = 4
	hvleFlagsOffset            = 8
	hvleSequenceOffset         = 12
	hvleHiveBinsDataSizeOffset = 16
	hvleDirtyPagesCountOffset  = 20
	hvleHash1Offset            = 24
	hvleHash2Offset            = 32
	hvleHeaderSize             = 40

	// hvleHash2Length is how much of the entry header Hash-2 covers: every
	// field up to and including Hash-1.
	hvleHash2Length = hvleHash2Offset

	// Dirty page reference layout, repeated Dirty pages count times after
	// the header.
	dirtyPageRefOffsetOffset = 0
	dirtyPageRefSizeOffset   = 4
	dirtyPageRefSize         = 8
)

// logEntryHashSeed is the Marvin32 seed of HvLE hashes; the specification
// lists it as the bytes 82 EF 4D 88 7A 4E 55 C5, most significant first.
const logEntryHashSeed = 0x82EF4D887A4E55C5

// hvleEntry is one validated log entry; pages point into the log bytes.
type hvleEntry struct {
	fileOffset       int
	flags            uint32
	sequence         uint32
	hiveBinsDataSize uint32
	pages            []dirtyPage
}

// dirtyPage is a run of hive bins data replaced by a log entry.
type dirtyPage struct {
	offset uint32 // relative to the first hive bin
	data   []byte
}

// parseHvleEntries returns the log's valid entries in file order from start
// (the second sector), stopping at
// the first one that is not a valid entry; the error says why it stopped and
// is nil when the log simply ends (zeros or end of file).
func parseHvleEntries(log []byte, start int) ([]hvleEntry, error) {
	var entries []hvleEntry
	for off := start; off+hvleHeaderSize <= len(log); {
		e, size, err := parseHvleEntry(log, off)
		if err != nil {
			return entries, err
		}
		if size == 0 {
			return entries, nil
		}
		entries = append(entries, e)
		off += size
	}
	return entries, nil
}

// parseHvleEntry validates the entry at off. A region that does not start
// with the signature ends the log (size 0, nil error).
func parseHvleEntry(log []byte, off int) (hvleEntry, int, error) {
	const structure = "log entry (HvLE)"
	le := binary.LittleEndian
	h := log[off:]
	if [4]byte(h[hvleSignatureOffset:hvleSignatureOffset+4]) != hvleSignature {
		return hvleEntry{}, 0, nil
	}
	size := le.Uint32(h[hvleSizeOffset:])
	if size < hvleHeaderSize || size%logSectorSize != 0 || uint64(size) > uint64(len(h)) {
		return hvleEntry{}, 0, formatErr(int64(off+hvleSizeOffset), structure, size,
			"size is not a multiple of %d between %d and the %d bytes left", logSectorSize, hvleHeaderSize, len(h))
	}
	body := h[:size]
	e := hvleEntry{
		fileOffset:       off,
		flags:            le.Uint32(body[hvleFlagsOffset:]),
		sequence:         le.Uint32(body[hvleSequenceOffset:]),
		hiveBinsDataSize: le.Uint32(body[hvleHiveBinsDataSizeOffset:]),
	}
	if e.hiveBinsDataSize == 0 || e.hiveBinsDataSize%hbinAlignment != 0 || e.hiveBinsDataSize > maxHiveBinsDataSize {
		return hvleEntry{}, 0, formatErr(int64(off+hvleHiveBinsDataSizeOffset), structure, e.hiveBinsDataSize,
			"hive bins data size is not a positive multiple of %d", hbinAlignment)
	}
	if got, want := Marvin32(logEntryHashSeed, body[:hvleHash2Length]), le.Uint64(body[hvleHash2Offset:]); got != want {
		return hvleEntry{}, 0, &FormatError{Offset: int64(off + hvleHash2Offset), Structure: structure,
			Msg: fmt.Sprintf("Hash-2 mismatch (computed 0x%016x)", got), Value: want, Err: ErrChecksum}
	}
	if got, want := Marvin32(logEntryHashSeed, body[hvleHeaderSize:]), le.Uint64(body[hvleHash1Offset:]); got != want {
		return hvleEntry{}, 0, &FormatError{Offset: int64(off + hvleHash1Offset), Structure: structure,
			Msg: fmt.Sprintf("Hash-1 mismatch (computed 0x%016x)", got), Value: want, Err: ErrChecksum}
	}
	count := le.Uint32(body[hvleDirtyPagesCountOffset:])
	refs := body[hvleHeaderSize:]
	if uint64(count)*dirtyPageRefSize > uint64(len(refs)) {
		return hvleEntry{}, 0, formatErr(int64(off+hvleDirtyPagesCountOffset), structure, count,
			"dirty pages count does not fit in the %d-byte entry", size)
	}
	data := refs[count*dirtyPageRefSize:]
	e.pages = make([]dirtyPage, 0, count)
	for i := range int(count) {
		ref := refs[i*dirtyPageRefSize:]
		pOff := le.Uint32(ref[dirtyPageRefOffsetOffset:])
		pSize := le.Uint32(ref[dirtyPageRefSizeOffset:])
		refAt := int64(off + hvleHeaderSize + i*dirtyPageRefSize)
		if uint64(pOff)+uint64(pSize) > uint64(e.hiveBinsDataSize) {
			return hvleEntry{}, 0, formatErr(refAt, "dirty page reference", pOff,
				"page of %d bytes lies outside the entry's hive bins data size %d", pSize, e.hiveBinsDataSize)
		}
		if uint64(pSize) > uint64(len(data)) {
			return hvleEntry{}, 0, formatErr(refAt+dirtyPageRefSizeOffset, "dirty page reference", pSize,
				"page data runs past the end of the entry")
		}
		e.pages = append(e.pages, dirtyPage{offset: pOff, data: data[:pSize]})
		data = data[pSize:]
	}
	return e, int(size), nil
}

// newLog is one new-format log with its valid entries.
type newLog struct {
	index   int
	entries []hvleEntry
}

// recoverNew applies HvLE entries in sequence order: starting at the
// expected sequence number, each applied entry must be followed by the next
// number, across LOG1 and LOG2, and replay stops at the first gap.
func (g *replay) recoverNew() ([]byte, error) {
	var logs []newLog
	for i, h := range g.headers {
		lr := &g.rep.Logs[i]
		if h.format != LogFormatNew {
			if lr.Problem == "" && lr.Format != LogFormatUnknown {
				lr.Problem = "not a new-format log"
			}
			continue
		}
		if !h.valid {
			// A log whose base block copy is damaged or half-written is
			// not used at all, as in the old format: the specification
			// calls such a log invalid, and yarp refuses BadLogHive3, whose
			// two logs both have bad base block checksums. (Their entries'
			// own hashes may still match; what Windows does with them is
			// not documented anywhere we could read.)
			lr.Problem = joinProblem(lr.Problem, "log not used")
			continue
		}
		entries, err := parseHvleEntries(g.logs[i], h.dataOffset)
		if err != nil {
			lr.Problem = joinProblem(lr.Problem, "entries end at an invalid one: "+err.Error())
		}
		lr.Entries = len(entries)
		if len(entries) > 0 {
			lr.FirstSequence, lr.LastSequence = entries[0].sequence, entries[len(entries)-1].sequence
			logs = append(logs, newLog{index: i, entries: entries})
		}
	}
	// The log whose entries start earlier was written first.
	sort.SliceStable(logs, func(a, b int) bool { return logs[a].entries[0].sequence < logs[b].entries[0].sequence })

	out := append([]byte(nil), g.primary...)
	expected := g.pbb.SecondarySequence
	baseOK := g.pbb.ChecksumValid()
	if !baseOK || !containsSequence(logs, expected) {
		// Either the primary's base block is corrupt, or the logs moved on
		// past it (Windows started them afresh after a later flush whose
		// base block write did not finish). In both cases the kernel takes
		// the base block copy of the log that starts the chain.
		src := g.baseBlockSource(logs, expected, baseOK)
		if src < 0 {
			return nil, fmt.Errorf("%w: no log entry continues from sequence %d and no log base block can replace the primary's (%s)",
				ErrLogsUnusable, expected, g.problems())
		}
		copy(out[:min(g.headers[src].dataOffset, BaseBlockSize)], g.logs[src])
		binary.LittleEndian.PutUint32(out[regfFileTypeOffset:], FileTypePrimary)
		expected = g.headers[src].sequence
		g.rep.BaseBlockFromLog = src
	}

	var last *hvleEntry
	started := false
replay:
	for _, l := range logs {
		lr := &g.rep.Logs[l.index]
		applied := 0
	entries:
		for k := range l.entries {
			e := &l.entries[k]
			switch {
			case e.sequence < expected && applied == 0:
				continue // already in the primary
			case e.sequence < expected:
				break entries // an older entry left over from the log's previous use
			case e.sequence > expected:
				if started || applied > 0 {
					g.rep.Stopped = fmt.Sprintf("sequence gap in log #%d at byte 0x%x: expected %d, found %d", l.index, e.fileOffset, expected, e.sequence)
				} else {
					g.rep.Stopped = fmt.Sprintf("log #%d starts at sequence %d, expected %d", l.index, e.sequence, expected)
				}
				break replay
			default:
				var err error
				if out, err = g.grow(out, e.hiveBinsDataSize); err != nil {
					g.rep.Stopped = fmt.Sprintf("log #%d entry %d at byte 0x%x: %v", l.index, e.sequence, e.fileOffset, err)
					break replay
				}
				for _, p := range e.pages {
					copy(out[BaseBlockSize+int(p.offset):], p.data)
					lr.PagesApplied++
					g.rep.PagesApplied++
					g.rep.BytesApplied += int64(len(p.data))
				}
				if !started {
					g.rep.StartSequence = e.sequence
					started = true
				}
				g.rep.EndSequence = e.sequence
				g.rep.EntriesApplied++
				lr.EntriesApplied++
				lr.Used = true
				applied++
				last = e
				expected++
			}
		}
	}
	if last == nil {
		return nil, fmt.Errorf("%w: no log entry with sequence %d (%s)", ErrLogsUnusable, expected, g.problems())
	}
	if _, err := parseBins(out[BaseBlockSize : BaseBlockSize+int(last.hiveBinsDataSize)]); err != nil {
		g.rep.Warning = "recovered hive bins are damaged: " + err.Error()
	}
	binary.LittleEndian.PutUint32(out[baseBlockFlagsOffset:], last.flags)
	if err := finish(out, last.sequence, last.hiveBinsDataSize); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogsUnusable, err)
	}
	return out, nil
}

// baseBlockSource picks the log whose base block copy starts the replay: a
// valid copy whose sequence number is newer than the primary's (any, when
// the primary's is corrupt) and which the log's own entries continue; the
// earliest such. It returns -1 when there is none.
func (g *replay) baseBlockSource(logs []newLog, primarySeq uint32, primaryOK bool) int {
	best := -1
	for _, l := range logs {
		h := g.headers[l.index]
		if !h.valid || (primaryOK && h.sequence <= primarySeq) {
			continue
		}
		if !containsSequence([]newLog{l}, h.sequence) {
			continue
		}
		if best < 0 || h.sequence < g.headers[best].sequence {
			best = l.index
		}
	}
	return best
}

func containsSequence(logs []newLog, seq uint32) bool {
	for _, l := range logs {
		for _, e := range l.entries {
			if e.sequence == seq {
				return true
			}
		}
	}
	return false
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
