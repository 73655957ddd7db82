package registry

import (
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// model is what the property test expects of the keys it touched; keys it
// never touched must keep their original content.
type model struct {
	orig    *Hive
	keys    map[string]*wantKey // by folded path
	all     []string            // every existing key path, for random picks
	allIdx  map[string]int      // folded path → index in all
	created []string            // keys the test created and has not deleted
	deleted map[string]string   // folded path → path of keys deleted since
}

func fold(s string) string { return string(utf16Bytes(upcaseUnits(nameUnitsOf(s)))) }

func newModel(t *testing.T, h *Hive) *model {
	m := &model{orig: h, keys: map[string]*wantKey{}, allIdx: map[string]int{}, deleted: map[string]string{}}
	if err := h.Walk(func(k *Key) error { m.addPath(k.Path()); return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *model) addPath(p string) {
	m.allIdx[fold(p)] = len(m.all)
	m.all = append(m.all, p)
}

func (m *model) removePath(p string) {
	f := fold(p)
	i := m.allIdx[f]
	last := m.all[len(m.all)-1]
	m.all[i] = last
	m.allIdx[fold(last)] = i
	m.all = m.all[:len(m.all)-1]
	delete(m.allIdx, f)
	if j := slices.Index(m.created, p); j >= 0 {
		m.created = slices.Delete(m.created, j, j+1)
	}
}

// get returns the model of the key at p, loading an untouched key from the
// original hive (whose reading the parser tests check against libhivex).
func (m *model) get(t *testing.T, p string) *wantKey {
	if w := m.keys[fold(p)]; w != nil {
		return w
	}
	k, err := ourKey(m.orig, p)
	if err != nil {
		t.Fatalf("loading %q from the original hive: %v", p, err)
	}
	w := &wantKey{path: p, values: k.Values, subkeys: k.Subkeys}
	m.keys[fold(p)] = w
	return w
}

func sortWindows(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		return compareUnits(upcaseUnits(nameUnitsOf(a)), upcaseUnits(nameUnitsOf(b)))
	})
}

// nameParts are pieces random names are built from: shared prefixes (to
// stress sorting), Latin-1 (compressed names) and characters that force
// UTF-16 names, including a surrogate pair.
var nameParts = []string{"a", "B", "ab", "AB", "abc", "key", "Key", "_", "0", "9", "z", "Z", "é", "É", "ß", "ÿ", "Ж", "ж", "日本", "Ω", "😀", "-", " ", "~"}

func randName(r *rand.Rand, maxUnits int) string {
	var b strings.Builder
	n := 1 + r.IntN(6)
	if r.IntN(20) == 0 {
		n = 40 + r.IntN(60)
	}
	for i := 0; i < n; i++ {
		b.WriteString(nameParts[r.IntN(len(nameParts))])
	}
	s := b.String()
	for len(nameUnitsOf(s)) > maxUnits {
		s = string([]rune(s)[:len([]rune(s))-1])
	}
	return s
}

func randData(r *rand.Rand) []byte {
	var n int
	switch p := r.IntN(100); {
	case p < 30:
		n = r.IntN(5)
	case p < 70:
		n = 5 + r.IntN(100)
	case p < 92:
		n = 100 + r.IntN(4000)
	default:
		n = bigDataSegmentSize - 2 + r.IntN(30000)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randCase changes the case of ASCII letters, to exercise case-insensitive
// lookups.
func randCase(r *rand.Rand, s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x80 && r.IntN(2) == 0 {
			switch {
			case c >= 'a' && c <= 'z':
				b[i] = c - 'a' + 'A'
			case c >= 'A' && c <= 'Z':
				b[i] = c - 'A' + 'a'
			}
		}
	}
	return string(b)
}

// TestEditRandomSequences applies random edit sequences to copies of real
// hives and, after each save, checks the invariants, the changed ranges, our
// own reading against the model and, regularly, libhivex's reading.
func TestEditRandomSequences(t *testing.T) {
	cases := []struct {
		hive     string
		ops      int
		smallRI  bool // split leaf lists after a few entries, to build ri lists
		seedBase uint64
	}{
		{"xp-sp3-x86.SYSTEM", 1200, false, 1},
		{"xp-sp3-x86.SYSTEM", 800, true, 2},
		{"win7-sp1-x64.SYSTEM", 1000, true, 3},
	}
	for _, c := range cases {
		name := c.hive
		if c.smallRI {
			name += "/small-leaves"
		}
		t.Run(name, func(t *testing.T) {
			ops := c.ops
			if testing.Short() {
				ops /= 5
			}
			path := testutil.CorpusFile(t, c.hive)
			sum := testutil.FileSHA256(t, path)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			runSequence(t, data, ops, c.smallRI, rand.New(rand.NewPCG(c.seedBase, 77)))
			if testutil.FileSHA256(t, path) != sum {
				t.Fatal("the corpus hive changed")
			}
		})
	}
}

const (
	propOpsPerSave   = 50
	propSavesPerHivx = 6
	propHotParents   = 3
)

func runSequence(t *testing.T, data []byte, ops int, smallRI bool, r *rand.Rand) {
	h, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, h)
	if smallRI {
		t.Logf("the original hive has %d ri subkey lists", countRI(t, h))
	}
	origLen := len(data)
	cur, before := h, data
	var ed *Editor
	var stats [5]int
	saves := 0
	for i := 0; i < ops; i++ {
		if ed == nil {
			ed = newEditor(t, cur)
			if smallRI {
				ed.maxLeaf = 3 + r.IntN(6)
			}
		}
		stats[propStep(t, ed, m, r)]++
		if (i+1)%propOpsPerSave == 0 || i == ops-1 {
			res, h2 := saveCheck(t, ed, before)
			saves++
			verifyOurs(t, h2, m)
			if saves%propSavesPerHivx == 0 || i == ops-1 {
				verifyHivex(t, res.Data, m)
			}
			cur, before, ed = h2, res.Data, nil
			if t.Failed() {
				t.Fatalf("stopping after op %d", i)
			}
		}
	}
	if smallRI {
		if n := countRI(t, cur); n == 0 {
			t.Error("no ri subkey list was built with small leaves")
		} else {
			t.Logf("%d keys have ri subkey lists", n)
		}
	}
	t.Logf("%d ops (create %d, set %d, delete value %d, delete key %d, refused %d), %d saves, %d keys modeled; file %d → %d bytes",
		ops, stats[0], stats[1], stats[2], stats[3], stats[4], saves, len(m.keys), origLen, len(before))
}

// propStep performs one random edit on ed and the model; it returns the
// kind of edit (0 create, 1 set, 2 delete value, 3 delete key, 4 refused).
func propStep(t *testing.T, ed *Editor, m *model, r *rand.Rand) int {
	pick := func() string {
		if len(m.created) > 0 && r.IntN(2) == 0 {
			return m.created[r.IntN(len(m.created))]
		}
		return m.all[r.IntN(len(m.all))]
	}
	switch p := r.IntN(100); {
	case p < 35:
		parent := pick()
		if len(m.created) >= propHotParents && r.IntN(4) == 0 {
			parent = m.created[r.IntN(propHotParents)] // many siblings: list growth and splits
		}
		pw := m.get(t, parent)
		n := randName(r, maxKeyNameUnits)
		for _, s := range pw.subkeys {
			if fold(s) == fold(n) {
				return 4
			}
		}
		child := joinPath(parent, n)
		if err := ed.CreateKey(randCase(r, parent) + `\` + n); err != nil {
			t.Fatalf("CreateKey %q: %v", child, err)
		}
		pw.subkeys = append(pw.subkeys, n)
		sortWindows(pw.subkeys)
		m.keys[fold(child)] = &wantKey{path: child}
		m.addPath(child)
		m.created = append(m.created, child)
		delete(m.deleted, fold(child))
		return 0
	case p < 72:
		k := pick()
		w := m.get(t, k)
		name := randName(r, 60)
		switch q := r.IntN(10); {
		case q < 3 && len(w.values) > 0:
			name = randCase(r, w.values[r.IntN(len(w.values))].N)
		case q == 3:
			name = ""
		}
		typ := ValueType(r.IntN(12))
		if r.IntN(30) == 0 {
			typ = ValueType(r.Uint32())
		}
		d := randData(r)
		if err := ed.SetValue(randCase(r, k), name, typ, d); err != nil {
			t.Fatalf("SetValue %q %q: %v", k, name, err)
		}
		nv := oracleValue{name, typ, hex.EncodeToString(d)}
		for i := range w.values {
			if fold(w.values[i].N) == fold(name) {
				w.values[i].T, w.values[i].D = typ, nv.D
				return 1
			}
		}
		w.values = append(w.values, nv)
		return 1
	case p < 86:
		k := pick()
		w := m.get(t, k)
		if len(w.values) == 0 {
			return 4
		}
		i := r.IntN(len(w.values))
		if err := ed.DeleteValue(k, randCase(r, w.values[i].N)); err != nil {
			t.Fatalf("DeleteValue %q %q: %v", k, w.values[i].N, err)
		}
		w.values = slices.Delete(w.values, i, i+1)
		return 2
	default:
		k := pick()
		if k == "" {
			return 4
		}
		w := m.get(t, k)
		err := ed.DeleteKey(randCase(r, k))
		if len(w.subkeys) > 0 {
			if !errors.Is(err, ErrHasSubkeys) {
				t.Fatalf("DeleteKey %q with %d subkeys: %v, want ErrHasSubkeys", k, len(w.subkeys), err)
			}
			return 4
		}
		if err != nil {
			t.Fatalf("DeleteKey %q: %v", k, err)
		}
		parent := k[:max(0, strings.LastIndexByte(k, '\\'))]
		pw := m.get(t, parent)
		j := slices.IndexFunc(pw.subkeys, func(s string) bool { return fold(joinPath(parent, s)) == fold(k) })
		pw.subkeys = slices.Delete(pw.subkeys, j, j+1)
		delete(m.keys, fold(k))
		m.removePath(k)
		m.deleted[fold(k)] = k
		return 3
	}
}

// verifyOurs reads every modeled key back with kvmify's parser.
func verifyOurs(t *testing.T, h *Hive, m *model) {
	t.Helper()
	got := map[string]oracleKey{}
	for _, w := range m.keys {
		k, err := ourKey(h, w.path)
		if err != nil {
			t.Fatalf("reading %q back: %v", w.path, err)
		}
		got[w.path] = k
	}
	for _, d := range m.deleted {
		if _, err := h.Lookup(d); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted key %q: lookup gives %v", d, err)
		}
	}
	compareOracle(t, got, mapValues(m.keys), nil)
}

// verifyHivex has libhivex read every modeled and deleted key.
func verifyHivex(t *testing.T, data []byte, m *model) {
	t.Helper()
	p := editTempFile(t, data)
	var paths, absent []string
	for _, w := range m.keys {
		paths = append(paths, w.path)
	}
	for _, d := range m.deleted {
		absent = append(absent, d)
	}
	compareOracle(t, hivexKeys(t, p, append(paths, absent...)), mapValues(m.keys), absent)
	hivexshOpens(t, p)
}

func mapValues(m map[string]*wantKey) []*wantKey {
	out := make([]*wantKey, 0, len(m))
	for _, w := range m {
		out = append(out, w)
	}
	return out
}

// countRI counts the keys whose subkey list is an ri index.
func countRI(t *testing.T, h *Hive) int {
	n := 0
	err := h.Walk(func(k *Key) error {
		if k.rec.subkeyCount == 0 {
			return nil
		}
		sig, _, err := h.readList(k.rec.subkeyList)
		if sig == sigRI {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
