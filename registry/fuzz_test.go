package registry

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// fuzzSeedSize is how much of a real hive seeds the fuzzer: enough for the
// base block and the first bins.
const fuzzSeedSize = 64 << 10

// truncatedHive cuts a real hive to its first n bytes and fixes the base
// block (bins size, checksum) and the last bin so that it parses as far as
// the bytes go.
func truncatedHive(b []byte, n int) []byte {
	b = append([]byte(nil), b[:n]...)
	bins, err := parseBins(b[BaseBlockSize:])
	size := uint32(0)
	if err == nil && len(bins) > 0 {
		size = bins[len(bins)-1].end()
	} else {
		// Keep whole bins only.
		for off := uint32(0); ; {
			if int(off)+hbinHeaderSize > len(b)-BaseBlockSize {
				break
			}
			s := binary.LittleEndian.Uint32(b[BaseBlockSize+off+hbinSizeOffset:])
			if s == 0 || int(off+s) > len(b)-BaseBlockSize {
				break
			}
			off += s
			size = off
		}
	}
	bb, err := ParseBaseBlock(b)
	if err != nil {
		return b
	}
	bb.HiveBinsDataSize = size
	bb.Encode(b)
	return b[:BaseBlockSize+int(size)]
}

func FuzzOpen(f *testing.F) {
	f.Add(minimalHive())
	for _, name := range []string{"yarp-olddirty.recovered-by-win7", "xp-sp3-x86.SYSTEM"} {
		path := testutil.CorpusFile(f, name)
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(truncatedHive(b, fuzzSeedSize))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Open(data)
		if err != nil {
			return
		}
		h.Dirty()
		_ = h.Walk(func(k *Key) error {
			if _, err := k.ClassName(); err != nil {
				return err
			}
			vs, err := k.Values()
			for _, v := range vs {
				_, _ = v.String()
				_, _ = v.Strings()
				_, _ = v.Uint32()
				_, _ = v.Uint64()
			}
			return err
		})
		_, _ = h.Lookup(`ControlSet001\Services`)
		_ = h.Check()
	})
}
