package ntfs

import (
	"errors"
	"testing"
)

// TestDecodeRunlistHandBuilt decodes mapping pairs written out by hand from
// the format's definition.
func TestDecodeRunlistHandBuilt(t *testing.T) {
	b := []byte{
		0x21, 0x10, 0x00, 0x01, // 1-byte length 0x10, 2-byte LCN delta +0x100
		0x11, 0x08, 0xf0, // length 8, delta -0x10: LCN 0xf0
		0x01, 0x04, // length 4, no offset: sparse
		0x11, 0x02, 0x20, // length 2, delta +0x20 from the last real LCN: 0x110
		0x00, // end
	}
	runs, n, err := decodeRunlist(b, 0, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(b) {
		t.Errorf("consumed %d bytes, want %d", n, len(b))
	}
	want := []Run{
		{VCN: 0, LCN: 0x100, Length: 0x10, Offset: 0, Size: 4},
		{VCN: 0x10, LCN: 0xf0, Length: 8, Offset: 4, Size: 3},
		{VCN: 0x18, Length: 4, Sparse: true, Offset: 7, Size: 2},
		{VCN: 0x1c, LCN: 0x110, Length: 2, Offset: 9, Size: 3},
	}
	if len(runs) != len(want) {
		t.Fatalf("runs %+v, want %+v", runs, want)
	}
	for i := range want {
		if runs[i] != want[i] {
			t.Errorf("run %d: %+v, want %+v", i, runs[i], want[i])
		}
	}
}

func TestDecodeRunlistRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		at   int64
	}{
		{"past the volume", []byte{0x21, 0x10, 0x00, 0x10, 0x00}, 0x1000},
		{"negative LCN", []byte{0x11, 0x01, 0x80, 0x00}, 0x1000},
		{"no terminator", []byte{0x11, 0x01, 0x05}, 0x1003},
		{"field past the end", []byte{0x31, 0x01, 0x05}, 0x1000},
		{"zero length", []byte{0x11, 0x00, 0x05, 0x00}, 0x1000},
	} {
		_, _, err := decodeRunlist(c.b, 0, 0x1000, 0x1000)
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrBadRunlist) || fe.Offset != c.at {
			t.Errorf("%s: got %v, want ErrBadRunlist at 0x%x", c.name, err, c.at)
		}
	}
}

// TestStreamInitializedSize reads past the initialized size of a
// hand-built stream: those bytes are zeros whatever the clusters hold.
func TestStreamInitializedSize(t *testing.T) {
	v := fuzzVolume(1024)
	s := &Stream{v: v, Type: AttrData, Runs: []Run{{VCN: 0, LCN: 2, Length: 2}},
		dataSize: 6000, initSize: 5000, allocSize: 8192}
	got := make([]byte, 6000)
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 8192)
	v.r.ReadAt(disk, 2*4096)
	for i := range got {
		want := disk[i]
		if i >= 5000 {
			want = 0
		}
		if got[i] != want {
			t.Fatalf("byte %d: %d, want %d", i, got[i], want)
		}
	}
}
