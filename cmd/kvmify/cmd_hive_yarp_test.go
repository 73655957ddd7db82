package main

import (
	"bytes"
	"encoding/json"
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

// runKvmify runs the built binary and returns stdout, stderr and the exit
// code.
func runKvmify(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// hivexAllLines is libhivex's view of every key and value of a hive (via
// python3-hivex), sorted.
func hivexAllLines(t *testing.T, hive string) []string {
	t.Helper()
	py := testutil.RequirePython3Module(t, "hivex")
	out, err := exec.Command(py, filepath.Join(testutil.RepoRoot(), "registry", "testdata", "hivexdump.py"), hive).Output()
	if err != nil {
		t.Fatalf("hivex dump of %s: %v", hive, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	return lines
}

// TestHiveCheckReportsLeaks: Windows 10's own recovery of yarp's
// NewDirtyHive1 holds 8 allocated cells nothing references; "hive check"
// lists them as leaks and exits 0, in text and --json.
func TestHiveCheckReportsLeaks(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	hive := testutil.CorpusFile(t, "yarp-hives/NewDirtyHive1/RecoveredHive_Windows10")
	out, errs, code := runKvmify(t, bin, "hive", "check", hive)
	if code != 0 || !strings.Contains(out, "8 leaked cell(s)") || strings.Count(out, "leak: cell at byte 0x") != 8 {
		t.Errorf("check: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	out, errs, code = runKvmify(t, bin, "hive", "check", "--json", hive)
	var rep hiveCheckJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("check --json: exit %d, %v, stdout %q, stderr %q", code, err, out, errs)
	}
	if rep.ProblemTotal != 0 || len(rep.Problems) != 0 || rep.LeakTotal != 8 || len(rep.Leaks) != 8 || rep.LeakedBytes <= 0 {
		t.Errorf("check --json: %+v", rep)
	}
	for _, l := range rep.Leaks {
		if l.Offset < 4096 || l.Structure != "cell" {
			t.Errorf("leak %+v", l)
		}
	}
}

// TestHiveRecoverNewDirtyMatchesWindows recovers yarp's NewDirtyHive1 (LOG1
// then LOG2) and NewDirtyHive2 (LOG2 only: LOG1 is older than the primary)
// with the binary; both must equal the file Windows 10 wrote when it
// recovered NewDirtyHive1: hive bins byte for byte (as yarp's own test
// requires) and key for key as libhivex reads them.
func TestHiveRecoverNewDirtyMatchesWindows(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	windows := testutil.CorpusFile(t, "yarp-hives/NewDirtyHive1/RecoveredHive_Windows10")
	want := hivexAllLines(t, windows)
	wantBytes, err := os.ReadFile(windows)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir, used string
	}{
		{"NewDirtyHive1", "applied 4 entries (sequence 2..5)"},
		{"NewDirtyHive2", "applied 3 entries (sequence 3..5)"},
	} {
		t.Run(c.dir, func(t *testing.T) {
			in := testutil.CorpusFile(t, "yarp-hives/"+c.dir+"/NewDirtyHive")
			sum := testutil.FileSHA256(t, in)
			out := filepath.Join(t.TempDir(), "recovered")
			stdout, stderr, code := runKvmify(t, bin, "hive", "recover", in, "-o", out)
			if code != 0 || !strings.Contains(stdout, c.used) {
				t.Fatalf("recover: exit %d\n%s%s", code, stdout, stderr)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[4096:], wantBytes[4096:]) {
				t.Error("recovered hive bins differ from Windows 10's")
			}
			if lines := hivexAllLines(t, out); !slices.Equal(lines, want) {
				t.Errorf("libhivex reads %d lines from ours, %d from Windows'", len(lines), len(want))
			}
			if before := hivexAllLines(t, in); slices.Equal(before, want) {
				t.Error("the primary already equals Windows' result: the test proves nothing")
			}
			if testutil.FileSHA256(t, in) != sum {
				t.Error("the input hive changed")
			}
		})
	}
}

// TestHiveRecoverBadBaseBlock: yarp's BadBaseBlockHive has a corrupt
// primary base block (bad checksum, minor version 1); its old-format LOG1
// carries the copy the specification says to rebuild it from. Its hive
// bins and log are those of OldDirtyHive, so the result must equal
// Windows 7's recovery of that hive key for key.
func TestHiveRecoverBadBaseBlock(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	in := testutil.CorpusFile(t, "yarp-hives/BadBaseBlockHive/BadBaseBlockHive")
	windows := testutil.CorpusFile(t, "yarp-hives/OldDirtyHive/RecoveredHive_Windows7")
	out := filepath.Join(t.TempDir(), "recovered")
	stdout, stderr, code := runKvmify(t, bin, "hive", "recover", in, "-o", out)
	if code != 0 || !strings.Contains(stdout, "base block taken from BadBaseBlockHive.LOG1") {
		t.Fatalf("recover: exit %d\n%s%s", code, stdout, stderr)
	}
	if got, want := hivexAllLines(t, out), hivexAllLines(t, windows); !slices.Equal(got, want) {
		t.Errorf("libhivex reads %d lines from ours, %d from Windows 7's", len(got), len(want))
	}
	if _, _, code := runKvmify(t, bin, "hive", "check", out); code != 0 {
		t.Errorf("check of the recovered hive: exit %d", code)
	}
}

// TestHiveRecoverRefusesBadLogs: yarp's BadLogHive1..3 are dirty hives
// whose logs are damaged (bad base block checksum in either format, a
// missing dirty vector); yarp refuses all three and so must kvmify,
// writing nothing.
func TestHiveRecoverRefusesBadLogs(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	for _, d := range []string{"BadLogHive1", "BadLogHive2", "BadLogHive3"} {
		t.Run(d, func(t *testing.T) {
			in := testutil.CorpusFile(t, "yarp-hives/"+d+"/BadLogHive")
			out := filepath.Join(t.TempDir(), "recovered")
			stdout, stderr, code := runKvmify(t, bin, "hive", "recover", in, "-o", out)
			if code != 1 || !strings.Contains(stderr, "unusable") {
				t.Errorf("recover: exit %d\n%s%s", code, stdout, stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output written despite the refusal (%v)", err)
			}
		})
	}
}

// TestHiveExportSharedLists: in yarp's BadListHive two keys share one
// subkey list, in BadSubkeyHive one key node; that is no loop, and export
// lists every key libhivex lists.
func TestHiveExportSharedLists(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	for _, name := range []string{"BadListHive", "BadSubkeyHive"} {
		t.Run(name, func(t *testing.T) {
			hive := testutil.CorpusFile(t, "yarp-hives/"+name)
			stdout, stderr, code := runKvmify(t, bin, "hive", "export", "--json", hive)
			if code != 0 {
				t.Fatalf("export: exit %d: %s", code, stderr)
			}
			var got, want []string
			for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
				var k jsonKey
				if err := json.Unmarshal([]byte(l), &k); err != nil {
					t.Fatal(err)
				}
				got = append(got, k.Path)
			}
			for _, l := range hivexAllLines(t, hive) {
				var k struct {
					K string  `json:"k"`
					V *string `json:"v"`
				}
				if err := json.Unmarshal([]byte(l), &k); err != nil {
					t.Fatal(err)
				}
				if k.V == nil {
					want = append(want, k.K)
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) || len(got) != 7 {
				t.Errorf("export lists %q, libhivex %q", got, want)
			}
		})
	}
}
