package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// partsFile is an overlay file assembled from its structures at their
// offsets, zero elsewhere, so the fuzzer mutates the bytes that matter
// instead of 64 KiB of padding.
type partsFile struct {
	hdr, rootA, rootB, rec []byte
	size                   int64
}

func (p *partsFile) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	n := len(b)
	var err error
	if int64(n) > p.size-off {
		n, err = int(p.size-off), io.EOF
	}
	clear(b[:n])
	for _, part := range []struct {
		at int64
		b  []byte
	}{{headerOffset, p.hdr}, {rootAOffset, p.rootA}, {rootBOffset, p.rootB}, {dataOffset, p.rec}} {
		lo, hi := max(off, part.at), min(off+int64(n), part.at+int64(len(part.b)))
		if lo < hi {
			copy(b[lo-off:hi-off], part.b[lo-part.at:hi-part.at])
		}
	}
	return n, err
}

// fuzzSeed splits a real overlay file into the parts FuzzLoad takes; its
// map record is moved to the first slot, which the roots are rewritten to
// point at.
func fuzzSeed(t testing.TB, file []byte) (hdr, rootA, rootB, rec []byte) {
	hdr = file[:headerSize]
	st, err := load(bytes.NewReader(file), int64(len(file)), loadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec = file[st.root.MapOffset : st.root.MapOffset+st.root.MapLength]
	for _, off := range []int64{rootAOffset, rootBOffset} {
		r := bytes.Clone(file[off : off+rootRegionSize])
		if binary.LittleEndian.Uint64(r[rootGenerationOff:]) == st.root.Generation {
			binary.LittleEndian.PutUint64(r[rootMapOffsetOff:], dataOffset)
			root, _ := decodeRoot(r[:rootSize], off)
			if root != nil {
				r = root.encodeCopies()
			}
		}
		if off == rootAOffset {
			rootA = r
		} else {
			rootB = r
		}
	}
	return hdr, rootA, rootB, rec
}

// FuzzLoad feeds corrupted headers, roots and map records to the parser
// that Open and ReadInfo share: it must return an error or a consistent
// state, never panic or allocate beyond the file.
func FuzzLoad(f *testing.F) {
	_, src, _ := newSource(f, 20*testBS+777, 300)
	path := filepath.Join(f.TempDir(), "ov")
	o := mustOpen(f, path, src, Options{})
	o.WriteAt(make([]byte, 3*testBS), testBS-5)
	o.Zero(12*testBS, 3*testBS)
	o.SetMeta("bootfix", []byte(`{"plan":1}`))
	o.WriteAt([]byte{7}, 20*testBS+10)
	o.SetMeta("fingerprint", bytes.Repeat([]byte{0xab}, 40))
	o.Close()
	file, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	hdr, ra, rb, rec := fuzzSeed(f, file)
	f.Add(hdr, ra, rb, rec, int64(dataOffset+len(rec)+4*testBS))
	f.Add(hdr, ra, rb, rec, int64(dataOffset+len(rec)))
	f.Add(hdr, ra, rb, []byte{}, int64(dataOffset))
	f.Fuzz(func(t *testing.T, hdr, rootA, rootB, rec []byte, size int64) {
		if size < 0 || size > 64<<20 {
			return
		}
		st, err := load(&partsFile{hdr: hdr, rootA: rootA, rootB: rootB, rec: rec, size: size}, size, loadOptions{})
		if err != nil {
			var fe *FormatError
			var de *DataError
			if !errors.As(err, &fe) && !errors.As(err, &de) {
				t.Fatalf("error is neither a FormatError nor a DataError: %v", err)
			}
			return
		}
		in := st.info()
		end := int64(0)
		for _, e := range in.Extents {
			if e.Offset < end || e.Length <= 0 || e.Offset+e.Length > in.SourceSize {
				t.Fatalf("bad extent %+v in %+v", e, in.Extents)
			}
			end = e.Offset + e.Length
		}
	})
}
