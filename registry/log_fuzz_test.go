package registry

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// fuzzPrimary is the dirty hive fuzzed logs are replayed onto.
func fuzzPrimary() []byte { return withSequences(minimalWithStart(3), 2, 1) }

// fixLogSums recomputes the checksum of a log's base block copy and the
// hashes of every well-framed HvLE entry, so the fuzzer reaches the replay
// logic behind them instead of stopping at a mismatch.
func fixLogSums(log []byte) []byte {
	log = append([]byte(nil), log...)
	if len(log) >= logSectorSize {
		resumLogSector(log)
	}
	le := binary.LittleEndian
	for off := logSectorSize; off+hvleHeaderSize <= len(log); {
		e := log[off:]
		size := le.Uint32(e[hvleSizeOffset:])
		if [4]byte(e[:4]) != hvleSignature || size < hvleHeaderSize || size%logSectorSize != 0 || uint64(size) > uint64(len(e)) {
			break
		}
		le.PutUint64(e[hvleHash1Offset:], Marvin32(logEntryHashSeed, e[hvleHeaderSize:size]))
		le.PutUint64(e[hvleHash2Offset:], Marvin32(logEntryHashSeed, e[:hvleHash2Length]))
		off += int(size)
	}
	return log
}

// checkRecovery asserts what must hold for any log input: no input is
// modified, growth is bounded, and a success is a clean hive.
func checkRecovery(t *testing.T, primary []byte, logs ...[]byte) {
	t.Helper()
	out, rep, err := recoverUnchanged(t, primary, logs...)
	limit := len(primary)
	for _, l := range logs {
		limit += len(l)
	}
	if err != nil {
		if out != nil || rep == nil {
			t.Fatalf("failure returned %d bytes and report %v", len(out), rep)
		}
		return
	}
	if len(out) > limit {
		t.Fatalf("recovered hive of %d bytes from %d bytes of input", len(out), limit)
	}
	bb, err := ParseBaseBlock(out)
	if err != nil {
		t.Fatalf("recovered base block: %v", err)
	}
	if bb.Dirty() || !bb.ChecksumValid() || !rep.Clean || rep.EntriesApplied == 0 {
		t.Fatalf("recovery succeeded but the result is not clean: %+v", rep)
	}
	if uint64(BaseBlockSize)+uint64(bb.HiveBinsDataSize) > uint64(len(out)) {
		t.Fatalf("hive bins data size %d exceeds the %d-byte result", bb.HiveBinsDataSize, len(out))
	}
}

func FuzzRecoverNew(f *testing.F) {
	primary := fuzzPrimary()
	grow := synthEntry{sequence: 1, hbinsSize: 2 * hbinAlignment, pages: []synthPage{{0, bins(minimalWithStart(8))}, {hbinAlignment, secondBin()}}}
	f.Add(newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5)), newFormatLog(primary, 3, entryStart(3, 6)), false)
	f.Add(newFormatLog(primary, 1, grow), []byte{}, false)
	f.Add(newFormatLog(primary, 10, entryStart(10, 4)), newFormatLog(primary, 11, entryStart(11, 5)), false)
	f.Add(newFormatLog(primary, 1, synthEntry{sequence: 1, hbinsSize: hbinAlignment, pages: []synthPage{{16, []byte("xy")}, {4000, make([]byte, 96)}}}), []byte{}, true)
	f.Fuzz(func(t *testing.T, log1, log2 []byte, fix bool) {
		if fix {
			log1, log2 = fixLogSums(log1), fixLogSums(log2)
		}
		checkRecovery(t, primary, log1, log2)
	})
}

func FuzzRecoverOld(f *testing.F) {
	primary := fuzzPrimary()
	f.Add(oldFormatLog(primary, minimalWithStart(7), 2, hbinAlignment, pageOf(minVKDword)), false)
	f.Add(oldFormatLog(primary, minimalWithStart(7), 2, hbinAlignment, 0, 1, 2, 3, 4, 5, 6, 7), false)
	f.Add(oldFormatLog(primary, append(minimalWithStart(7), secondBin()...), 2, 2*hbinAlignment, 8, 9, 10, 11, 12, 13, 14, 15), true)
	f.Fuzz(func(t *testing.T, log []byte, fix bool) {
		if fix {
			log = fixLogSums(log)
		}
		checkRecovery(t, primary, log)
	})
}

// FuzzRecoverPrimary varies the primary instead, against fixed valid logs
// of both formats.
func FuzzRecoverPrimary(f *testing.F) {
	primary := fuzzPrimary()
	newLog := newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5))
	oldLog := oldFormatLog(primary, minimalWithStart(7), 2, hbinAlignment, pageOf(minVKDword))
	f.Add(primary)
	f.Add(primary[:BaseBlockSize])
	f.Add(withSequences(minimalWithStart(3), 7, 1))
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) >= BaseBlockSize {
			p = withSequences(p, binary.LittleEndian.Uint32(p[regfPrimarySequenceOffset:]), binary.LittleEndian.Uint32(p[regfSecondarySequenceOffset:]))
		}
		for _, log := range [][]byte{newLog, oldLog} {
			_, _, _ = recoverUnchanged(t, p, log)
		}
	})
}

// TestFixLogSumsKeepsValidLogs guards the fuzz helper: it must not change a
// log that is already right, or the seeds would not be what they claim.
func TestFixLogSumsKeepsValidLogs(t *testing.T) {
	primary := fuzzPrimary()
	log := newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5))
	if !bytes.Equal(fixLogSums(log), log) {
		t.Fatal("fixLogSums changed a valid log")
	}
}
