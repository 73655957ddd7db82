package registry

import (
	"os"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

func loadWin7(b *testing.B) []byte {
	data, err := os.ReadFile(testutil.CorpusFile(b, "win7-sp1-x64.SYSTEM"))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkWalkValuesWin7 parses the Windows 7 hive and reads every key and
// value with its data (the parsing half of an export).
func BenchmarkWalkValuesWin7(b *testing.B) {
	data := loadWin7(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		h, err := Open(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Walk(func(k *Key) error { _, err := k.Values(); return err }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckWin7 runs the invariant checker over the Windows 7 hive, as
// the editor does after every edit.
func BenchmarkCheckWin7(b *testing.B) {
	h, err := Open(loadWin7(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(h.Bytes())))
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Check(); err != nil {
			b.Fatal(err)
		}
	}
}
