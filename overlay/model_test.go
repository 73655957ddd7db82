package overlay

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestRandomOpsMatchModel applies random writes, trims, zeroes, flushes,
// clean reopens and crashes (abandon without flush) to an overlay and to a
// byte slice, and checks they agree: a crash must bring back exactly the
// last flushed state.
func TestRandomOpsMatchModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			size := int64(24*testBS + 3000)
			_, src, data := newSource(t, size, 100+seed)
			path := filepath.Join(t.TempDir(), "ov")
			o := mustOpen(t, path, src, Options{})
			defer func() { o.Close() }()
			model, flushed := bytes.Clone(data), bytes.Clone(data)
			r := rand.New(rand.NewPCG(seed, 42))
			span := func() (int64, int64) {
				var n int64
				switch r.IntN(3) {
				case 0:
					n = 1 + r.Int64N(512)
				case 1:
					n = testBS * (1 + r.Int64N(3))
				default:
					n = 1 + r.Int64N(3*testBS)
				}
				off := r.Int64N(size)
				if r.IntN(2) == 0 {
					off -= off % testBS
				}
				return off, min(n, size-off)
			}
			for i := range 400 {
				what := ""
				switch k := r.IntN(20); {
				case k < 10:
					off, n := span()
					p := make([]byte, n)
					fillRandom(p, r.Uint64())
					if w, err := o.WriteAt(p, off); w != int(n) || err != nil {
						t.Fatalf("op %d: WriteAt(%d, %d) = %d, %v", i, off, n, w, err)
					}
					copy(model[off:], p)
					what = fmt.Sprintf("write %d@%d", n, off)
				case k < 13:
					off, n := span()
					var err error
					if k == 12 {
						err = o.Trim(off, n)
					} else {
						err = o.Zero(off, n)
					}
					if err != nil {
						t.Fatalf("op %d: zero/trim(%d, %d): %v", i, off, n, err)
					}
					clear(model[off : off+n])
					what = fmt.Sprintf("zero %d@%d", n, off)
				case k < 16:
					if err := o.Flush(); err != nil {
						t.Fatalf("op %d: Flush: %v", i, err)
					}
					copy(flushed, model)
					what = "flush"
				case k < 18:
					if err := o.Close(); err != nil {
						t.Fatalf("op %d: Close: %v", i, err)
					}
					copy(flushed, model)
					o = mustOpen(t, path, src, Options{})
					what = "reopen"
				default:
					abandon(o)
					copy(model, flushed)
					o = mustOpen(t, path, src, Options{})
					what = "crash"
				}
				checkContent(t, o, model, fmt.Sprintf("op %d (%s)", i, what))
			}
		})
	}
}
