package peversion

import (
	"errors"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

func TestReadDriverImage(t *testing.T) {
	img := testutil.PEWithVersion(5, 1, 2600, 5512, []byte("\x8b\xff\x55\x8b\xec driver code"))
	v, err := Read(img)
	if err != nil {
		t.Fatal(err)
	}
	if v != (Version{5, 1, 2600, 5512}) || v.String() != "5.1.2600.5512" {
		t.Errorf("version %v, want 5.1.2600.5512", v)
	}
	if !(Version{5, 1, 2600, 0}).Less(v) || v.Less(Version{5, 1, 2600, 0}) || v.Less(v) {
		t.Errorf("Less orders versions wrongly")
	}
	if _, err := Read([]byte("MZ not a PE")); err == nil || errors.Is(err, ErrNoVersion) {
		t.Errorf("not a PE: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(testutil.PEWithVersion(5, 1, 2600, 0, []byte("code")))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Read(b)
	})
}
