package registry

import (
	"encoding/hex"
	"testing"
)

// TestMarvin32Vectors checks the published Marvin32 test vectors of the .NET
// runtime's MarvinTests (seed 0x004FB61A001BDBCC, inputs of 0..7 bytes).
func TestMarvin32Vectors(t *testing.T) {
	const seed = 0x004FB61A001BDBCC
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0x30ED35C100CD3C7D},
		{"af", 0x48E73FC77D75DDC1},
		{"e70f", 0xB5F6E1FC485DBFF8},
		{"37f495", 0xF0B07C789B8CF7E8},
		{"8642dc59", 0x7008F2E87E9CF556},
		{"153fb79826", 0xE6C08C6DA2AFA997},
		{"0932e6246c47", 0x6F04BF1A5EA24060},
		{"ab427ea8d10fc7", 0xE11847E4F0678C41},
	} {
		in, err := hex.DecodeString(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Marvin32(seed, in); got != tc.want {
			t.Errorf("Marvin32(%q) = %#016x, want %#016x", tc.in, got, tc.want)
		}
	}
}

func BenchmarkMarvin32(b *testing.B) {
	data := make([]byte, 64<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		Marvin32(logEntryHashSeed, data)
	}
}
