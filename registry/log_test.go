package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// startValue opens a recovered minimal hive, checks it and returns its
// Services\Start DWORD.
func startValue(t *testing.T, hive []byte) uint32 {
	t.Helper()
	h, err := Open(hive)
	if err != nil {
		t.Fatalf("open recovered hive: %v", err)
	}
	if err := h.Check(); err != nil {
		t.Fatalf("recovered hive fails Check: %v", err)
	}
	if dirty, why := h.Dirty(); dirty {
		t.Fatalf("recovered hive is still dirty: %s", why)
	}
	k, err := h.Lookup(minChildName)
	if err != nil {
		t.Fatal(err)
	}
	v, err := k.Value("Start")
	if err != nil {
		t.Fatal(err)
	}
	n, err := v.Uint32()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sums hashes each input so a test can prove Recover left them alone.
func sums(in ...[]byte) [][32]byte {
	var out [][32]byte
	for _, b := range in {
		out = append(out, sha256.Sum256(b))
	}
	return out
}

// recoverUnchanged runs Recover and fails the test if any input changed.
func recoverUnchanged(t *testing.T, primary []byte, logs ...[]byte) ([]byte, *RecoveryReport, error) {
	t.Helper()
	before := sums(append([][]byte{primary}, logs...)...)
	out, rep, err := Recover(primary, logs...)
	if after := sums(append([][]byte{primary}, logs...)...); !slices.Equal(before, after) {
		t.Fatal("Recover modified its input")
	}
	if out != nil && len(primary) > 0 && &out[0] == &primary[0] {
		t.Fatal("Recover returned its input slice instead of a copy")
	}
	return out, rep, err
}

// entryStart is a one-page entry that rewrites the minimal hive's only bin
// so Services\Start becomes v.
func entryStart(seq, v uint32) synthEntry {
	return synthEntry{sequence: seq, hbinsSize: hbinAlignment, pages: []synthPage{{0, bins(minimalWithStart(v))}}}
}

func TestRecoverCleanHiveIsCopied(t *testing.T) {
	hive := minimalHive()
	out, rep, err := recoverUnchanged(t, hive, newFormatLog(hive, 1, entryStart(1, 9)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Dirty || !rep.Clean || rep.EntriesApplied != 0 || !bytes.Equal(out, hive) {
		t.Fatalf("clean hive: report %+v, output equal %v", rep, bytes.Equal(out, hive))
	}
}

func TestRecoverDirtyWithoutLogs(t *testing.T) {
	_, rep, err := recoverUnchanged(t, withSequences(minimalHive(), 2, 1))
	if !errors.Is(err, ErrDirtyNoLogs) || !errors.Is(err, ErrDirtyHive) {
		t.Fatalf("err = %v, want ErrDirtyNoLogs and ErrDirtyHive", err)
	}
	if rep == nil || !rep.Dirty || !strings.Contains(rep.DirtyReason, "sequence numbers differ") {
		t.Fatalf("report %+v", rep)
	}
}

func TestRecoverNewFormatAppliesEntriesInOrder(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	log := newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5))
	out, rep, err := recoverUnchanged(t, primary, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 5 {
		t.Errorf("Start = %d, want 5 (from entry 2)", got)
	}
	if rep.EntriesApplied != 2 || rep.StartSequence != 1 || rep.EndSequence != 2 || rep.Sequence != 2 || !rep.Clean || rep.Format != LogFormatNew {
		t.Errorf("report: %+v", rep)
	}
	bb, _ := ParseBaseBlock(out)
	if bb.PrimarySequence != 2 || bb.SecondarySequence != 2 || !bb.ChecksumValid() || bb.FileType != FileTypePrimary {
		t.Errorf("recovered base block: %+v", bb)
	}
}

func TestRecoverNewFormatAcrossTwoLogs(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	log1 := newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5))
	log2 := newFormatLog(primary, 3, entryStart(3, 6), entryStart(4, 7))
	for _, order := range [][][]byte{{log1, log2}, {log2, log1}} {
		out, rep, err := recoverUnchanged(t, primary, order...)
		if err != nil {
			t.Fatal(err)
		}
		if got := startValue(t, out); got != 7 || rep.EntriesApplied != 4 || rep.EndSequence != 4 {
			t.Errorf("Start = %d, report %+v; want 7 after entries 1..4", got, rep)
		}
	}
}

