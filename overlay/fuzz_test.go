package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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

// seedOverlayFile is a small real overlay file with data, zero and metadata
// entries, for fuzz seeds.
func seedOverlayFile(f *testing.F) ([]byte, *loaded) {
	_, src, _ := newSource(f, 6*testBS+100, 301)
	path := filepath.Join(f.TempDir(), "ov")
	o := mustOpen(f, path, src, Options{})
	o.WriteAt(make([]byte, 2*testBS), testBS-5)
	o.Zero(4*testBS, testBS)
	o.SetMeta("bootfix", []byte(`{"plan":1}`))
	o.WriteAt([]byte{7}, 6*testBS+10)
	o.Close()
	file, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	st, err := load(bytes.NewReader(file), int64(len(file)), loadOptions{})
	if err != nil {
		f.Fatal(err)
	}
	return file, st
}

// FuzzDecodeHeader: a header either fails with a FormatError or decodes to
// fields that encode back to the same bytes.
func FuzzDecodeHeader(f *testing.F) {
	file, _ := seedOverlayFile(f)
	f.Add(file[:headerSize])
	f.Add(file[:hdrVersionOff+4])
	f.Add([]byte(headerMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		if got := h.encode(); !bytes.Equal(got, b[:headerSize]) {
			t.Fatalf("header does not round-trip:\n%x\n%x", got, b[:headerSize])
		}
	})
}

// FuzzDecodeRoot: a root copy either fails with a FormatError or encodes
// back to the same bytes; a root location's two copies are read without
// panicking whatever they hold.
func FuzzDecodeRoot(f *testing.F) {
	file, _ := seedOverlayFile(f)
	f.Add(file[rootAOffset : rootAOffset+rootRegionSize])
	f.Add(file[rootBOffset : rootBOffset+rootRegionSize])
	f.Add(make([]byte, rootRegionSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRoot(b, rootAOffset)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
		} else if got := r.encode(); !bytes.Equal(got, b[:rootSize]) {
			t.Fatalf("root does not round-trip")
		}
		region := make([]byte, rootRegionSize)
		copy(region, b)
		loc, err := readRootLoc(bytes.NewReader(region), 0)
		if err != nil {
			t.Fatal(err)
		}
		if loc.root != nil && loc.damage == nil && loc.blank {
			t.Fatal("a location is both blank and holds a root")
		}
	})
}

// FuzzDecodeMap: a map record either fails with a FormatError or decodes to
// entries that re-encode to a record that decodes to the same thing.
func FuzzDecodeMap(f *testing.F) {
	file, st := seedOverlayFile(f)
	rec := file[st.root.MapOffset : st.root.MapOffset+st.root.MapLength]
	f.Add(rec, int64(7), int64(16))
	f.Add(rec[:mapFixedSize], int64(7), int64(16))
	f.Fuzz(func(t *testing.T, b []byte, nblocks, nslots int64) {
		if nblocks < 0 || nblocks > 1<<20 || nslots < 0 {
			return
		}
		const spb = defaultBlockSize / sumSize
		root := &rawRoot{MapCRC: crc32.Checksum(b, crcTable)}
		if len(b) >= mapGenerationOff+8 {
			root.Generation = binary.LittleEndian.Uint64(b[mapGenerationOff:])
		}
		m, err := decodeMap(b, dataOffset, root, nblocks, nslots, spb)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		if len(m.Sums) != spb*countData(m.Entries) {
			t.Fatalf("%d checksums for %d data entries", len(m.Sums), countData(m.Entries))
		}
		keys := make([]string, 0, len(m.Meta))
		for k := range m.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		slotSums := map[int64][]uint32{}
		k := 0
		for _, e := range m.Entries {
			if e.Value >= valueSlotBase {
				slotSums[int64(e.Value-valueSlotBase)] = m.Sums[k*spb : (k+1)*spb]
				k++
			}
		}
		again := encodeMap(m.Generation, len(m.Entries), countData(m.Entries), spb, func(fn func(mapEntry)) {
			for _, e := range m.Entries {
				fn(e)
			}
		}, func(s int64) []uint32 { return slotSums[s] }, m.Meta, keys)
		root.MapCRC = crc32.Checksum(again, crcTable)
		m2, err := decodeMap(again, dataOffset, root, nblocks, nslots, spb)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded record decodes differently: %v", err)
		}
	})
}

func countData(es []mapEntry) int {
	n := 0
	for _, e := range es {
		if e.Value >= valueSlotBase {
			n++
		}
	}
	return n
}
