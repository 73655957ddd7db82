package registry

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestCheckCorpus runs Check over every real hive; all of them were written
// by Windows and must pass.
func TestCheckCorpus(t *testing.T) {
	for _, name := range corpusHives {
		t.Run(name, func(t *testing.T) {
			h, err := OpenFile(testutil.CorpusFile(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Check(); err != nil {
				var ce *CheckError
				if errors.As(err, &ce) {
					for _, p := range ce.Problems[:min(len(ce.Problems), 20)] {
						t.Error(p)
					}
				}
				t.Fatal(err)
			}
		})
	}
}

// strictCheck is Check that also fails on leaked cells: for hives kvmify
// itself wrote, whose edits must not leak.
func strictCheck(h *Hive) error {
	r := h.CheckReport()
	if err := r.Err(); err != nil {
		return err
	}
	if r.LeakTotal > 0 {
		return fmt.Errorf("%d leaked cell(s), the first: %v", r.LeakTotal, r.Leaks[0])
	}
	return nil
}
