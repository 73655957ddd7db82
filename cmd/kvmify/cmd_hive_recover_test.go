package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/registry"
)

// copyCorpus copies corpus files into a fresh directory (under the names
// given) so tests can control which logs sit beside a hive.
func copyCorpus(t *testing.T, names map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for src, dst := range names {
		b, err := os.ReadFile(testutil.CorpusFile(t, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestHiveRecoverWin10(t *testing.T) {
	// Lower-case log names, as a case-insensitive NTFS listing may give them.
	dir := copyCorpus(t, map[string]string{
		"win10-1709-x64.SYSTEM":      "SYSTEM",
		"win10-1709-x64.SYSTEM.LOG1": "system.log1",
		"win10-1709-x64.SYSTEM.LOG2": "System.Log2",
	})
	in := filepath.Join(dir, "SYSTEM")
	sums := map[string]string{}
	for _, n := range []string{"SYSTEM", "system.log1", "System.Log2"} {
		sums[n] = testutil.FileSHA256(t, filepath.Join(dir, n))
	}
	out := filepath.Join(t.TempDir(), "SYSTEM.recovered")
	var stdout bytes.Buffer
	if err := runHiveRecover(context.Background(), hiveRecoverOptions{Output: out}, []string{in}, &stdout); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	for _, want := range []string{"system.log1", "System.Log2", "applied 24 entries (sequence 2107..2130)", "clean true"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	h, err := registry.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if dirty, why := h.Dirty(); dirty {
		t.Errorf("written hive is dirty: %s", why)
	}
	for n, s := range sums {
		if testutil.FileSHA256(t, filepath.Join(dir, n)) != s {
			t.Errorf("%s changed", n)
		}
	}

	// What hivex reads from the written file equals what the library
	// recovered in memory.
	mem, _, err := registry.RecoverFile(in)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(mem, disk) {
		t.Fatalf("written file differs from the in-memory recovery (err %v)", err)
	}
	got := hivexDumpLines(t, out, "ControlSet001\\Services\\storahci")
	if len(got) == 0 {
		t.Error("hivex sees no ControlSet001\\Services\\storahci in the recovered hive")
	}

	// Refuses to overwrite without --force, and OUT == FILE always.
	err = runHiveRecover(context.Background(), hiveRecoverOptions{Output: out}, []string{in}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing OUT: err = %v", err)
	}
	if err := runHiveRecover(context.Background(), hiveRecoverOptions{Output: out, Force: true}, []string{in}, &bytes.Buffer{}); err != nil {
		t.Errorf("--force: %v", err)
	}
	var ue usageError
	err = runHiveRecover(context.Background(), hiveRecoverOptions{Output: in, Force: true}, []string{in}, &bytes.Buffer{})
	if !errors.As(err, &ue) {
		t.Errorf("OUT == FILE: err = %v, want a usage error", err)
	}
}

func TestHiveRecoverExplicitAndMissingLogs(t *testing.T) {
	dir := copyCorpus(t, map[string]string{
		"yarp-olddirty":      "NTUSER.DAT",
		"yarp-olddirty.LOG1": "saved-log",
		"xp-sp3-x86.SYSTEM":  "system",
	})
	in := filepath.Join(dir, "NTUSER.DAT")
	outDir := t.TempDir()

	// No log beside it: dirty and refused, nothing written.
	out := filepath.Join(outDir, "a")
	var stdout bytes.Buffer
	err := runHiveRecover(context.Background(), hiveRecoverOptions{Output: out}, []string{in}, &stdout)
	if err == nil || !strings.Contains(err.Error(), "dirty") {
		t.Errorf("dirty without logs: err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("OUT was written for an unrecoverable hive")
	}

	// The log named explicitly.
	opts := hiveRecoverOptions{Output: out, Logs: []string{filepath.Join(dir, "saved-log")}}
	stdout.Reset()
	if err := runHiveRecover(context.Background(), opts, []string{in}, &stdout); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "saved-log: old (dirty vector) format") {
		t.Errorf("output:\n%s", stdout.String())
	}

	// A foreign log is unusable.
	opts = hiveRecoverOptions{Output: filepath.Join(outDir, "b"), Logs: []string{filepath.Join(dir, "system")}}
	err = runHiveRecover(context.Background(), opts, []string{in}, &bytes.Buffer{})
	if !errors.Is(err, registry.ErrLogsUnusable) {
		t.Errorf("foreign log: err = %v, want ErrLogsUnusable", err)
	}

	// A clean hive is copied unchanged.
	clean := filepath.Join(dir, "system")
	stdout.Reset()
	if err := runHiveRecover(context.Background(), hiveRecoverOptions{Output: filepath.Join(outDir, "c")}, []string{clean}, &stdout); err != nil {
		t.Fatal(err)
	}
	if testutil.FileSHA256(t, filepath.Join(outDir, "c")) != testutil.FileSHA256(t, clean) || !strings.Contains(stdout.String(), "not dirty") {
		t.Errorf("clean hive not copied unchanged:\n%s", stdout.String())
	}
}

// TestHiveRecoverExitCodes drives the built binary: 0, 1 and 2.
func TestHiveRecoverExitCodes(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	dir := copyCorpus(t, map[string]string{"yarp-olddirty": "hive", "yarp-olddirty.LOG1": "hive.LOG1"})
	in := filepath.Join(dir, "hive")
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		o, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(o), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(o), 0
	}
	out := filepath.Join(t.TempDir(), "out")
	if o, code := run("hive", "recover", in, "-o", out); code != 0 || !strings.Contains(o, "wrote recovered hive") {
		t.Errorf("recover: code %d\n%s", code, o)
	}
	if o, code := run("hive", "recover", in, "-o", out); code != 1 || !strings.Contains(o, "exists") {
		t.Errorf("existing OUT: code %d\n%s", code, o)
	}
	if o, code := run("hive", "recover", in); code != 2 {
		t.Errorf("missing -o: code %d\n%s", code, o)
	}
	if o, code := run("hive", "recover", "--help"); code != 0 || !strings.Contains(o, "Exit status: 0 recovered") {
		t.Errorf("help: code %d\n%s", code, o)
	}
}
