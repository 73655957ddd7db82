package cab

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// Fuzz seeds are made at run time from the shared corpus (never copied
// into the repository) and from gcab; crashers the fuzzer finds land in
// testdata/fuzz/ and are kept.

// corpusCabs returns the shared corpus cabinets that are present.
func corpusCabs() [][]byte {
	dir := os.Getenv("KVMIFY_CORPUS")
	if dir == "" {
		dir = filepath.Join(testutil.RepoRoot(), "..", "shared", "corpus")
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "cab", "*.cab"))
	var out [][]byte
	for _, p := range paths {
		// large-files-cab.cab expands to 14 MiB per run: too slow a seed.
		if strings.Contains(p, "large-files") {
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
			out = append(out, b)
		}
	}
	return out
}

// folderPayloads returns the CFDATA payloads of each folder of a cabinet
// using method, concatenated with their uncompressed sizes, as seeds for
// the decoder fuzzers.
func folderPayloads(b []byte, method int) [][]byte {
	c, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, f := range c.Folders {
		if f.Compression.Method() != method {
			continue
		}
		var seed []byte
		seed = append(seed, byte(f.Compression.Window()))
		off := f.DataOffset
		for i := 0; i < f.DataBlocks; i++ {
			hdr := make([]byte, cfdataSize+c.Header.DataReserve)
			if c.readAt(hdr, off, "") != nil {
				break
			}
			n := int64(le16(hdr[4:]))
			data := make([]byte, n)
			if c.readAt(data, off+int64(len(hdr)), "") != nil {
				break
			}
			seed = append(seed, hdr[4:8]...)
			seed = append(seed, data...)
			off += int64(len(hdr)) + n
		}
		out = append(out, seed)
	}
	return out
}

func FuzzCabinet(f *testing.F) {
	for _, b := range corpusCabs() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var names []string
		for _, m := range c.Files {
			names = append(names, m.Name)
		}
		for _, n := range names {
			_ = c.Extract([]string{n}, func(_ *File, r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
		}
	})
}

// fuzzDecoder feeds a decoder blocks framed as in the seeds: a window byte,
// then per block cbData and cbUncomp (little-endian 16-bit) and the data.
func fuzzDecoder(dec decompressor, b []byte) error {
	out := make([]byte, maxFrame)
	for len(b) >= 4 {
		cbData, cbUncomp := int(le16(b)), int(le16(b[2:]))
		b = b[4:]
		if cbData > len(b) {
			cbData = len(b)
		}
		if cbUncomp > maxFrame || cbUncomp == 0 {
			return nil
		}
		if err := dec.decode(b[:cbData], out[:cbUncomp]); err != nil {
			return err
		}
		b = b[cbData:]
	}
	return nil
}

// lzxFuzzWindow takes the window from a seed's first byte: as is when
// LZX allows it, else folded into range.
func lzxFuzzWindow(b byte) int {
	if w := int(b); w >= lzxMinWindow && w <= lzxMaxWindow {
		return w
	}
	return lzxMinWindow + int(b)%(lzxMaxWindow-lzxMinWindow+1)
}

// TestFuzzSeedsDecode checks the decoder seeds are valid streams, so
// the fuzzers start from inputs that reach deep into the decoders.
func TestFuzzSeedsDecode(t *testing.T) {
	for i, s := range lzxSeeds() {
		dec, _ := newLZX(lzxFuzzWindow(s[0]))
		if err := fuzzDecoder(dec, s[1:]); err != nil {
			t.Errorf("encoder seed %d: %v", i, err)
		}
	}
	for _, b := range corpusCabs() {
		for i, s := range folderPayloads(b, CompressLZX) {
			dec, _ := newLZX(lzxFuzzWindow(s[0]))
			if err := fuzzDecoder(dec, s[1:]); err != nil {
				t.Logf("LZX seed %d: %v (a malformed corpus cabinet's)", i, err)
			}
		}
	}
	for _, b := range corpusCabs() {
		for i, s := range folderPayloads(b, CompressMSZIP) {
			if err := fuzzDecoder(&mszip{}, s[1:]); err != nil {
				t.Logf("MSZIP seed %d: %v (a malformed corpus cabinet's)", i, err)
			}
		}
	}
}

func FuzzLZX(f *testing.F) {
	for _, b := range corpusCabs() {
		for _, s := range folderPayloads(b, CompressLZX) {
			f.Add(s)
		}
	}
	f.Add([]byte{21, 4, 0, 0, 0x80, 0, 0, 0, 0})
	for _, s := range lzxSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		dec, err := newLZX(lzxFuzzWindow(b[0]))
		if err != nil {
			t.Fatal(err)
		}
		_ = fuzzDecoder(dec, b[1:])
	})
}

func FuzzMSZIP(f *testing.F) {
	for _, b := range corpusCabs() {
		for _, s := range folderPayloads(b, CompressMSZIP) {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		_ = fuzzDecoder(&mszip{}, b[1:])
	})
}

// lzxSeeds are streams of uncompressed and verbatim blocks from the test
// encoder, with E8 translation.
func lzxSeeds() [][]byte {
	const n = 70000
	data := lzxTestData(n)
	seed := []byte{lzxMinWindow}
	plan := []lzxBlockPlan{{lzxBlockVerbatim, 1001}, {lzxBlockUncompressed, 40001}, {lzxBlockVerbatim, n - 41002}}
	for i, fr := range lzxEncode(data, 1<<20, plan) {
		seed = binary.LittleEndian.AppendUint16(seed, uint16(len(fr)))
		seed = binary.LittleEndian.AppendUint16(seed, uint16(min(maxFrame, n-i*maxFrame)))
		seed = append(seed, fr...)
	}
	return [][]byte{seed}
}
