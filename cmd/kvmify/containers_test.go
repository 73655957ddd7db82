package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// containerSets makes, from the raw disk img, the containers kvmify reads
// by content: E01 sets (deflate fast and best, 1 MiB segments) and a split
// raw set. It returns the path to open for each, and every input file.
func containerSets(t *testing.T, img string) (open map[string]string, inputs []string) {
	t.Helper()
	testutil.RequireTool(t, "split")
	dir := t.TempDir()
	open = map[string]string{"raw": img}
	inputs = []string{img}
	for _, c := range []string{"fast", "best"} {
		segs := testutil.EWFAcquire(t, img, dir, "e01-"+c, "-c", "deflate:"+c, "-S", "1M", "-f", "encase6")
		if len(segs) < 2 {
			t.Fatalf("ewfacquire wrote one segment; the test wants several")
		}
		open["e01-"+c] = segs[0]
		inputs = append(inputs, segs...)
	}
	prefix := filepath.Join(dir, "split.")
	if b, err := exec.Command("split", "-b", "20M", "-a", "3", "--numeric-suffixes=1", img, prefix).CombinedOutput(); err != nil {
		t.Fatalf("split: %v\n%s", err, b)
	}
	segs, _ := filepath.Glob(prefix + "*")
	open["split"] = prefix + "001"
	inputs = append(inputs, segs...)
	for _, p := range inputs {
		os.Chmod(p, 0o444)
	}
	return open, inputs
}

// inspectJSON runs inspect --json and drops the fields that name the
// container, which differ by design.
func inspectJSON(t *testing.T, bin, img string) (string, map[string]any) {
	t.Helper()
	var rep map[string]any
	if err := json.Unmarshal(run(t, bin, "inspect", "--json", img), &rep); err != nil {
		t.Fatal(err)
	}
	format := rep["format"].(string)
	delete(rep, "image")
	delete(rep, "format")
	return format, rep
}

// TestContainersServeLikeTheRawDisk checks, for E01 and split raw sets made
// from a Windows-like disk, that inspect reports what it reports for the
// raw disk (plus the container's format), that export --no-patch writes
// the raw disk byte for byte and the patched export equals the raw disk's
// patched export, that verify checks the E01 digests, and that no input
// file changes.
func TestContainersServeLikeTheRawDisk(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	open, inputs := containerSets(t, img)
	before := map[string]string{}
	for _, p := range inputs {
		before[p] = testutil.FileSHA256(t, p)
	}
	rawSum := before[img]
	_, rawInspect := inspectJSON(t, bin, img)
	wantFormat := map[string]string{"raw": "raw", "e01-fast": "ewf", "e01-best": "ewf", "split": "split-raw"}
	var rawPatched string
	for _, name := range []string{"raw", "e01-fast", "e01-best", "split"} {
		t.Run(name, func(t *testing.T) {
			path := open[name]
			format, rep := inspectJSON(t, bin, path)
			if format != wantFormat[name] {
				t.Fatalf("inspect format %q, want %q", format, wantFormat[name])
			}
			a, _ := json.Marshal(rep)
			b, _ := json.Marshal(rawInspect)
			if !bytes.Equal(a, b) {
				t.Fatalf("inspect differs from the raw disk's:\n%s\n%s", a, b)
			}
			dir := t.TempDir()
			plain := filepath.Join(dir, "plain.raw")
			run(t, bin, "export", "--no-patch", "--ephemeral", path, plain)
			if testutil.FileSHA256(t, plain) != rawSum {
				t.Fatal("export --no-patch differs from the raw disk")
			}
			patched := filepath.Join(dir, "patched.raw")
			run(t, bin, "export", "--target", "ide", "--ephemeral", path, patched)
			sum := testutil.FileSHA256(t, patched)
			if sum == rawSum {
				t.Fatal("the patched export equals the unpatched disk")
			}
			if name == "raw" {
				rawPatched = sum
			} else if rawPatched != "" && sum != rawPatched {
				t.Fatal("the patched export differs from the raw disk's patched export")
			}
			out := string(run(t, bin, "verify", path))
			if strings.HasPrefix(name, "e01") && strings.Count(out, " ok") != 2 {
				t.Fatalf("verify of the E01 set:\n%s", out)
			}
			if !strings.HasPrefix(name, "e01") && !strings.Contains(out, "nothing to verify") {
				t.Fatalf("verify of %s:\n%s", name, out)
			}
		})
	}
	for p, s := range before {
		if testutil.FileSHA256(t, p) != s {
			t.Fatalf("%s changed", p)
		}
	}
}
