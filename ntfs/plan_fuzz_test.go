package ntfs

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzPlanRewrite damages the metadata of a small real volume (built by
// mkntfs and ntfs-3g) and plans rewrites on it: the planner must return an
// error or writes inside the volume, never panic, hang or over-allocate.
// The input is an offset (into the first 64 MFT records, or anywhere when
// its top bit is set) and the bytes to put there.
func FuzzPlanRewrite(f *testing.F) {
	planTools(f)
	dir := f.TempDir()
	img := filepath.Join(dir, "fuzz.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Truncate(img, 6<<20); err != nil {
		f.Fatal(err)
	}
	run(f, "mkntfs", "-q", "-F", "-f", "-c", "4096", "-s", "512", "-p", "0", "-H", "255", "-S", "63", img)
	const target = "/d/SYSTEM"
	withMount(f, img, "", func(mnt string) {
		if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, target), randomBytes(13, 40000), 0o644); err != nil {
			f.Fatal(err)
		}
	})
	pristine, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	v, err := Open(bytes.NewReader(pristine), int64(len(pristine)))
	if err != nil {
		f.Fatal(err)
	}
	mftStart := v.Boot().MFTCluster * v.ClusterSize
	const mftSpan = 64 * 1024
	seed := func(off uint32, patch []byte) {
		f.Add(binary.LittleEndian.AppendUint32(nil, off), patch)
	}
	seed(0, nil)
	seed(64*1024+0x100, []byte{0xff, 0xff, 0xff, 0x7f}) // inside the target's record (number 64)
	seed(6*1024+0x140, []byte{0x41, 0x10, 0x20, 0x30})  // $Bitmap's runlist
	seed(5*1024+0x98, []byte{0x00, 0x00, 0x10, 0x00})   // root index
	seed(1<<31|0x2000, bytes.Repeat([]byte{0xff}, 512))
	f.Fuzz(func(t *testing.T, offb, patch []byte) {
		if len(offb) < 4 || len(patch) > 4096 {
			return
		}
		off := binary.LittleEndian.Uint32(offb)
		img := bytes.Clone(pristine)
		var at int64
		if off&(1<<31) != 0 {
			at = int64(off&^(1<<31)) % int64(len(img))
		} else {
			at = mftStart + int64(off)%mftSpan
		}
		copy(img[at:], patch)
		v, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		for _, n := range []int{40000, 39000, 90000} {
			content := make([]byte, n)
			ws, err := v.PlanRewrite(target, content, PlanOptions{AllowUnsafeVolume: true})
			if err != nil {
				continue
			}
			for _, w := range ws {
				if w.Offset < 0 || w.Offset+int64(len(w.Data)) > int64(len(img)) {
					t.Fatalf("%s write at %d of %d bytes outside the %d-byte volume", w.What, w.Offset, len(w.Data), len(img))
				}
			}
		}
	})
}
