package registry

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestWalkSharedListsBounded builds a hive where, at each of 40 levels,
// key "b" shares the subkey list of its sibling "a": 2^40 paths lead to the
// bottom. That is no loop, but a walk that visits shared parts under each
// parent must stop on its visit budget (ErrLimit) instead of running for
// ever; Check reports the sharing as corruption without walking it twice.
func TestWalkSharedListsBounded(t *testing.T) {
	h, err := New(NewOptions{Time: editTime})
	if err != nil {
		t.Fatal(err)
	}
	ed := newEditor(t, h)
	const levels = 40
	path := ""
	for range levels {
		if err := ed.CreateKey(path + "a"); err != nil {
			t.Fatal(err)
		}
		if err := ed.CreateKey(path + "b"); err != nil {
			t.Fatal(err)
		}
		path += `a\`
	}
	res, err := ed.Save()
	if err != nil {
		t.Fatal(err)
	}
	b := res.Data
	view, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	path = ""
	for range levels - 1 {
		a, err := view.Lookup(path + "a")
		if err != nil {
			t.Fatal(err)
		}
		sib, err := view.Lookup(path + "b")
		if err != nil {
			t.Fatal(err)
		}
		put32(b, cellData(sib.off)+nkSubkeyCountOffset, a.rec.subkeyCount)
		put32(b, cellData(sib.off)+nkSubkeyListOffset, a.rec.subkeyList)
		path += `a\`
	}
	shared, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	visits := 0
	err = shared.Walk(func(*Key) error { visits++; return nil })
	if !errors.Is(err, ErrLimit) || strings.Contains(err.Error(), "loop") {
		t.Fatalf("walk: %v after %d visits, want ErrLimit", err, visits)
	}
	if visits > walkBudget(len(shared.hbins)) {
		t.Errorf("%d visits, budget %d", visits, walkBudget(len(shared.hbins)))
	}
	r := shared.CheckReport()
	found := false
	for _, p := range r.Problems {
		found = found || strings.Contains(p.Msg, "already used as subkey list")
	}
	if !found {
		t.Errorf("Check: %v, want the shared lists reported", r.Err())
	}
	t.Logf("walk stopped after %d visits in %v: %v", visits, time.Since(start), err)
}