func TestRecoverNewFormatStopsAtBadHash(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	log := newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5), entryStart(3, 6))
	second := logSectorSize + len(hvleBytes(entryStart(1, 4)))
	for _, tc := range []struct {
		name string
		at   int
	}{
		{"page data (Hash-1)", second + hvleHeaderSize + dirtyPageRefSize + 100},
		{"header (Hash-2)", second + hvleFlagsOffset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := append([]byte(nil), log...)
			bad[tc.at] ^= 0x40
			out, rep, err := recoverUnchanged(t, primary, bad)
			if err != nil {
				t.Fatal(err)
			}
			if got := startValue(t, out); got != 4 || rep.EndSequence != 1 {
				t.Errorf("Start = %d, end sequence %d; want only entry 1 applied", got, rep.EndSequence)
			}
			if !strings.Contains(rep.Logs[0].Problem, "Hash") {
				t.Errorf("log problem %q does not name the hash", rep.Logs[0].Problem)
			}
		})
	}
}

func TestRecoverNewFormatStopsAtSequenceGap(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	out, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 1, entryStart(1, 4), entryStart(3, 6)))
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 4 || !strings.Contains(rep.Stopped, "gap") {
		t.Errorf("Start = %d, stopped %q; want entry 1 only and a gap", got, rep.Stopped)
	}
}

func TestRecoverNewFormatSkipsAppliedEntries(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 6, 5)
	out, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 3, entryStart(3, 8), entryStart(4, 9), entryStart(5, 4)))
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 4 || rep.EntriesApplied != 1 || rep.StartSequence != 5 {
		t.Errorf("Start = %d, report %+v; want only entry 5", got, rep)
	}
}

func TestRecoverNewFormatTakesNewerLogBaseBlock(t *testing.T) {
	// The primary stopped at 1; the log was restarted at 10 after a flush
	// whose base block write did not complete.
	primary := withSequences(minimalWithStart(3), 2, 1)
	out, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 10, entryStart(10, 4), entryStart(11, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 5 || rep.BaseBlockFromLog != 0 || rep.Sequence != 11 {
		t.Errorf("Start = %d, report %+v", got, rep)
	}
	// A log whose entries do not start at its own base block's sequence
	// cannot be trusted to continue the primary.
	_, _, err = recoverUnchanged(t, primary, newFormatLog(primary, 9, entryStart(10, 4)))
	if !errors.Is(err, ErrLogsUnusable) {
		t.Errorf("err = %v, want ErrLogsUnusable", err)
	}
}

func TestRecoverNewFormatRestoresCorruptBaseBlock(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 2)
	primary[regfChecksumOffset] ^= 1
	out, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 2, entryStart(2, 6)))
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 6 || rep.BaseBlockFromLog != 0 || !strings.Contains(rep.DirtyReason, "checksum") {
		t.Errorf("Start = %d, report %+v", got, rep)
	}
}

// secondBin is a 4 KiB hive bin at offset 4096 holding one free cell.
func secondBin() []byte {
	b := make([]byte, hbinAlignment)
	copy(b[hbinSignatureOffset:], hbinSignature[:])
	binary.LittleEndian.PutUint32(b[hbinOffsetOffset:], hbinAlignment)
	binary.LittleEndian.PutUint32(b[hbinSizeOffset:], hbinAlignment)
	binary.LittleEndian.PutUint32(b[hbinHeaderSize:], hbinAlignment-hbinHeaderSize)
	return b
}

