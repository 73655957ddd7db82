package nbd

import (
	"errors"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

// checkDescs asserts the spec's rules for one BLOCK_STATUS answer.
func checkDescs(t *testing.T, descs []blockDesc, off, length, size int64, reqOne bool) {
	t.Helper()
	if len(descs) == 0 {
		t.Fatal("no descriptors")
	}
	var sum int64
	for i, d := range descs {
		if d.Length == 0 {
			t.Fatalf("descriptor %d has length 0", i)
		}
		if i < len(descs)-1 && sum+int64(d.Length) >= length {
			t.Fatalf("descriptors before the last reach the requested length: %v", descs)
		}
		sum += int64(d.Length)
	}
	if off+sum > size {
		t.Fatalf("descriptors run past the export: %d+%d > %d", off, sum, size)
	}
	if reqOne && (len(descs) != 1 || int64(descs[0].Length) > length) {
		t.Fatalf("REQ_ONE answer %v for %d bytes", descs, length)
	}
}

func TestDescribeRealSparseFile(t *testing.T) {
	path, size := hugeImage(t)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const (
		hole = stateHole | stateZero
		data = 0
		mib  = 1 << 20
		u32  = 1<<32 - 1
	)
	for _, tc := range []struct {
		name        string
		off, length int64
		reqOne      bool
		want        []blockDesc
	}{
		// The 5 GiB hole is longer than a descriptor: it is split at a
		// 512-aligned length, and the last descriptor may pass the range.
		{"from 0", 0, u32, false, []blockDesc{{mib, hole}, {4096, data}, {maxDescLen, hole}}},
		{"inside the long hole", 2 * mib, u32, false, []blockDesc{{maxDescLen, hole}, {5<<30 - 2*mib - maxDescLen, hole}}},
		{"REQ_ONE clamps", mib, 100, true, []blockDesc{{100, data}}},
		{"REQ_ONE stops at the extent", mib - 512, 8192, true, []blockDesc{{512, hole}}},
		{"tail", size - 8192, 8192, false, []blockDesc{{4096, hole}, {4096, data}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := describe(src, size, tc.off, tc.length, tc.reqOne)
			if err != nil {
				t.Fatal(err)
			}
			checkDescs(t, got, tc.off, tc.length, size, tc.reqOne)
			if len(got) != len(tc.want) {
				t.Fatalf("descriptors %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("descriptors %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestDescribeCapsDescriptors checks that a badly fragmented file gets a
// bounded answer that the client continues from.
func TestDescribeCapsDescriptors(t *testing.T) {
	const pairs = maxBlockDescs/2 + 200
	var runs []sparseRun
	for i := int64(0); i < pairs; i++ {
		runs = append(runs, sparseRun{off: i * 8192, n: 4096})
	}
	size := int64(pairs * 8192)
	path := makeSparseImage(t, "frag.img", size, runs)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got, err := describe(src, size, 0, size, false)
	if err != nil {
		t.Fatal(err)
	}
	checkDescs(t, got, 0, size, size, false)
	if len(got) != maxBlockDescs {
		t.Fatalf("%d descriptors, want the cap %d", len(got), maxBlockDescs)
	}
	for i, d := range got {
		want := blockDesc{4096, 0}
		if i%2 == 1 {
			want.Flags = stateHole | stateZero
		}
		if d != want {
			t.Fatalf("descriptor %d is %v, want %v", i, d, want)
		}
	}
}

// brokenExtents is a backend layer that breaks the Extenter contract in
// one chosen way, to show the server distrusts it.
type brokenExtents struct {
	readerOnly
	calls int
	mode  string
}

func (b *brokenExtents) Extents(off, length int64) ([]disk.Extent, error) {
	b.calls++
	switch {
	case b.mode == "error":
		return nil, errors.New("backend failure")
	case b.mode == "error later" && b.calls > 1:
		return nil, errors.New("backend failure")
	case b.mode == "empty":
		return nil, nil
	case b.mode == "zero length":
		return []disk.Extent{{Length: 0}}, nil
	case b.mode == "past end":
		return []disk.Extent{{Length: b.Size() - off + 4096}}, nil
	case b.mode == "equal neighbours":
		return []disk.Extent{{Length: 512}, {Length: 512}}, nil
	}
	// "error later": a valid first answer that stops early.
	return []disk.Extent{{Length: 4096, Flags: disk.ExtentHole}}, nil
}

func TestDescribeDistrustsBackend(t *testing.T) {
	path := makeImage(t, "b.img", 1<<20, 75)
	fd := openFileDisk(t, path)
	for _, mode := range []string{"error", "empty", "zero length", "past end", "equal neighbours"} {
		b := &brokenExtents{readerOnly: readerOnly{fd}, mode: mode}
		if got, err := describe(b, b.Size(), 0, 65536, false); err == nil {
			t.Errorf("%s: descriptors %v, want an error", mode, got)
		}
	}
	b := &brokenExtents{readerOnly: readerOnly{fd}, mode: "error later"}
	got, err := describe(b, b.Size(), 0, 65536, false)
	if err != nil || len(got) != 1 || got[0] != (blockDesc{4096, stateHole}) {
		t.Errorf("error after a first answer: %v %v, want that answer alone", got, err)
	}
	// Without an Extenter the whole range is data.
	got, err = describe(nil, 1<<20, 512, 1000, false)
	if err != nil || len(got) != 1 || got[0] != (blockDesc{1000, 0}) {
		t.Errorf("no Extenter: %v %v", got, err)
	}

	// Through the server a failing backend gives an EIO error chunk and the
	// connection stays usable.
	sock := startServer(t, oneExport(&brokenExtents{readerOnly: readerOnly{fd}, mode: "past end"}, false))
	cl := structuredClient(t, sock)
	if _, errno := cl.blockStatus(0, 0, 4096); errno != errnoIO {
		t.Errorf("broken backend: errno %d, want EIO", errno)
	}
	if ds, errno := cl.blockStatus(0, 0, 4096); errno != errnoIO || ds != nil {
		t.Errorf("broken backend again: %v errno %d", ds, errno)
	}
	stillServes(t, sock, patternBytes(75, 1<<20))
}
