package registry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// Sequence numbers and versions below are the facts stated in the corpus README
// and read with hivexsh/xxd, not kvmify output.
func TestParseBaseBlockCorpus(t *testing.T) {
	for _, tc := range []struct {
		name         string
		prim, second uint32
		dirty        bool
	}{
		{"xp-sp3-x86.SYSTEM", 2321, 2321, false},
		{"win10-1709-x64.SYSTEM", 1622, 1621, true},
		{"yarp-olddirty", 5, 4, true},
		{"yarp-olddirty.recovered-by-win7", 7, 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(testutil.CorpusFile(t, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			bb, err := ParseBaseBlock(b)
			if err != nil {
				t.Fatal(err)
			}
			if bb.PrimarySequence != tc.prim || bb.SecondarySequence != tc.second || bb.Dirty() != tc.dirty {
				t.Errorf("sequences %d/%d dirty %v, want %d/%d %v", bb.PrimarySequence, bb.SecondarySequence, bb.Dirty(), tc.prim, tc.second, tc.dirty)
			}
			if !bb.ChecksumValid() {
				t.Errorf("checksum 0x%x invalid", bb.Checksum)
			}
			if got := bb.Bytes(); !bytes.Equal(got, b[:BaseBlockSize]) {
				t.Errorf("re-encoding an unchanged base block changed it")
			}
			h, err := Open(b)
			if err != nil {
				t.Fatal(err)
			}
			if dirty, why := h.Dirty(); dirty != tc.dirty || errors.Is(h.DirtyErr(), ErrDirtyHive) != tc.dirty || dirty && why == "" {
				t.Errorf("Hive.Dirty() = %v %q, DirtyErr %v; want dirty %v", dirty, why, h.DirtyErr(), tc.dirty)
			}
			if int(bb.HiveBinsDataSize)+BaseBlockSize > len(b) {
				t.Errorf("hive bins size %d exceeds file", bb.HiveBinsDataSize)
			}
		})
	}
}

func TestBaseBlockEncodeRoundTrip(t *testing.T) {
	b, err := os.ReadFile(testutil.CorpusFile(t, "yarp-olddirty"))
	if err != nil {
		t.Fatal(err)
	}
	bb, err := ParseBaseBlock(b)
	if err != nil {
		t.Fatal(err)
	}
	bb.SecondarySequence = bb.PrimarySequence
	bb.FileName = `\??\C:\x`
	out := bb.Bytes()
	bb2, err := ParseBaseBlock(out)
	if err != nil {
		t.Fatal(err)
	}
	if bb2.Dirty() || !bb2.ChecksumValid() || bb2.FileName != `\??\C:\x` || !bb2.LastWritten.Equal(bb.LastWritten) {
		t.Errorf("round trip: %+v", bb2)
	}
	if !bytes.Equal(out[regfChecksumOffset+4:], b[regfChecksumOffset+4:BaseBlockSize]) {
		t.Errorf("bytes after the checksum changed")
	}
}

func TestBaseBlockChecksumSpecialCases(t *testing.T) {
	b := make([]byte, BaseBlockSize)
	if got := BaseBlockChecksum(b); got != 1 {
		t.Errorf("all-zero XOR: got %#x, want 1", got)
	}
	binary.LittleEndian.PutUint32(b, 0xFFFFFFFF)
	if got := BaseBlockChecksum(b); got != 0xFFFFFFFE {
		t.Errorf("all-ones XOR: got %#x, want 0xFFFFFFFE", got)
	}
	binary.LittleEndian.PutUint32(b[4:], 0x0F0F0F0F)
	if got := BaseBlockChecksum(b); got != 0xF0F0F0F0 {
		t.Errorf("got %#x", got)
	}
}

func TestParseBaseBlockBad(t *testing.T) {
	var fe *FormatError
	if _, err := ParseBaseBlock(make([]byte, 100)); !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
		t.Errorf("truncated: %v", err)
	}
	b := make([]byte, BaseBlockSize)
	copy(b, "regX")
	if _, err := ParseBaseBlock(b); !errors.As(err, &fe) || fe.Offset != regfSignatureOffset {
		t.Errorf("bad signature: %v", err)
	}
	copy(b, "regf")
	binary.LittleEndian.PutUint32(b[regfMajorVersionOffset:], 1)
	binary.LittleEndian.PutUint32(b[regfMinorVersionOffset:], 99)
	if _, err := ParseBaseBlock(b); !errors.As(err, &fe) || fe.Offset != regfMinorVersionOffset {
		t.Errorf("bad minor version: %v", err)
	}
}