func TestRecoverNewFormatGrowsFile(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	grow := synthEntry{sequence: 1, hbinsSize: 2 * hbinAlignment, pages: []synthPage{
		{0, bins(minimalWithStart(8))}, {hbinAlignment, secondBin()},
	}}
	out, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 1, grow))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != BaseBlockSize+2*hbinAlignment || rep.NewSize != len(out) || rep.HiveBinsDataSize != 2*hbinAlignment {
		t.Errorf("length %d, report %+v", len(out), rep)
	}
	if got := startValue(t, out); got != 8 {
		t.Errorf("Start = %d, want 8", got)
	}
}

func TestRecoverNewFormatRejectsHugeGrowth(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	huge := synthEntry{sequence: 1, hbinsSize: 1 << 30, pages: []synthPage{{0, bins(minimalWithStart(8))}}}
	_, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 1, huge))
	if !errors.Is(err, ErrLogsUnusable) || !strings.Contains(rep.Stopped, "exceeds") {
		t.Fatalf("err = %v, stopped %q; want the entry refused", err, rep.Stopped)
	}
}

// pageOf is the old-format dirty page index holding a cell offset.
func pageOf(cellOff uint32) int { return int(cellOff / oldLogPageSize) }

func TestRecoverOldFormat(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	log := oldFormatLog(primary, minimalWithStart(7), 2, hbinAlignment, pageOf(minVKDword))
	out, rep, err := recoverUnchanged(t, primary, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 7 {
		t.Errorf("Start = %d, want 7", got)
	}
	if rep.Format != LogFormatOld || rep.PagesApplied != 1 || rep.Sequence != 2 || !rep.Clean || rep.Logs[0].DirtyPages != 1 {
		t.Errorf("report %+v", rep)
	}
}

func TestRecoverOldFormatPicksApplicableLog(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	good := oldFormatLog(primary, minimalWithStart(7), 2, hbinAlignment, pageOf(minVKDword))
	// A log of another write: same hive, different last-written timestamp.
	other := append([]byte(nil), good...)
	other[regfLastWrittenOffset] ^= 1
	resumLogSector(other)

	out, rep, err := recoverUnchanged(t, primary, other, good)
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 7 || rep.Logs[0].Used || !rep.Logs[1].Used || !strings.Contains(rep.Logs[0].Problem, "timestamp") {
		t.Errorf("Start = %d, report %+v", got, rep)
	}
	if _, _, err := recoverUnchanged(t, primary, other); !errors.Is(err, ErrLogsUnusable) {
		t.Errorf("only a foreign log: err = %v, want ErrLogsUnusable", err)
	}
}

func TestRecoverOldFormatStopsAtBadDirtyBin(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	image := minimalWithStart(7)
	copy(image[BaseBlockSize:], "xbin") // the dirty bin header is garbage
	out, rep, err := recoverUnchanged(t, primary, oldFormatLog(primary, image, 2, hbinAlignment, 0, pageOf(minVKDword)))
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 3 || !strings.Contains(rep.Stopped, "invalid") || rep.PagesApplied != 0 {
		t.Errorf("Start = %d, report %+v; want nothing applied from the bad bin on", got, rep)
	}
}

func TestRecoverUnusableLogs(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	newLog := newFormatLog(primary, 1, entryStart(1, 4))
	oldLog := oldFormatLog(primary, minimalWithStart(7), 2, hbinAlignment, pageOf(minVKDword))
	badSum := append([]byte(nil), oldLog...)
	badSum[regfChecksumOffset] ^= 1
	unfinished := append([]byte(nil), oldLog...)
	binary.LittleEndian.PutUint32(unfinished[regfSecondarySequenceOffset:], 1)
	resumLogSector(unfinished)
	for name, logs := range map[string][][]byte{
		"empty":              {{}},
		"zeros":              {make([]byte, 4096)},
		"truncated new":      {newLog[:logSectorSize+hvleHeaderSize]},
		"truncated old":      {oldLog[:len(oldLog)-1]},
		"bad checksum old":   {badSum},
		"unfinished old log": {unfinished},
		"not a log":          {minimalHive()},
	} {
		t.Run(name, func(t *testing.T) {
			out, rep, err := recoverUnchanged(t, primary, logs...)
			if !errors.Is(err, ErrLogsUnusable) || !errors.Is(err, ErrDirtyHive) || out != nil || rep == nil {
				t.Fatalf("err = %v (out %d bytes); want ErrLogsUnusable and a report", err, len(out))
			}
			t.Logf("%v", err)
		})
	}
}

func TestFindLogsIgnoresCase(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"SYSTEM", "system.log1", "System.Log2", "SYSTEM.LOG3", "SOFTWARE.LOG", "SYSTEM.sav"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := FindLogs(filepath.Join(dir, "SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "system.log1"), filepath.Join(dir, "System.Log2")}
	if !slices.Equal(got, want) {
		t.Errorf("FindLogs = %q, want %q", got, want)
	}
}

func TestMatchLogNames(t *testing.T) {
	got := MatchLogNames("SAM", []string{"sam.LOG2", "SAM", "SAM.LOG", "SAM.LOG1.old", "sam.log1", "SYSTEM.LOG1"})
	if want := []string{"SAM.LOG", "sam.log1", "sam.LOG2"}; !slices.Equal(got, want) {
		t.Errorf("MatchLogNames = %q, want %q", got, want)
	}
}

func TestRecoverNewFormatReportsDamagedBin(t *testing.T) {
	primary := withSequences(minimalWithStart(3), 2, 1)
	bad := synthEntry{sequence: 1, hbinsSize: hbinAlignment, pages: []synthPage{{0, []byte("xbin")}}}
	_, rep, err := recoverUnchanged(t, primary, newFormatLog(primary, 1, bad))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Warning, "hbin") || !strings.Contains(rep.String(), "warning:") {
		t.Errorf("warning %q not reported:\n%s", rep.Warning, rep)
	}
}

// withClusteringFactor returns a copy of a hive file recorded as living on
// a disk with cf*512-byte sectors.
func withClusteringFactor(hive []byte, cf uint32) []byte {
	out := append([]byte(nil), hive...)
	binary.LittleEndian.PutUint32(out[regfClusteringFactorOffset:], cf)
	binary.LittleEndian.PutUint32(out[regfChecksumOffset:], BaseBlockChecksum(out))
	return out
}

// padTo appends zeros to b up to a multiple of n.
func padTo(b []byte, n int) []byte {
	for len(b)%n != 0 {
		b = append(b, 0)
	}
	return b
}

// TestRecoverFourKSectorLogs covers logs written to a disk with 4 KiB
// sectors (clustering factor 8): the base block copy fills the first 4 KiB
// sector, and the dirty vector, its pages and the log entries start on the
// next 4 KiB boundary.
func TestRecoverFourKSectorLogs(t *testing.T) {
	const cf = 8
	sector := cf * logSectorSize
	primary := withSequences(withClusteringFactor(minimalWithStart(3), cf), 2, 1)

	newLog := padTo(logBaseSector(primary, FileTypeLogNew, 1), sector)
	newLog = append(newLog, hvleBytes(entryStart(1, 4))...)
	newLog = append(newLog, hvleBytes(entryStart(2, 5))...)
	out, rep, err := recoverUnchanged(t, primary, newLog)
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 5 || rep.EntriesApplied != 2 {
		t.Errorf("new format: Start = %d, report %+v", got, rep)
	}

	image := minimalWithStart(7)
	page := pageOf(minVKDword)
	oldLog := padTo(logBaseSector(primary, FileTypeLog, 2), sector)
	oldLog = append(oldLog, dirtSignature[:]...)
	bitmap := make([]byte, hbinAlignment/oldLogPageSize/8)
	bitmap[page/8] |= 1 << (page % 8)
	oldLog = padTo(append(oldLog, bitmap...), sector)
	oldLog = append(oldLog, image[BaseBlockSize+page*oldLogPageSize:][:oldLogPageSize]...)
	out, rep, err = recoverUnchanged(t, primary, oldLog)
	if err != nil {
		t.Fatal(err)
	}
	if got := startValue(t, out); got != 7 || rep.PagesApplied != 1 {
		t.Errorf("old format: Start = %d, report %+v", got, rep)
	}
}
