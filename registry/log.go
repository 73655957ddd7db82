package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Transaction log recovery. A hive whose last write did not complete (its
// base block's sequence numbers differ or its checksum is wrong) holds an
// older state than the one Windows last saw; the newest state lives in the
// logs beside it (FILE.LOG for XP, FILE.LOG1/FILE.LOG2 since Vista). Recover
// replays them in memory onto a copy of the primary file, the way the kernel
// does at hive load, so the result is what Windows would have used.

// Sentinels for errors.Is on recovery failures.
var (
	// ErrDirtyNoLogs marks a dirty hive for which no transaction log was given.
	ErrDirtyNoLogs = errors.New("registry: dirty hive and no transaction logs")
	// ErrLogsUnusable marks a dirty hive none of whose logs can bring it up to date.
	ErrLogsUnusable = errors.New("registry: dirty hive and its transaction logs are unusable")
)

// Layout shared by both log formats.
const (
	// logSectorSize is the unit of log files: the base block copy fills the
	// first sector, and everything after starts on a sector boundary.
	logSectorSize = 512

	// baseBlockFlagsOffset is the Windows 10 base block Flags field (KTM
	// state), which a new-format log entry carries and recovery restores.
	baseBlockFlagsOffset = 144

	// maxClusteringFactor is the largest sector size Windows records in a
	// base block, in 512-byte units (4 KiB sectors).
	maxClusteringFactor = 8

	// maxHiveBinsDataSize bounds any hive bins data size read from a log:
	// Windows caps hives at 2 GiB, and a larger claim is hostile.
	maxHiveBinsDataSize = 1 << 31
)

// LogFormat is the on-disk format of a transaction log file.
type LogFormat int

// Log formats.
const (
	LogFormatUnknown LogFormat = iota // empty, truncated or not a log
	LogFormatOld                      // base block, "DIRT" dirty vector, dirty 512-byte pages (XP to Windows 8)
	LogFormatNew                      // base block, "HvLE" log entries (Windows 8.1 and later)
)

var logFormatNames = [...]string{
	LogFormatUnknown: "unknown",
	LogFormatOld:     "old (dirty vector)",
	LogFormatNew:     "new (HvLE entries)",
}

func (f LogFormat) String() string {
	if f >= 0 && int(f) < len(logFormatNames) {
		return logFormatNames[f]
	}
	return fmt.Sprintf("LogFormat(%d)", int(f))
}

// RecoveryReport says what Recover found and did.
type RecoveryReport struct {
	Dirty       bool   // the primary needed recovery
	DirtyReason string // why it was dirty, or ""
	Format      LogFormat
	Logs        []LogReport // one per log given, in the order given

	// BaseBlockFromLog is the index of the log whose base block copy replaced
	// the primary's (the primary's was corrupt or older than every log), or -1.
	BaseBlockFromLog int

	// StartSequence and EndSequence are the sequence numbers of the first and
	// last log entries applied (new format); for the old format both are the
	// log's sequence number.
	StartSequence, EndSequence uint32
	EntriesApplied             int   // HvLE entries (new format) or logs (old format) applied
	PagesApplied               int   // dirty page references (new) or 512-byte dirty pages (old) written
	BytesApplied               int64 // bytes of page data written

	Sequence         uint32 // both sequence numbers of the recovered base block
	HiveBinsDataSize uint32 // of the recovered base block
	OldSize, NewSize int    // file length before and after recovery

	// Stopped says why replay ended before the logs ran out (an invalid
	// entry, a sequence gap, a bad hive bin), or "".
	Stopped string
	// Warning names a damaged hive bin left in the result (Windows heals
	// those after a new-format replay; kvmify only reports them), or "".
	Warning string
	Clean   bool // the result's base block is clean (sequence numbers equal, checksum valid)
}

// LogReport describes one transaction log given to Recover.
type LogReport struct {
	Index  int
	Name   string // file name when known (set by RecoverFile), else ""
	Format LogFormat
	Size   int

	HeaderValid bool   // the base block copy has a good checksum and equal sequence numbers
	Sequence    uint32 // the base block copy's primary sequence number

	Entries                     int    // valid HvLE entries found before the first invalid one (new format)
	FirstSequence, LastSequence uint32 // of those entries
	DirtyPages                  int    // dirty pages listed (old format)

	Used           bool // something from this log was applied
	EntriesApplied int
	PagesApplied   int

	Problem string // why the log, or its tail, could not be used, or ""
}

// String renders the report for people, one fact per line.
func (r *RecoveryReport) String() string {
	var b strings.Builder
	if !r.Dirty {
		fmt.Fprintf(&b, "hive is clean (sequence %d); nothing to recover\n", r.Sequence)
		return b.String()
	}
	fmt.Fprintf(&b, "hive was dirty: %s\n", r.DirtyReason)
	for _, l := range r.Logs {
		name := l.Name
		if name == "" {
			name = fmt.Sprintf("log #%d", l.Index)
		}
		fmt.Fprintf(&b, "%s: %s format, %d bytes", name, l.Format, l.Size)
		if l.HeaderValid {
			fmt.Fprintf(&b, ", base block sequence %d", l.Sequence)
		}
		switch {
		case l.Format == LogFormatNew && l.Entries > 0:
			fmt.Fprintf(&b, ", %d valid entries (sequence %d..%d)", l.Entries, l.FirstSequence, l.LastSequence)
		case l.Format == LogFormatOld:
			fmt.Fprintf(&b, ", %d dirty pages", l.DirtyPages)
		}
		if l.Used {
			fmt.Fprintf(&b, "; applied %d entries, %d pages", l.EntriesApplied, l.PagesApplied)
		} else {
			b.WriteString("; not applied")
		}
		if l.Problem != "" {
			fmt.Fprintf(&b, " (%s)", l.Problem)
		}
		b.WriteByte('\n')
	}
	if i := r.BaseBlockFromLog; i >= 0 && i < len(r.Logs) {
		name := r.Logs[i].Name
		if name == "" {
			name = fmt.Sprintf("log #%d", i)
		}
		fmt.Fprintf(&b, "base block taken from %s (newer than the primary's)\n", name)
	}
	if r.EntriesApplied > 0 {
		fmt.Fprintf(&b, "applied %d entries (sequence %d..%d), %d pages, %d bytes\n",
			r.EntriesApplied, r.StartSequence, r.EndSequence, r.PagesApplied, r.BytesApplied)
	}
	if r.Stopped != "" {
		fmt.Fprintf(&b, "replay stopped: %s\n", r.Stopped)
	}
	if r.Warning != "" {
		fmt.Fprintf(&b, "warning: %s\n", r.Warning)
	}
	fmt.Fprintf(&b, "result: sequence %d/%d, hive bins data size %d, file %d -> %d bytes, clean %v\n",
		r.Sequence, r.Sequence, r.HiveBinsDataSize, r.OldSize, r.NewSize, r.Clean)
	return b.String()
}

// Recover replays transaction logs onto a copy of a dirty primary hive file
// and returns the recovered, clean hive file. It never modifies primary or
// logs. Logs are given in their natural order (LOG, LOG1, LOG2); empty or
// foreign ones are reported and skipped. A clean primary is returned as an
// unchanged copy. A dirty primary without logs fails with ErrDirtyNoLogs, and
// one whose logs cannot be applied with ErrLogsUnusable (both also match
// ErrDirtyHive); the report is returned in every case except malformed
// primary input.
func Recover(primary []byte, logs ...[]byte) ([]byte, *RecoveryReport, error) {
	pbb, err := ParseBaseBlock(primary)
	if err != nil {
		// A base block whose checksum is wrong is corrupt, whatever its
		// fields say (yarp's BadBaseBlockHive has minor version 1): the
		// specification has it rebuilt from a log's copy, so its values
		// are not judged. With a good checksum, bad values are the hive's.
		raw, rawErr := decodeBaseBlock(primary)
		if rawErr != nil || raw.ChecksumValid() || len(logs) == 0 {
			return nil, nil, err
		}
		pbb = raw
	}
	rep := &RecoveryReport{BaseBlockFromLog: -1, OldSize: len(primary), NewSize: len(primary),
		Sequence: pbb.SecondarySequence, HiveBinsDataSize: pbb.HiveBinsDataSize}
	switch {
	case !pbb.ChecksumValid():
		rep.Dirty = true
		rep.DirtyReason = fmt.Sprintf("base block checksum 0x%08x does not match its content (0x%08x)", pbb.Checksum, BaseBlockChecksum(primary))
	case pbb.Dirty():
		rep.Dirty = true
		rep.DirtyReason = fmt.Sprintf("sequence numbers differ (primary %d, secondary %d)", pbb.PrimarySequence, pbb.SecondarySequence)
	}
	if !rep.Dirty {
		rep.Clean = true
		return append([]byte(nil), primary...), rep, nil
	}
	if len(logs) == 0 {
		return nil, rep, recoveryError{ErrDirtyNoLogs}
	}
	out, err := replayLogs(primary, pbb, rep, logs)
	if err != nil {
		return nil, rep, recoveryError{err}
	}
	return out, rep, nil
}

// recoveryError is why a dirty hive could not be recovered; it matches
// ErrDirtyHive as well as its own sentinel, so callers that only ask
// "is this hive usable" need one check.
type recoveryError struct{ err error }

func (e recoveryError) Error() string   { return e.err.Error() }
func (e recoveryError) Unwrap() []error { return []error{e.err, ErrDirtyHive} }

// replayLogs recovers a dirty primary from its logs, filling in rep.
func replayLogs(primary []byte, pbb *BaseBlock, rep *RecoveryReport, logs [][]byte) ([]byte, error) {

	// Growth is bounded by the page data the logs can supply, so a hostile
	// hive bins data size cannot force a huge allocation.
	limit := len(primary)
	headers := make([]*logHeader, len(logs))
	for i, l := range logs {
		limit += len(l)
		headers[i] = parseLogHeader(l)
		rep.Logs = append(rep.Logs, LogReport{Index: i, Format: headers[i].format, Size: len(l),
			HeaderValid: headers[i].valid, Sequence: headers[i].sequence, Problem: headers[i].problem})
	}
	g := &replay{primary: primary, pbb: pbb, logs: logs, headers: headers, rep: rep, limit: limit}

	var out []byte
	var err error
	switch {
	case g.has(LogFormatNew):
		rep.Format = LogFormatNew
		out, err = g.recoverNew()
	case g.has(LogFormatOld):
		rep.Format = LogFormatOld
		out, err = g.recoverOld()
	default:
		err = fmt.Errorf("%w: no log is in a known format (%s)", ErrLogsUnusable, g.problems())
	}
	if err != nil {
		return nil, err
	}
	final, err := ParseBaseBlock(out)
	if err != nil {
		return nil, fmt.Errorf("%w: recovered base block: %w", ErrLogsUnusable, err)
	}
	rep.Sequence = final.PrimarySequence
	rep.HiveBinsDataSize = final.HiveBinsDataSize
	rep.NewSize = len(out)
	rep.Clean = !final.Dirty() && final.ChecksumValid()
	return out, nil
}

// replay carries the inputs and the report through one recovery.
type replay struct {
	primary []byte
	pbb     *BaseBlock
	logs    [][]byte
	headers []*logHeader
	rep     *RecoveryReport
	limit   int // the largest file the recovered hive may grow to
}

func (g *replay) has(f LogFormat) bool {
	for _, h := range g.headers {
		if h.format == f {
			return true
		}
	}
	return false
}

// problems summarizes why each log could not be used.
func (g *replay) problems() string {
	var parts []string
	for _, l := range g.rep.Logs {
		p := l.Problem
		if p == "" {
			p = "nothing applicable"
		}
		parts = append(parts, fmt.Sprintf("log #%d: %s", l.Index, p))
	}
	return strings.Join(parts, "; ")
}

// grow returns out extended with zeros to hold n hive bins data bytes, or an
// error when that exceeds what the logs could plausibly fill.
func (g *replay) grow(out []byte, n uint32) ([]byte, error) {
	need := BaseBlockSize + int(n)
	if n > maxHiveBinsDataSize || need > g.limit {
		return nil, fmt.Errorf("hive bins data size %d exceeds what the primary and its logs can hold", n)
	}
	if need <= len(out) {
		return out, nil
	}
	return append(out, make([]byte, need-len(out))...), nil
}

// finish writes the recovered base block: both sequence numbers equal, the
// final hive bins data size, file type primary and a fresh checksum.
func finish(out []byte, seq, hbinsSize uint32) error {
	bb, err := ParseBaseBlock(out)
	if err != nil {
		return err
	}
	bb.PrimarySequence, bb.SecondarySequence = seq, seq
	bb.HiveBinsDataSize = hbinsSize
	bb.FileType = FileTypePrimary
	bb.Encode(out[:BaseBlockSize])
	return nil
}

// logHeader is the decoded first sector of a log: a partial copy of the
// hive's base block as it was in memory when the log was written.
type logHeader struct {
	bb     *BaseBlock // nil when the sector does not decode
	format LogFormat
	// dataOffset is where the dirty vector or the first log entry starts:
	// the second sector, which is larger than 512 bytes on disks whose
	// clustering factor says so.
	dataOffset int
	valid      bool // checksum right and sequence numbers equal
	sequence   uint32
	problem    string
}

// Signatures at the start of the second sector, which tell the formats apart
// even when the base block copy is damaged.
var (
	dirtSignature = [4]byte{'D', 'I', 'R', 'T'}
	hvleSignature = [4]byte{'H', 'v', 'L', 'E'}
)

func parseLogHeader(log []byte) *logHeader {
	h := &logHeader{dataOffset: logSectorSize}
	if len(log) < 2*logSectorSize {
		h.problem = fmt.Sprintf("too short for a log (%d bytes)", len(log))
		return h
	}
	// Only the first sector of the base block is stored; the checksum covers
	// bytes that all lie inside its first 512 bytes.
	var block [BaseBlockSize]byte
	copy(block[:], log[:logSectorSize])
	bb, err := ParseBaseBlock(block[:])
	if err == nil {
		if cf := int(bb.ClusteringFactor); cf > 1 && cf <= maxClusteringFactor && !hasLogSignature(log, logSectorSize) && hasLogSignature(log, cf*logSectorSize) {
			h.dataOffset = cf * logSectorSize
		}
	}
	switch [4]byte(log[h.dataOffset : h.dataOffset+4]) {
	case dirtSignature:
		h.format = LogFormatOld
	case hvleSignature:
		h.format = LogFormatNew
	}
	if err != nil {
		h.problem = err.Error()
		return h
	}
	h.bb = bb
	h.sequence = bb.PrimarySequence
	if h.format == LogFormatUnknown {
		switch bb.FileType {
		case FileTypeLog:
			h.format = LogFormatOld
		case FileTypeLogNew:
			h.format = LogFormatNew
		}
	}
	switch {
	case !bb.ChecksumValid():
		h.problem = fmt.Sprintf("base block copy has a bad checksum (0x%08x, want 0x%08x)", bb.Checksum, BaseBlockChecksum(block[:]))
	case bb.Dirty():
		h.problem = fmt.Sprintf("base block copy sequence numbers differ (%d/%d): the log write did not complete", bb.PrimarySequence, bb.SecondarySequence)
	case bb.FileType != FileTypeLog && bb.FileType != FileTypeLogNew:
		h.problem = fmt.Sprintf("base block copy has file type %d, not a log", bb.FileType)
	default:
		h.valid = true
	}
	return h
}

// hasLogSignature reports whether a dirty vector or a log entry starts at off.
func hasLogSignature(log []byte, off int) bool {
	if off+4 > len(log) {
		return false
	}
	sig := [4]byte(log[off : off+4])
	return sig == dirtSignature || sig == hvleSignature
}

// le32 reads a little-endian dword; callers have checked the bounds.
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
