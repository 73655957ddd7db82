package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// crashWriterPy is an NBD client (python3-libnbd) that runs an operation
// file against the server and prints a line after each completed flush.
const crashWriterPy = `
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("READY", flush=True)
n = 0
for line in open(sys.argv[2]):
    f = line.split()
    if f[0] == "w":
        h.pwrite(bytes([int(f[3])]) * int(f[2]), int(f[1]))
    elif f[0] == "z":
        h.zero(int(f[2]), int(f[1]))
    elif f[0] == "t":
        h.trim(int(f[2]), int(f[1]))
    elif f[0] == "f":
        h.flush()
        n += 1
        print("FLUSHED", n, flush=True)
print("DONE", flush=True)
`

// serveOp is one line of the writer's operation file.
type serveOp struct {
	kind    byte // 'w', 'z', 't' or 'f'
	off, n  int64
	pattern byte
}

func (op serveOp) String() string {
	switch op.kind {
	case 'f':
		return "f"
	case 'w':
		return fmt.Sprintf("w %d %d %d", op.off, op.n, op.pattern)
	default:
		return fmt.Sprintf("%c %d %d", op.kind, op.off, op.n)
	}
}

func serveOps(r *rand.Rand, size int64, count int) []serveOp {
	var ops []serveOp
	for i := range count {
		if r.IntN(5) == 0 {
			ops = append(ops, serveOp{kind: 'f'})
			continue
		}
		off := r.Int64N(size)
		if r.IntN(2) == 0 {
			off -= off % (64 << 10)
		}
		op := serveOp{kind: 'w', off: off, n: min(1+r.Int64N(192<<10), size-off), pattern: byte(1 + i%255)}
		switch r.IntN(8) {
		case 0:
			op.kind = 'z'
		case 1:
			op.kind = 't'
		}
		ops = append(ops, op)
	}
	return ops
}

// applyServeOps plays ops on state up to (not including) the flushes-th
// flush's successor; it returns the state after the given number of flushes.
func stateAfterFlushes(state []byte, ops []serveOp, flushes int) []byte {
	s := bytes.Clone(state)
	done := 0
	for _, op := range ops {
		if done == flushes {
			break
		}
		switch op.kind {
		case 'f':
			done++
		case 'w':
			copy(s[op.off:op.off+op.n], bytes.Repeat([]byte{op.pattern}, int(op.n)))
		default:
			clear(s[op.off : op.off+op.n])
		}
	}
	return s
}

// TestServeCrashConsistency drives 'kvmify serve' with a real NBD client
// (python3-libnbd) doing writes, zeroes, trims and flushes, kills the
// server with SIGKILL at random moments, restarts it on the same overlay
// and reads the export back with qemu-img: every flush the client saw
// complete must be there, and the content must be exactly a flushed state.
func TestServeCrashConsistency(t *testing.T) {
	py := testutil.RequirePython3Module(t, "nbd")
	qemuImg := testutil.RequireTool(t, "qemu-img")
	nbdinfo := testutil.RequireTool(t, "nbdinfo")
	bin := testutil.BuildKvmify(t)
	if out, err := exec.Command(bin, "serve", "--help").CombinedOutput(); err != nil {
		t.Skipf("kvmify serve is not available: %v %s", err, out)
	}
	dir := t.TempDir()
	size := int64(8<<20 + 4096)
	state := make([]byte, size)
	r := rand.New(rand.NewPCG(11, 12))
	for i := range state {
		state[i] = byte(r.Uint32())
	}
	src := filepath.Join(dir, "source.img")
	if err := os.WriteFile(src, state, 0o444); err != nil {
		t.Fatal(err)
	}
	srcSum := testutil.FileSHA256(t, src)
	writer := filepath.Join(dir, "writer.py")
	if err := os.WriteFile(writer, []byte(crashWriterPy), 0o644); err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "source.kvmify-overlay")
	sock := filepath.Join(dir, "nbd.sock")
	uri := "nbd+unix:///?socket=" + sock

	start := func() *exec.Cmd {
		t.Helper()
		return startServeOverlay(t, bin, nbdinfo, src, ov, sock)
	}

	iterations := 12
	acked := 0
	for it := range iterations {
		ops := serveOps(r, size, 3000)
		opsFile := filepath.Join(dir, "ops.txt")
		var b strings.Builder
		for _, op := range ops {
			b.WriteString(op.String() + "\n")
		}
		if err := os.WriteFile(opsFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		server := start()
		w := exec.Command(py, writer, uri, opsFile)
		out, err := w.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(out)
		if l, err := br.ReadString('\n'); err != nil || l != "READY\n" {
			t.Fatalf("writer did not connect: %q %v", l, err)
		}
		lines := make(chan []string)
		go func() {
			var ls []string
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					break
				}
				ls = append(ls, strings.TrimSuffix(l, "\n"))
			}
			lines <- ls
		}()
		time.Sleep(time.Duration(20+r.IntN(200)) * time.Millisecond)
		server.Process.Signal(syscall.SIGKILL)
		server.Wait()
		got := <-lines
		w.Wait() // the writer fails on the dead connection
		last := 0
		for _, l := range got {
			if n, ok := strings.CutPrefix(l, "FLUSHED "); ok {
				if last, err = strconv.Atoi(n); err != nil {
					t.Fatalf("writer printed %q", l)
				}
			}
		}

		server = start()
		raw := filepath.Join(dir, "export.raw")
		if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "raw", uri, raw).CombinedOutput(); err != nil {
			t.Fatalf("iteration %d: qemu-img convert after restart: %v\n%s", it, err, out)
		}
		server.Process.Signal(syscall.SIGTERM)
		server.Wait()
		exported, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		ackState := stateAfterFlushes(state, ops, last)
		nextState := stateAfterFlushes(state, ops, last+1)
		if !bytes.Equal(exported, ackState) && !bytes.Equal(exported, nextState) {
			i := 0
			for i < len(exported) && i < len(ackState) && exported[i] == ackState[i] {
				i++
			}
			t.Fatalf("iteration %d: after kill -9 with %d flushes acknowledged the export matches neither that state nor the next flush's; first difference at byte %d", it, last, i)
		}
		state = exported
		acked += last
	}
	if acked == 0 {
		t.Fatal("the writer never saw a flush complete; the test proved nothing")
	}
	t.Logf("%d server kills, %d acknowledged flushes verified through qemu-img", iterations, acked)
	if got := testutil.FileSHA256(t, src); got != srcSum {
		t.Fatal("source image changed")
	}
}

// startServeOverlay starts 'kvmify serve --no-patch' of src with overlay ov
// on the unix socket sock and waits until nbdinfo can connect.
func startServeOverlay(t *testing.T, bin, nbdinfo, src, ov, sock string) *exec.Cmd {
	t.Helper()
	os.Remove(sock) // a killed server leaves its socket behind
	uri := "nbd+unix:///?socket=" + sock
	cmd := exec.Command(bin, "serve", src, "--no-patch", "--overlay", ov, "--unix", sock)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if exec.Command(nbdinfo, "--size", uri).Run() == nil {
			return cmd
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kvmify serve did not come up: %s", logs.String())
		}
	}
}
