package overlay

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestMatchesQcow2Overlay applies one random sequence of writes and zeroes
// to our overlay and, with qemu-io, to a qcow2 overlay backed by the same
// source; QEMU's result (read back with qemu-img convert) is the oracle.
func TestMatchesQcow2Overlay(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	qemuIO := testutil.RequireTool(t, "qemu-io")
	size := int64(40*testBS + 7*512) // the last block is short
	srcPath, src, _ := newSource(t, size, 400)
	dir := t.TempDir()
	qcow := filepath.Join(dir, "oracle.qcow2")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(qemuImg, "create", "-q", "-f", "qcow2", "-b", srcPath, "-F", "raw", qcow)

	path := filepath.Join(dir, "ours")
	o := mustOpen(t, path, src, Options{SourcePath: srcPath})
	r := rand.New(rand.NewPCG(7, 8))
	args := []string{"-f", "qcow2", qcow}
	for i := range 300 {
		off := r.Int64N(size)
		if r.IntN(2) == 0 {
			off -= off % testBS
		}
		n := min(1+r.Int64N(3*testBS), size-off)
		if r.IntN(4) == 0 {
			args = append(args, "-c", fmt.Sprintf("write -q -z %d %d", off, n))
			if err := o.Zero(off, n); err != nil {
				t.Fatal(err)
			}
		} else {
			pat := byte(1 + i%250)
			args = append(args, "-c", fmt.Sprintf("write -q -P %d %d %d", pat, off, n))
			if _, err := o.WriteAt(bytes.Repeat([]byte{pat}, int(n)), off); err != nil {
				t.Fatal(err)
			}
		}
		if i%50 == 49 {
			if err := o.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	run(qemuIO, args...)
	raw := filepath.Join(dir, "oracle.raw")
	run(qemuImg, "convert", "-f", "qcow2", "-O", "raw", qcow, raw)
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(want)) != size {
		t.Fatalf("qemu-img produced %d bytes, want %d", len(want), size)
	}
	checkContent(t, o, want, "against qemu's qcow2 overlay")
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, path, src, Options{SourcePath: srcPath})
	defer o.Close()
	checkContent(t, o, want, "against qemu's qcow2 overlay, after reopen")
}
