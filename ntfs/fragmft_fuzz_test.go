package ntfs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// sparseVolume is a volume of the given size that is zeros except for the
// pieces placed in it (offset → bytes), so a 60 GB volume costs only what
// its pieces hold.
type sparseVolume struct {
	size   int64
	pieces map[int64][]byte
}

func (s *sparseVolume) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for at, b := range s.pieces {
		lo, hi := max(at, off), min(at+int64(len(b)), off+int64(len(p)))
		if lo < hi {
			copy(p[lo-off:hi-off], b[lo-at:hi-at])
		}
	}
	return len(p), nil
}

// FuzzFragmentedMFT mutates the MFT records and the attribute list of the
// corpus's fragmented-MFT volume (record 0, whose $DATA continues in
// extension record 15 through a non-resident $ATTRIBUTE_LIST, and records
// 15 to 17) and opens the volume's MFT: any input either maps the MFT or
// is refused with an error, never a panic or a hang.
func FuzzFragmentedMFT(f *testing.F) {
	dir := testutil.CorpusFile(f, "ntfs-fragmented-mft")
	pieces := map[int64][]byte{}
	names, _ := filepath.Glob(filepath.Join(dir, "0x*.bin"))
	for _, n := range names {
		off, err := strconv.ParseInt(filepath.Base(n)[2:len(filepath.Base(n))-4], 16, 64)
		if err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		pieces[off] = b
	}
	boot := pieces[0]
	if len(boot) < bootSectorSize {
		f.Skip("no boot sector piece")
	}
	size := (int64(le64(boot[bootTotalSectorsOff:])) + 1) * int64(le16(boot[bootBytesPerSectorOff:]))
	const (
		mftOff   = 0xc0000000
		listOff  = 0xca53a6000
		recBytes = 1024
	)
	seed := make([]byte, 0, 5*recBytes)
	for _, at := range []int64{mftOff, mftOff + 15*recBytes, mftOff + 16*recBytes, mftOff + 17*recBytes, listOff} {
		b := pieces[at]
		if len(b) != recBytes {
			f.Skipf("piece at 0x%x missing", at)
		}
		seed = append(seed, b...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		// Inputs of any length overlay the seed, so every mutation
		// reaches the records.
		b := append([]byte(nil), seed...)
		copy(b, in)
		v := &sparseVolume{size: size, pieces: map[int64][]byte{0: boot}}
		for i, at := range []int64{mftOff, mftOff + 15*recBytes, mftOff + 16*recBytes, mftOff + 17*recBytes, listOff} {
			v.pieces[at] = b[i*recBytes : (i+1)*recBytes]
		}
		vol, err := openMFT(v, size)
		if err != nil {
			return
		}
		if _, err := vol.ReadRecord(uint64(vol.MFT().Size()/vol.RecordSize) - 1); err == nil {
			return
		}
		if f, err := vol.OpenRecord(RecordMFT); err == nil {
			f.Stream("")
		}
	})
}
