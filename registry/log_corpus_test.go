package registry

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// readCorpus reads corpus files, skipping the test when one is absent.
func readCorpus(t *testing.T, names ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(testutil.CorpusFile(t, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// sortedDump is kvmifyDump of a hive held in memory, sorted.
func sortedDump(t *testing.T, hive []byte) []string {
	t.Helper()
	h, err := Open(hive)
	if err != nil {
		t.Fatal(err)
	}
	d := kvmifyDump(t, h)
	sort.Strings(d)
	return d
}

// writeTemp stores b in the test's temp dir for the external oracles.
func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRecoverOldDirtyMatchesWindows7 replays yarp-olddirty.LOG1 and compares
// every key, value name, type and data byte with the file Windows 7 itself
// produced when it recovered the same hive.
func TestRecoverOldDirtyMatchesWindows7(t *testing.T) {
	path := testutil.CorpusFile(t, "yarp-olddirty")
	in := readCorpus(t, "yarp-olddirty", "yarp-olddirty.LOG1", "yarp-olddirty.recovered-by-win7")
	primary, log, windows := in[0], in[1], in[2]

	out, rep, err := RecoverFile(path) // finds yarp-olddirty.LOG1 beside it
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep)
	if rep.Format != LogFormatOld || len(rep.Logs) != 1 || rep.Logs[0].Name != "yarp-olddirty.LOG1" || !rep.Logs[0].Used || rep.PagesApplied == 0 {
		t.Errorf("report %+v", rep)
	}
	again, _, err := recoverUnchanged(t, primary, log)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("Recover on the bytes differs from RecoverFile (err %v)", err)
	}
	bb, err := ParseBaseBlock(out)
	if err != nil {
		t.Fatal(err)
	}
	if bb.Dirty() || !bb.ChecksumValid() || !rep.Clean {
		t.Errorf("result not clean: sequences %d/%d, checksum valid %v", bb.PrimarySequence, bb.SecondarySequence, bb.ChecksumValid())
	}
	h, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictCheck(h); err != nil {
		t.Errorf("recovered hive fails Check: %v", err)
	}

	want := sortedDump(t, windows)
	got := sortedDump(t, out)
	diffSorted(t, got, want)
	if before := sortedDump(t, primary); slices.Equal(before, want) {
		t.Fatal("the primary already equals the Windows result: the test proves nothing")
	}
	// The independent reader agrees on what we wrote.
	hx := hivexDump(t, writeTemp(t, "recovered", out))
	sort.Strings(hx)
	diffSorted(t, hx, want)
	t.Logf("%d keys and values equal to Windows 7's recovery", len(want))
}

// TestRecoverWin10Logs replays the Windows 10 1709 SYSTEM hive's LOG1 and
// LOG2: the primary stopped at sequence 1621 while the logs were restarted
// at 2107, so the replay starts from LOG1's base block copy and runs through
// LOG2 to 2130.
func TestRecoverWin10Logs(t *testing.T) {
	in := readCorpus(t, "win10-1709-x64.SYSTEM", "win10-1709-x64.SYSTEM.LOG1", "win10-1709-x64.SYSTEM.LOG2")
	primary, log1, log2 := in[0], in[1], in[2]

	out, rep, err := recoverUnchanged(t, primary, log1, log2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep)
	if rep.Format != LogFormatNew || rep.BaseBlockFromLog != 0 ||
		rep.StartSequence != 2107 || rep.EndSequence != 2130 || rep.EntriesApplied != 24 ||
		rep.Logs[0].EntriesApplied != 4 || rep.Logs[1].EntriesApplied != 20 || rep.Sequence != 2130 || !rep.Clean || rep.Stopped != "" || rep.Warning != "" {
		t.Errorf("report %+v", rep)
	}
	// Every entry of both logs carries Hash-1/Hash-2 values that our
	// Marvin32 reproduces: Windows is the oracle here.
	for i, want := range []int{4, 20} {
		if l := rep.Logs[i]; l.Entries != want || l.Problem != "" {
			t.Errorf("log #%d: %d valid entries (want %d), problem %q", i, l.Entries, want, l.Problem)
		}
	}
	swapped, _, err := recoverUnchanged(t, primary, log2, log1)
	if err != nil || !bytes.Equal(swapped, out) {
		t.Errorf("giving LOG2 before LOG1 changes the result (err %v)", err)
	}

	h, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictCheck(h); err != nil {
		t.Errorf("recovered hive fails Check: %v", err)
	}
	bb := h.BaseBlock()
	if bb.PrimarySequence != 2130 || bb.SecondarySequence != 2130 || !bb.ChecksumValid() {
		t.Errorf("base block sequences %d/%d checksum valid %v", bb.PrimarySequence, bb.SecondarySequence, bb.ChecksumValid())
	}

	// The logs changed the registry: some keys or values differ from what
	// the primary alone holds.
	before, after := sortedDump(t, primary), sortedDump(t, out)
	changed := 0
	for _, l := range after {
		if _, found := slices.BinarySearch(before, l); !found {
			if changed++; changed <= 3 {
				t.Logf("from the logs: %s", trunc(l))
			}
		}
	}
	if changed == 0 {
		t.Error("recovered hive reads the same as the primary: the logs were not applied")
	}
	pages := 0
	for off := BaseBlockSize; off+hbinAlignment <= min(len(out), len(primary)); off += hbinAlignment {
		if !bytes.Equal(out[off:off+hbinAlignment], primary[off:off+hbinAlignment]) {
			pages++
		}
	}
	t.Logf("%d keys/values new or changed, %d 4 KiB pages differ from the primary", changed, pages)
	if pages == 0 {
		t.Error("no hive bins page differs from the primary")
	}

	file := writeTemp(t, "SYSTEM", out)
	hx := hivexDump(t, file)
	sort.Strings(hx)
	diffSorted(t, hx, after)

	// hivexsh opens it and navigates.
	hivexsh := testutil.RequireTool(t, "hivexsh")
	cmd := exec.Command(hivexsh, file)
	cmd.Stdin = strings.NewReader("cd Select\nlsval\n")
	o, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(o), `"Current"=dword:`) {
		t.Errorf("hivexsh: %v\n%s", err, o)
	}
}

