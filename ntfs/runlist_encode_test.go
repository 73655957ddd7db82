package ntfs

import (
	"encoding/binary"
	"errors"
	"testing"
)

// A hand-built runlist in the layout documented for NTFS mapping pairs:
// header byte (offset width << 4 | length width), length, LCN delta.
func TestEncodeRunlistKnownBytes(t *testing.T) {
	runs := []Run{
		{VCN: 0, LCN: 0x1234, Length: 0x18},           // 0x21 18 34 12
		{VCN: 0x18, LCN: 0x1234 - 0x34, Length: 0x80}, // length needs 2 bytes (0x80 is negative in 1); delta -0x34 fits 1
		{VCN: 0x98, Sparse: true, Length: 0x10},       // 0x01 10
		{VCN: 0xa8, LCN: 0x123456, Length: 1},         // delta 0x122256 -> 3 bytes
	}
	got, err := encodeRunlist(runs)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x21, 0x18, 0x34, 0x12,
		0x12, 0x80, 0x00, 0xcc,
		0x01, 0x10,
		0x31, 0x01, 0x56, 0x22, 0x12,
		0x00,
	}
	if string(got) != string(want) {
		t.Fatalf("encoded % x\nwant     % x", got, want)
	}
	dec, n, err := decodeRunlist(got, 0, 1<<40, 0)
	if err != nil || n != len(got) {
		t.Fatalf("decode: %v (consumed %d of %d)", err, n, len(got))
	}
	for i := range runs {
		if dec[i].VCN != runs[i].VCN || dec[i].Length != runs[i].Length || dec[i].Sparse != runs[i].Sparse || (!runs[i].Sparse && dec[i].LCN != runs[i].LCN) {
			t.Errorf("run %d: decoded %+v, want %+v", i, dec[i], runs[i])
		}
	}
}

func TestEncodeRunlistRejectsBadRuns(t *testing.T) {
	for name, runs := range map[string][]Run{
		"zero length": {{VCN: 0, LCN: 5, Length: 0}},
		"gap":         {{VCN: 0, LCN: 5, Length: 2}, {VCN: 3, LCN: 9, Length: 1}},
		"negative":    {{VCN: 0, LCN: -1, Length: 2}},
	} {
		if _, err := encodeRunlist(runs); !errors.Is(err, ErrBadRunlist) {
			t.Errorf("%s: got %v, want ErrBadRunlist", name, err)
		}
	}
}

// FuzzRunlistRoundTrip checks that any runlist the encoder accepts decodes
// back to the same runs. The fuzzer's bytes are read as (length, LCN,
// sparse) triples.
func FuzzRunlistRoundTrip(f *testing.F) {
	f.Add([]byte{0x18, 0, 0, 0, 0x34, 0x12, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const triple = 9
		var runs []Run
		vcn := int64(0)
		const clusters = int64(1) << 48
		for len(data) >= triple && len(runs) < 4096 {
			length := int64(binary.LittleEndian.Uint32(data)) & 0x0fffffff
			lcn := int64(binary.LittleEndian.Uint32(data[4:])) * int64(1+data[8]>>1)
			sparse := data[8]&1 != 0
			data = data[triple:]
			if length == 0 {
				length = 1
			}
			r := Run{VCN: vcn, Length: length, Sparse: sparse}
			if !sparse {
				r.LCN = lcn % (clusters - length)
			}
			runs = append(runs, r)
			vcn += length
		}
		enc, err := encodeRunlist(runs)
		if err != nil {
			t.Fatalf("encode %v: %v", runs, err)
		}
		dec, n, err := decodeRunlist(enc, 0, clusters, 0)
		if err != nil {
			t.Fatalf("decode of encoded %v: %v", runs, err)
		}
		if n != len(enc) || len(dec) != len(runs) {
			t.Fatalf("decoded %d runs from %d of %d bytes, want %d runs", len(dec), n, len(enc), len(runs))
		}
		for i := range runs {
			a, b := runs[i], dec[i]
			if a.VCN != b.VCN || a.Length != b.Length || a.Sparse != b.Sparse || a.LCN != b.LCN {
				t.Fatalf("run %d: decoded %+v, want %+v", i, b, a)
			}
		}
	})
}
