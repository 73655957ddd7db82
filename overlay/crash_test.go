package overlay

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
)

// Environment of the crash test's child process (this test binary re-run).
const (
	crashChildEnv   = "KVMIFY_OVERLAY_CRASH_CHILD" // overlay path; set only in the child
	crashSourceEnv  = "KVMIFY_OVERLAY_CRASH_SOURCE"
	crashSeedEnv    = "KVMIFY_OVERLAY_CRASH_SEED"
	crashReadyLine  = "READY"
	crashFlushedTag = "FLUSHED"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

// crashOp is one operation of a crash-test batch: a write of seeded random
// bytes, or a zeroing.
type crashOp struct {
	off, n int64
	zero   bool
	seed   uint64
}

// crashBatch draws the next batch of operations; ranges in one batch do not
// overlap, so running them concurrently has one defined outcome, though
// several may share a block (concurrent read-modify-write).
func crashBatch(r *rand.Rand, size int64) []crashOp {
	var ops []crashOp
	for range 1 + r.IntN(6) {
		var op crashOp
		switch r.IntN(4) {
		case 0:
			op.n = 1 + r.Int64N(4096)
		case 1:
			op.n = testBS * (1 + r.Int64N(2))
		default:
			op.n = 1 + r.Int64N(2*testBS)
		}
		op.off = r.Int64N(size)
		if r.IntN(2) == 0 {
			op.off -= op.off % testBS
		}
		op.n = min(op.n, size-op.off)
		op.zero = r.IntN(6) == 0
		op.seed = r.Uint64()
		overlaps := false
		for _, o := range ops {
			if op.off < o.off+o.n && o.off < op.off+op.n {
				overlaps = true
			}
		}
		if !overlaps {
			ops = append(ops, op)
		}
	}
	return ops
}

func crashRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0xc0ffee)) }

// crashChild writes batches through the overlay until killed, printing a
// line after each completed Flush.
func crashChild(path string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "crash child:", err); return 1 }
	seed, err := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	if err != nil {
		return fail(err)
	}
	src, err := disk.OpenSource(os.Getenv(crashSourceEnv))
	if err != nil {
		return fail(err)
	}
	o, err := Open(path, src, Options{})
	if err != nil {
		return fail(err)
	}
	fmt.Println(crashReadyLine)
	r := crashRand(seed)
	for b := 1; ; b++ {
		ops := crashBatch(r, src.Size())
		var wg sync.WaitGroup
		errs := make(chan error, len(ops))
		for _, op := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if op.zero {
					errs <- o.Zero(op.off, op.n)
					return
				}
				p := make([]byte, op.n)
				fillRandom(p, op.seed)
				_, err := o.WriteAt(p, op.off)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return fail(err)
			}
		}
		if err := o.Flush(); err != nil {
			return fail(err)
		}
		fmt.Printf("%s %d\n", crashFlushedTag, b)
	}
}

// TestCrashConsistency kills a writing process with SIGKILL at random
// moments, many times over the same overlay file, and checks after each
// kill that the overlay opens and holds exactly the state of the last
// acknowledged flush or of the flush that was in progress: every
// acknowledged write is there and nothing is torn.
func TestCrashConsistency(t *testing.T) {
	iterations := 60
	if testing.Short() {
		iterations = 10
	}
	size := int64(32*testBS + 1000)
	srcPath, src, data := newSource(t, size, 200)
	path := filepath.Join(t.TempDir(), "crash.kvmify-overlay")
	state := bytes.Clone(data) // the overlay's verified content
	r := rand.New(rand.NewPCG(1, 2))
	acked, inFlight := 0, 0
	for it := range iterations {
		seed := r.Uint64()
		lines := runCrashChild(t, path, srcPath, seed, time.Duration(r.IntN(40))*time.Millisecond)
		last := 0
		for _, l := range lines {
			if n, ok := strings.CutPrefix(l, crashFlushedTag+" "); ok {
				b, err := strconv.Atoi(n)
				if err != nil {
					t.Fatalf("crash child printed %q", l)
				}
				last = b
			}
		}
		// Replay the child's batches on the model up to the flush after the
		// last acknowledged one.
		gen := crashRand(seed)
		ackState := bytes.Clone(state)
		for range last {
			applyCrashBatch(ackState, crashBatch(gen, size))
		}
		nextState := bytes.Clone(ackState)
		applyCrashBatch(nextState, crashBatch(gen, size))

		o, err := Open(path, src, Options{})
		if err != nil {
			t.Fatalf("iteration %d: reopening after kill -9: %v", it, err)
		}
		got := make([]byte, size)
		if _, err := o.ReadAt(got, 0); err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		switch {
		case bytes.Equal(got, ackState):
		case bytes.Equal(got, nextState):
			inFlight++
		default:
			i := 0
			for got[i] == ackState[i] {
				i++
			}
			t.Fatalf("iteration %d (seed %d, %d flushes acknowledged): content matches neither the acknowledged nor the next flush; first difference from the acknowledged state at byte %d",
				it, seed, last, i)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		state = got
		acked += last
	}
	t.Logf("%d kills, %d acknowledged flushes verified, %d in-flight commits found complete", iterations, acked, inFlight)
	if acked == 0 {
		t.Fatal("no child ever acknowledged a flush; the test proved nothing")
	}
}

func applyCrashBatch(state []byte, ops []crashOp) {
	for _, op := range ops {
		if op.zero {
			clear(state[op.off : op.off+op.n])
		} else {
			fillRandom(state[op.off:op.off+op.n], op.seed)
		}
	}
}

// runCrashChild starts the child, lets it run for delay after it is ready,
// kills it with SIGKILL and returns its output lines.
func runCrashChild(t *testing.T, path, srcPath string, seed uint64, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashSourceEnv+"="+srcPath, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	var lines []string
	if l, err := br.ReadString('\n'); err != nil || l != crashReadyLine+"\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("crash child did not start: %q %v %s", l, err, stderr.String())
	}
	done := make(chan struct{})
	go func() {
		for {
			// Only complete lines count: a line cut by the kill is not an
			// acknowledgement.
			l, err := br.ReadString('\n')
			if err != nil {
				break
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
		close(done)
	}()
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("crash child ended by itself (%v): %s", err, stderr.String())
	}
	return lines
}
