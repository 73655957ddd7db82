package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// hivexDumpLines runs the registry package's hivex oracle script and renders
// its keys below prefix as "path|name|type|hex" lines, in the same shape as
// exportLines renders our JSON.
func hivexDumpLines(t *testing.T, hive, prefix string) []string {
	t.Helper()
	py := testutil.RequirePython3Module(t, "hivex")
	script := filepath.Join(testutil.RepoRoot(), "registry", "testdata", "hivexdump.py")
	out, err := exec.Command(py, script, hive).Output()
	if err != nil {
		t.Fatalf("hivex dump: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var l struct {
			K string  `json:"k"`
			V *string `json:"v"`
			T int     `json:"t"`
			D string  `json:"d"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if !strings.EqualFold(l.K, prefix) && !strings.HasPrefix(strings.ToUpper(l.K), strings.ToUpper(prefix)+`\`) {
			continue
		}
		if l.V == nil {
			lines = append(lines, l.K)
		} else {
			lines = append(lines, l.K+"|"+*l.V+"|"+strconv.Itoa(l.T)+"|"+l.D)
		}
	}
	return lines
}

var regTypeNumbers = map[string]int{
	"REG_NONE": 0, "REG_SZ": 1, "REG_EXPAND_SZ": 2, "REG_BINARY": 3, "REG_DWORD": 4,
	"REG_DWORD_BIG_ENDIAN": 5, "REG_LINK": 6, "REG_MULTI_SZ": 7, "REG_RESOURCE_LIST": 8,
	"REG_FULL_RESOURCE_DESCRIPTOR": 9, "REG_RESOURCE_REQUIREMENTS_LIST": 10, "REG_QWORD": 11,
}

// exportLines parses "hive export --json" output into the hivexDumpLines shape.
func exportLines(t *testing.T, out []byte) []string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var k struct {
			Path   string `json:"path"`
			Values []struct {
				Name string `json:"name"`
				Type string `json:"type"`
				Data string `json:"data"`
			} `json:"values"`
		}
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if k.Values == nil {
			t.Fatalf("line %q: values must be a list, even when empty", sc.Text())
		}
		lines = append(lines, k.Path)
		for _, v := range k.Values {
			n, ok := regTypeNumbers[v.Type]
			if !ok {
				t.Fatalf("unknown type name %q", v.Type)
			}
			lines = append(lines, k.Path+"|"+v.Name+"|"+strconv.Itoa(n)+"|"+v.Data)
		}
	}
	return lines
}

// TestHiveExportJSONMatchesHivex exports a subtree of the XP hive (with a
// differently-cased key path) and compares it line by line with hivex.
func TestHiveExportJSONMatchesHivex(t *testing.T) {
	hive := testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM")
	var out, errOut bytes.Buffer
	err := runHiveExport(context.Background(), hiveExportOptions{JSON: true, Stderr: &errOut}, []string{hive, `controlset001\SERVICES`}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if errOut.Len() != 0 {
		t.Errorf("unexpected stderr for a clean hive: %s", errOut.String())
	}
	got := exportLines(t, out.Bytes())
	want := hivexDumpLines(t, hive, `ControlSet001\Services`)
	if len(want) < 1000 {
		t.Fatalf("oracle found only %d lines", len(want))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		for i := 0; i < len(got) && i < len(want); i++ {
			if got[i] != want[i] {
				t.Fatalf("first difference at line %d:\n got  %.200s\n want %.200s", i, got[i], want[i])
			}
		}
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
}

// TestHiveCLI drives the built binary: export of a dirty hive warns on
// stderr, check fails with offsets on a damaged copy, and usage errors exit 2.
func TestHiveCLI(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	dirtyHive := testutil.CorpusFile(t, "yarp-olddirty")
	clean := testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM")
	sum := testutil.FileSHA256(t, clean)

	run := func(args ...string) (stdout, stderr string, code int) {
		cmd := exec.Command(bin, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}

	out, errs, code := run("hive", "export", dirtyHive)
	if code != 0 || !strings.Contains(errs, "dirty") || !strings.HasPrefix(out, "Windows Registry Editor Version 5.00\n") {
		t.Errorf("export of dirty hive: code %d, stderr %q, stdout %.80q", code, errs, out)
	}

	out, _, code = run("hive", "export", clean, `ControlSet001\Services\atapi`)
	if code != 0 || !strings.Contains(out, "[\\ControlSet001\\Services\\atapi]\n") || !strings.Contains(out, `"Start"=dword:00000000`) {
		t.Errorf("export atapi: code %d, stdout %.300q", code, out)
	}
	if _, errs, code = run("hive", "export", clean, `NoSuchKey`); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("missing key: code %d, stderr %q", code, errs)
	}

	if out, _, code = run("hive", "check", clean); code != 0 || !strings.Contains(out, "no problems") {
		t.Errorf("check clean: code %d, stdout %q", code, out)
	}

	// Damage a copy: turn the cell after the root key (the first cell) into
	// a free one, so whatever references it dangles.
	data, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(t.TempDir(), "damaged")
	le := binary.LittleEndian
	const firstCell = 4096 + 32
	second := firstCell + int(-int32(le.Uint32(data[firstCell:])))
	size := int32(le.Uint32(data[second:]))
	if size >= 0 {
		t.Fatalf("second cell is not allocated (size %d)", size)
	}
	le.PutUint32(data[second:], uint32(-size))
	if err := os.WriteFile(damaged, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code = run("hive", "check", damaged)
	if code != 1 || !strings.Contains(out, "at byte 0x") || !strings.Contains(errs, "problem") {
		t.Errorf("check damaged: code %d, stdout %.300q, stderr %q", code, out, errs)
	}

	if _, _, code = run("hive", "exprot", clean); code != 2 {
		t.Errorf("mistyped subcommand: code %d, want 2", code)
	}
	if _, _, code = run("hive", "check"); code != 2 {
		t.Errorf("check without FILE: code %d, want 2", code)
	}
	if _, _, code = run("hive", "export", "--bogus", clean); code != 2 {
		t.Errorf("unknown flag: code %d, want 2", code)
	}
	if got := testutil.FileSHA256(t, clean); got != sum {
		t.Errorf("the hive file changed")
	}
}

// BenchmarkExportWin7 measures a full parse and .reg-like export of the
// 13 MB Windows 7 hive, and times hivexregedit --export on the same file in
// the same run for comparison (reported as hivex-s and x-vs-hivex).
func BenchmarkExportWin7(b *testing.B) {
	hive := testutil.CorpusFile(b, "win7-sp1-x64.SYSTEM")
	st, err := os.Stat(hive)
	if err != nil {
		b.Fatal(err)
	}
	var hivexSecs float64
	if p, err := exec.LookPath("hivexregedit"); err == nil {
		start := time.Now()
		cmd := exec.Command(p, "--export", hive, `\`)
		cmd.Stdout = nil
		if err := cmd.Run(); err != nil {
			b.Fatalf("hivexregedit: %v", err)
		}
		hivexSecs = time.Since(start).Seconds()
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := runHiveExport(context.Background(), hiveExportOptions{}, []string{hive}, discard{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if hivexSecs > 0 {
		per := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(hivexSecs, "hivex-s")
		b.ReportMetric(hivexSecs/per, "x-vs-hivex")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
