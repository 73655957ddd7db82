package registry

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// corpusHives are the real hives every parser test runs over.
var corpusHives = []string{
	"xp-sp3-x86.SYSTEM",
	"win7-sp1-x64.SYSTEM",
	"win10-1709-x64.SYSTEM",
	"yarp-olddirty",
	"yarp-olddirty.recovered-by-win7",
}

// dumpLine is one line of testdata/hivexdump.py: a key (V nil) or a value.
type dumpLine struct {
	K string  `json:"k"`
	V *string `json:"v,omitempty"`
	T uint32  `json:"t,omitempty"`
	D string  `json:"d,omitempty"`
}

func (l dumpLine) String() string {
	if l.V == nil {
		return fmt.Sprintf("key %q", l.K)
	}
	return fmt.Sprintf("value %q : %q type %d data %s", l.K, *l.V, l.T, l.D)
}

// hivexDump runs the hivex Python module over the hive at path.
func hivexDump(t *testing.T, path string) []string {
	t.Helper()
	py := testutil.RequirePython3Module(t, "hivex")
	script, err := filepath.Abs(filepath.Join("testdata", "hivexdump.py"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, script, path).Output()
	if err != nil {
		t.Fatalf("hivex dump of %s: %v", path, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var l dumpLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("hivex dump line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l.String())
	}
	return lines
}

// kvmifyDump renders our own walk in the same form as hivexDump.
func kvmifyDump(t *testing.T, h *Hive) []string {
	t.Helper()
	var lines []string
	err := h.Walk(func(k *Key) error {
		lines = append(lines, dumpLine{K: k.Path()}.String())
		vs, err := k.Values()
		if err != nil {
			return err
		}
		for _, v := range vs {
			name := v.Name
			lines = append(lines, dumpLine{K: k.Path(), V: &name, T: uint32(v.Type), D: hex.EncodeToString(v.Raw())}.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestWalkMatchesHivex compares every key, value name, type and raw data
// byte with what libhivex's Python binding reads from the same file.
func TestWalkMatchesHivex(t *testing.T) {
	for _, name := range corpusHives {
		t.Run(name, func(t *testing.T) {
			path := testutil.CorpusFile(t, name)
			want := hivexDump(t, path)
			h, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := kvmifyDump(t, h)
			sort.Strings(want)
			sort.Strings(got)
			diffSorted(t, got, want)
			t.Logf("%d keys and values compared", len(want))
		})
	}
}

// diffSorted reports lines only in got or only in want (at most a few each).
func diffSorted(t *testing.T, got, want []string) {
	t.Helper()
	const maxReport = 10
	var extra, missing int
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || (i < len(got) && got[i] < want[j]):
			if extra++; extra <= maxReport {
				t.Errorf("only kvmify: %s", trunc(got[i]))
			}
			i++
		case i == len(got) || want[j] < got[i]:
			if missing++; missing <= maxReport {
				t.Errorf("only hivex: %s", trunc(want[j]))
			}
			j++
		default:
			i++
			j++
		}
	}
	if extra+missing > 0 {
		t.Errorf("%d lines only in kvmify, %d only in hivex (of %d/%d)", extra, missing, len(got), len(want))
	}
}

func trunc(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
