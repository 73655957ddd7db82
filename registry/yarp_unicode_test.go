package registry

import (
	"slices"
	"sort"
	"testing"
	"unicode/utf16"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestLfHintRule pins the name-hint rule of lf lists: Latin-1 characters
// are stored as bytes, and a character above U+00FF among the first four
// makes the whole hint zero (what Windows wrote in yarp's hives).
func TestLfHintRule(t *testing.T) {
	for _, c := range []struct {
		name string
		want uint32
	}{
		{"abc", 0x00636261},
		{"abcdef", 0x64636261},
		{"ëigenaar", 0x656769eb},
		{"Привет", 0},
		{"keyЖ", 0},
		{"Ÿ", 0},
		{"\U00010400", 0},
		{"", 0},
	} {
		if got := lfHint(utf16.Encode([]rune(c.name))); got != c.want {
			t.Errorf("lfHint(%q) = 0x%08x, want 0x%08x", c.name, got, c.want)
		}
	}
}

// TestNonLatin1NamesCheckClean runs Check over yarp's hives whose lf lists
// hold names with characters above U+00FF (hint 0, as Windows writes it):
// none may be reported, and editing such a hive must work, with the new
// keys read back by libhivex.
func TestNonLatin1NamesCheckClean(t *testing.T) {
	for _, name := range []string{"UnicodeHive", "ExtendedASCIIHive", "Carving/0"} {
		t.Run(name, func(t *testing.T) {
			h, err := OpenFile(testutil.CorpusFile(t, "yarp-hives/"+name))
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Check(); err != nil {
				t.Fatalf("Check: %v", err)
			}
		})
	}

	path := testutil.CorpusFile(t, "yarp-hives/UnicodeHive")
	h, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	root, err := h.Root()
	if err != nil {
		t.Fatal(err)
	}
	subs, err := root.Subkeys()
	if err != nil || len(subs) == 0 {
		t.Fatalf("UnicodeHive root subkeys: %v", err)
	}
	sig, _, err := h.readList(root.rec.subkeyList)
	if err != nil || sig != sigLF {
		t.Fatalf("UnicodeHive's root list is %q (%v); the test wants an lf list", sig[:], err)
	}
	e, err := NewEditor(h)
	if err != nil {
		t.Fatalf("NewEditor refused a hive Windows wrote: %v", err)
	}
	added := []string{`Жёлудь`, `Привет\Ещё один`, `abcЖ`, `Zzz`}
	for _, k := range added {
		if err := e.CreateKey(k); err != nil {
			t.Fatalf("CreateKey(%q): %v", k, err)
		}
	}
	res, err := e.Save()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Open(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Check(); err != nil {
		t.Fatalf("edited hive fails Check: %v", err)
	}
	want := hivexDump(t, writeTemp(t, "edited", res.Data))
	sort.Strings(want)
	got := sortedDump(t, res.Data)
	diffSorted(t, got, want)
	for _, k := range added {
		if !slices.Contains(want, dumpLine{K: k}.String()) {
			t.Errorf("libhivex does not see the new key %q", k)
		}
	}
}