// TestRecoverWin10DamagedLogs damages the real logs: replay stops at the
// damage and what was applied still forms a valid hive, or the logs are
// reported unusable; it never panics.
func TestRecoverWin10DamagedLogs(t *testing.T) {
	in := readCorpus(t, "win10-1709-x64.SYSTEM", "win10-1709-x64.SYSTEM.LOG1", "win10-1709-x64.SYSTEM.LOG2", "yarp-olddirty.LOG1")
	primary, log1, log2, foreign := in[0], in[1], in[2], in[3]

	entries, err := parseHvleEntries(log2, logSectorSize)
	if err != nil || len(entries) < 5 {
		t.Fatalf("LOG2 entries: %d, %v", len(entries), err)
	}
	damaged := append([]byte(nil), log2...)
	damaged[entries[4].fileOffset+hvleHeaderSize+1] ^= 0xff // inside entry 2115
	out, rep, err := recoverUnchanged(t, primary, log1, damaged)
	if err != nil {
		t.Fatal(err)
	}
	if rep.EndSequence != entries[3].sequence {
		t.Errorf("replay ended at %d, want %d (the entry before the damaged one)", rep.EndSequence, entries[3].sequence)
	}
	h, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictCheck(h); err != nil {
		t.Errorf("partially recovered hive fails Check: %v", err)
	}

	for name, logs := range map[string][][]byte{
		"foreign old-format log": {foreign},
		"truncated logs":         {log1[:700], log2[:1000]},
		"base blocks only":       {log1[:logSectorSize*2], log2[:logSectorSize*2]},
	} {
		t.Run(name, func(t *testing.T) {
			_, rep, err := recoverUnchanged(t, primary, logs...)
			if !errors.Is(err, ErrLogsUnusable) || rep == nil {
				t.Fatalf("err = %v, want ErrLogsUnusable with a report", err)
			}
			t.Log(err)
		})
	}
}

// BenchmarkRecoverWin10 measures a full replay of the Windows 10 hive's
// 24 log entries (Marvin32 over both logs, page copies, a 12 MB copy).
func BenchmarkRecoverWin10(b *testing.B) {
	var in [][]byte
	for _, n := range []string{"win10-1709-x64.SYSTEM", "win10-1709-x64.SYSTEM.LOG1", "win10-1709-x64.SYSTEM.LOG2"} {
		d, err := os.ReadFile(testutil.CorpusFile(b, n))
		if err != nil {
			b.Fatal(err)
		}
		in = append(in, d)
	}
	b.SetBytes(int64(len(in[0]) + len(in[1]) + len(in[2])))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Recover(in[0], in[1], in[2]); err != nil {
			b.Fatal(err)
		}
	}
}
