package ntfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

// propDirs are the directories of the property tests' volume: the root,
// one whose index is only an $INDEX_ROOT, one of a few blocks and one deep
// enough for internal nodes.
var propDirs = []string{`\`, `\small`, `\a`, `\a\deep`}

func propTree(t *testing.T) func(string) {
	return func(mnt string) {
		writeFile(t, mnt, "small/x.txt", []byte("x"))
		for i := 0; i < 40; i++ {
			writeFile(t, mnt, fmt.Sprintf("a/file%02d.dat", i), randomBytes(uint64(i), 500))
		}
		for i := 0; i < 150; i++ {
			writeFile(t, mnt, "a/deep/"+longName("p", 3*i), []byte{byte(i)})
		}
	}
}

// randomNewFile picks a directory, an 8.3 or long name (unique by n) and
// a size from empty to a few hundred KiB, mostly driver-sized.
func randomNewFile(r *rand.Rand, n int) NewFile {
	dir := propDirs[r.IntN(len(propDirs))]
	var name string
	switch r.IntN(3) {
	case 0:
		name = fmt.Sprintf("n%05d.sys", n)
	case 1:
		name = fmt.Sprintf("Created %d %s.bin", n, strings.Repeat("y", r.IntN(150)))
	default:
		name = longName(fmt.Sprintf("p%d", r.IntN(450)), n)
	}
	size := 0
	switch r.IntN(4) {
	case 0:
		size = r.IntN(100)
	case 1, 2:
		size = 10000 + r.IntN(100000)
	default:
		size = r.IntN(300000)
	}
	return NewFile{Dir: dir, Name: name, Content: randomBytes(r.Uint64(), size)}
}

func pathOf(nf NewFile) string {
	return strings.ReplaceAll(strings.TrimRight(nf.Dir, `\`)+`\`+nf.Name, `\`, "/")
}

// TestPlanCreateProperty runs random sequences of creation plans on copies
// of an ntfs-3g-made volume, each plan made on the volume as the previous
// ones left it, and after each applied plan checks with ntfsfix -n, an
// ntfs-3g mount (every created file byte-equal, every other file
// unchanged), ntfs-3g lookups of every listed name, and our reader.
func TestPlanCreateProperty(t *testing.T) {
	createTools(t)
	img := buildCreateImage(t, 4096, 32, propTree(t))
	orig := treeHashes(t, img)
	sequences := 20
	if testing.Short() {
		sequences = 3
	}
	r := rand.New(rand.NewPCG(2026, 13))
	n := 0
	for seq := 0; seq < sequences; seq++ {
		work := sparseCopy(t, img)
		created := map[string][]byte{}
		var freed *Created // a created file ntfs-3g deleted after the last step
		freedSeq := uint16(0)
		steps := 1 + r.IntN(3)
		for step := 0; step < steps; step++ {
			var files []NewFile
			for k := 1 + r.IntN(12); k > 0; k-- {
				files = append(files, randomNewFile(r, n))
				n++
			}
			v := openVolumeFile(t, work)
			if freed != nil {
				rec, err := v.ReadRecord(freed.Record)
				if err != nil {
					t.Fatal(err)
				}
				freedSeq = rec.Sequence
			}
			ws, made, err := v.PlanCreate(files, CreateOptions{Now: createClock})
			if err != nil {
				t.Fatalf("sequence %d step %d: %v", seq, step, err)
			}
			checkNoOverlap(t, ws)
			applyInPlace(t, work, ws)
			// The lowest free record is the one ntfs-3g just freed; it
			// keeps the sequence number ntfs-3g raised when freeing it.
			if freed != nil {
				if made[0].Record != freed.Record {
					t.Errorf("sequence %d step %d: first file got record %d, not the freed %d", seq, step, made[0].Record, freed.Record)
				}
				if made[0].Sequence != freedSeq || made[0].Sequence == freed.Sequence {
					t.Errorf("sequence %d step %d: reused record %d has sequence %d (was %d, freed %d)", seq, step, freed.Record, made[0].Sequence, freed.Sequence, freedSeq)
				}
			}
			checkSleuthKit(t, work, made)
			checkAllocated(t, work, made)
			for _, f := range files {
				created["/"+strings.TrimPrefix(pathOf(f), "/")] = f.Content
			}
			// An existing name is refused and plans nothing.
			again := files[r.IntN(len(files))]
			again.Name = strings.ToUpper(again.Name)
			if _, _, err := openVolumeFile(t, work).PlanCreate([]NewFile{again}, CreateOptions{Now: createClock}); !errors.Is(err, ErrExists) {
				t.Fatalf("sequence %d: re-creating %s: %v, want ErrExists", seq, again.Name, err)
			}
			checkVolume(t, work, propDirs)
			// One read-write ntfs-3g mount reads every file back, then
			// deletes the lowest-numbered file this step made, so the next
			// step must reuse its record.
			low := made[0]
			for _, c := range made {
				if c.Record < low.Record {
					low = c
				}
			}
			withMount(t, work, "", func(mnt string) {
				got := hashTree(t, mnt)
				for p, h := range orig {
					if got[p] != h {
						t.Fatalf("sequence %d step %d: %s changed", seq, step, p)
					}
				}
				if len(got) != len(orig)+len(created) {
					t.Fatalf("sequence %d step %d: ntfs-3g sees %d files, want %d", seq, step, len(got), len(orig)+len(created))
				}
				for p, want := range created {
					if got[p] != sha256Sum(want) {
						t.Fatalf("sequence %d step %d: ntfs-3g reads %s differently", seq, step, p)
					}
				}
				if err := os.Remove(filepath.Join(mnt, strings.ReplaceAll(low.Path, `\`, "/"))); err != nil {
					t.Fatalf("ntfs-3g deletes %s: %v", low.Path, err)
				}
			})
			delete(created, "/"+strings.TrimPrefix(strings.ReplaceAll(low.Path, `\`, "/"), "/"))
			freed = &low
		}
	}
}

// hashTree hashes every regular file under a mount point, keyed by its
// path from the volume root.
func hashTree(t *testing.T, mnt string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out["/"+strings.TrimPrefix(p, mnt+"/")] = sha256Sum(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sparseCopy copies img leaving its zero blocks as holes, which keeps the
// twenty copies of the property test cheap.
func sparseCopy(t *testing.T, img string) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "work.img")
	f, err := os.Create(cp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
	const block = 64 << 10
	zero := make([]byte, block)
	for off := 0; off < len(b); off += block {
		chunk := b[off:min(off+block, len(b))]
		if bytes.Equal(chunk, zero[:len(chunk)]) {
			continue
		}
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	return cp
}

func applyInPlace(t *testing.T, img string, ws []disk.Write) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range ws {
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			t.Fatal(err)
		}
	}
}

// The fuzz target's volume is built once per process with mkntfs and
// ntfs-3g and then only read from memory.
var (
	fuzzVolOnce sync.Once
	fuzzVol     []byte
)

// FuzzPlanCreate plans one file with a fuzzed name and size on an
// in-memory ntfs-3g-made volume and checks the round trip: the plan is
// refused with a clear error, or, applied (through disk.WithWrites), our
// reader opens the volume again, finds the file by name with its content, and every
// directory still walks in collation order.
func FuzzPlanCreate(f *testing.F) {
	f.Add("intelide.sys", uint32(5504), uint8(3))
	f.Add("a", uint32(0), uint8(0))
	f.Add("A long name with spaces.txt", uint32(70000), uint8(1))
	f.Add(strings.Repeat("z", 255), uint32(1), uint8(2))
	f.Add("file05.dat", uint32(3), uint8(2))
	f.Add("ÄÖÜ unicode ☃.sys", uint32(4097), uint8(3))
	f.Fuzz(func(t *testing.T, name string, size uint32, dirSel uint8) {
		fuzzVolOnce.Do(func() {
			createTools(t)
			img := buildCreateImage(t, 4096, 16, func(mnt string) {
				writeFile(t, mnt, "small/x.txt", []byte("x"))
				for i := 0; i < 60; i++ {
					writeFile(t, mnt, fmt.Sprintf("a/file%02d.dat", i), []byte{byte(i)})
				}
			})
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			fuzzVol = b
		})
		if fuzzVol == nil {
			t.Skip("no fuzz volume")
		}
		dirs := []string{`\`, `\small`, `\a`}
		nf := NewFile{Dir: dirs[int(dirSel)%len(dirs)], Name: name, Content: randomBytes(uint64(size), int(size%(256<<10)))}
		v, err := Open(bytes.NewReader(fuzzVol), int64(len(fuzzVol)))
		if err != nil {
			t.Fatal(err)
		}
		ws, _, err := v.PlanCreate([]NewFile{nf}, CreateOptions{Now: createClock})
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("unclear error: %v", err)
			}
			return
		}
		// The writes are laid over the volume, not copied into it.
		img, err := disk.WithWrites(bytes.NewReader(fuzzVol), ws)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := Open(img, img.Size())
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		s, err := v2.OpenStream(pathOf(nf))
		if err != nil {
			t.Fatalf("created %q not found: %v", nf.Name, err)
		}
		got := make([]byte, s.Size())
		if _, err := s.ReadAt(got, 0); err != nil && len(got) > 0 {
			t.Fatal(err)
		}
		if !bytes.Equal(got, nf.Content) {
			t.Fatalf("%q reads back %d bytes, want %d", nf.Name, len(got), len(nf.Content))
		}
		for _, d := range dirs {
			df, _, err := v2.Lookup(d)
			if err != nil {
				t.Fatal(err)
			}
			es, err := v2.IndexEntries(df)
			if err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			for i := 1; i < len(es); i++ {
				if v2.compareNames(es[i-1].Key.name16, es[i].Key.name16) >= 0 {
					t.Fatalf("%s: %q before %q", d, es[i-1].Key.Name, es[i].Key.Name)
				}
			}
		}
	})
}
