package ntfs

import (
	"bytes"
	"errors"
	"testing"
)

// fixupRecord builds a fixed-up multi-sector record of size bytes with
// its update sequence array at usaOff and sequence number usn.
func fixupRecord(size, usaOff int, usn uint16, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, size)
	copy(b, "FILE")
	put16(b[usaOffsetOff:], uint16(usaOff))
	put16(b[usaCountOff:], uint16(size/512+1))
	put16(b[usaOff:], usn)
	return b
}

func TestProtectFixupsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		size    int
		usn     uint16
		wantUSN uint16
	}{
		{1024, 7, 8},
		{4096, 0xfffe, 1}, // 0xffff is skipped
		{1024, 0xffff, 1}, // and so is 0
	} {
		rec := fixupRecord(tc.size, 0x30, tc.usn, 0xab)
		// Distinct sector tails; after applyFixups the array holds the
		// same values, so a fixed-up record looks like this.
		for i := 1; i <= tc.size/512; i++ {
			put16(rec[i*512-2:], uint16(0x1100+i))
			put16(rec[0x30+2*i:], uint16(0x1100+i))
		}
		want := bytes.Clone(rec)
		if err := protectFixups(rec, 0, "test record"); err != nil {
			t.Fatal(err)
		}
		if got := le16(rec[0x30:]); got != tc.wantUSN {
			t.Errorf("size %d usn 0x%x: new usn 0x%x, want 0x%x", tc.size, tc.usn, got, tc.wantUSN)
		}
		for i := 1; i <= tc.size/512; i++ {
			if got := le16(rec[i*512-2:]); got != tc.wantUSN {
				t.Errorf("sector %d ends with 0x%x, want the usn 0x%x", i-1, got, tc.wantUSN)
			}
		}
		if err := applyFixups(rec, 0, "test record"); err != nil {
			t.Fatal(err)
		}
		put16(want[0x30:], tc.wantUSN)
		if !bytes.Equal(rec, want) {
			t.Errorf("size %d: protect then apply does not give back the record", tc.size)
		}
	}
}

func TestProtectFixupsRejectsBadHeaders(t *testing.T) {
	for name, rec := range map[string][]byte{
		"short":           make([]byte, 4),
		"usa outside":     fixupRecord(1024, 1020, 1, 0),
		"count mismatch":  func() []byte { b := fixupRecord(1024, 0x30, 1, 0); put16(b[usaCountOff:], 4); return b }(),
		"odd usa offset":  fixupRecord(1024, 0x31, 1, 0),
		"count below two": func() []byte { b := fixupRecord(1024, 0x30, 1, 0); put16(b[usaCountOff:], 1); return b }(),
	} {
		if err := protectFixups(rec, 0x1000, "test record"); !errors.Is(err, ErrBadFixup) {
			t.Errorf("%s: got %v, want ErrBadFixup", name, err)
		}
	}
}

// FuzzFixupRoundTrip checks that a record the reader fixes up, protected
// again and fixed up again, comes back unchanged (bar the new number).
func FuzzFixupRoundTrip(f *testing.F) {
	for _, size := range []int{1024, 4096} {
		rec := fixupRecord(size, 0x30, 3, 0x5a)
		for i := 1; i <= size/512; i++ {
			put16(rec[i*512-2:], 3) // the on-disk form: every sector ends with the usn
		}
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		if applyFixups(rec, 0, "fuzz record") != nil {
			return
		}
		orig := bytes.Clone(rec)
		if err := protectFixups(rec, 0, "fuzz record"); err != nil {
			if !bytes.Equal(rec, orig) {
				t.Fatal("a refused record was modified")
			}
			return
		}
		if err := applyFixups(rec, 0, "fuzz record"); err != nil {
			t.Fatalf("applyFixups after protectFixups: %v", err)
		}
		usaOff := int(le16(orig[usaOffsetOff:]))
		put16(orig[usaOff:], le16(rec[usaOff:]))
		if !bytes.Equal(rec, orig) {
			t.Fatal("protect then apply changed the record")
		}
	})
}
