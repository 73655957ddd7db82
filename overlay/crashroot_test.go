package overlay

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCrashThenRootDamage kills a writing child process with SIGKILL, then
// destroys both copies of the newest commit root, the case of issue 15
// where a fallback served block 10's data as block 0. Open must refuse
// (naming the generation lost); accepting the older generation must either
// be refused by its checksums (its slots were reused since) or give exactly
// a state some completed flush left, never a mix; when refused, the root
// is restored and the run goes on from the newest state.
func TestCrashThenRootDamage(t *testing.T) {
	iterations := 16
	if testing.Short() {
		iterations = 6
	}
	size := int64(32*testBS + 1000)
	srcPath, src, data := newSource(t, size, 210)
	path := filepath.Join(t.TempDir(), "crash.kvmify-overlay")
	state := bytes.Clone(data)
	r := rand.New(rand.NewPCG(3, 4))
	refusedByChecksum, accepted := 0, 0
	for it := range iterations {
		seed := r.Uint64()
		lines := runCrashChild(t, path, srcPath, seed, time.Duration(5+r.IntN(40))*time.Millisecond)
		last := 0
		for _, l := range lines {
			if n, ok := strings.CutPrefix(l, crashFlushedTag+" "); ok {
				last, _ = strconv.Atoi(n)
			}
		}
		// Every state a completed flush of this run could have left, and
		// the one before the run.
		states := [][]byte{bytes.Clone(state)}
		gen := crashRand(seed)
		cur := bytes.Clone(state)
		for range last + 1 {
			applyCrashBatch(cur, crashBatch(gen, size))
			states = append(states, bytes.Clone(cur))
		}
		isState := func(b []byte) bool {
			for _, s := range states {
				if bytes.Equal(b, s) {
					return true
				}
			}
			return false
		}
		o, err := Open(path, src, Options{})
		if err != nil {
			t.Fatalf("iteration %d: reopening after kill -9: %v", it, err)
		}
		now := make([]byte, size)
		if _, err := o.ReadAt(now, 0); err != nil {
			t.Fatal(err)
		}
		newest := o.gen
		if err := o.Discard(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(now, states[last]) && !bytes.Equal(now, states[last+1]) {
			t.Fatalf("iteration %d: after kill -9 the content is not that of the last acknowledged flush or the next", it)
		}
		if newest < 3 {
			state = now
			continue
		}
		saved := make([]byte, rootRegionSize)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(saved, rootOffset(newest)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		wreck(t, path, rootOffset(newest))
		_, err = Open(path, src, Options{})
		var ce *CommitError
		if !errors.As(err, &ce) || ce.Lost != newest || ce.Fallback != newest-1 {
			t.Fatalf("iteration %d: Open with generation %d's root destroyed: %v; want a CommitError", it, newest, err)
		}
		if _, err := Rollback(path, newest-1); err != nil {
			var de *DataError
			var fe *FormatError
			if !errors.As(err, &de) && !errors.As(err, &fe) {
				t.Fatalf("iteration %d: rollback refused without a located reason: %v", it, err)
			}
			refusedByChecksum++
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(saved, rootOffset(newest)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			state = now
			continue
		}
		accepted++
		o, err = Open(path, src, Options{})
		if err != nil {
			t.Fatalf("iteration %d: open after rollback: %v", it, err)
		}
		back := make([]byte, size)
		if _, err := o.ReadAt(back, 0); err != nil {
			t.Fatalf("iteration %d: read after rollback: %v", it, err)
		}
		o.Close()
		if !isState(back) {
			t.Fatalf("iteration %d: rollback to generation %d served content no flush ever left (another block's data)", it, newest-1)
		}
		state = back
	}
	t.Logf("%d kills with the newest root destroyed: %d rollbacks refused by checksums or map damage, %d accepted and equal to a flushed state", iterations, refusedByChecksum, accepted)
}
