package registry

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// yarpCase is one hive of yarp's test suite with the outcome yarp's own
// tests (test_cases.py) state for it, as kvmify meets it.
type yarpCase struct {
	hive string // path below yarp-hives/
	// outcome: "recovered" (logs replayed, result equals what Windows
	// wrote, key for key), "refused" (recovery or reading fails with a
	// clear error), or "read" (the tree reads, equal to libhivex).
	outcome string
	yarp    string // what yarp's test states
	// windows is Windows' own recovery of the same hive (recovered).
	windows string
	// corrupt says Check must report corruption (read): yarp refuses to
	// walk these, kvmify reads them like libhivex and its checker names
	// the fault, so the editor will not touch them.
	corrupt bool
	// refusal is the error recovery or reading must match (refused).
	refusal error
	// noHivex says why libhivex cannot be the oracle for this hive.
	noHivex string
	facts   func(t *testing.T, h *Hive)
}

func yarpCases() []yarpCase {
	return []yarpCase{
		{hive: "OldDirtyHive/OldDirtyHive", outcome: "recovered", windows: "OldDirtyHive/RecoveredHive_Windows7",
			yarp: "old-format LOG1 applied; key_with_many_subkeys\\5000\\find_me_in_log appears, \\1 goes"},
		{hive: "NewDirtyHive1/NewDirtyHive", outcome: "recovered", windows: "NewDirtyHive1/RecoveredHive_Windows10",
			yarp: "LOG1 then LOG2 applied (4 entries); hive bins equal Windows 10's byte for byte"},
		{hive: "NewDirtyHive2/NewDirtyHive", outcome: "recovered", windows: "NewDirtyHive1/RecoveredHive_Windows10",
			yarp: "only LOG2 applied, last sequence 5 (the same final state as NewDirtyHive1)"},
		{hive: "BadBaseBlockHive/BadBaseBlockHive", outcome: "recovered", windows: "OldDirtyHive/RecoveredHive_Windows7",
			yarp: "corrupt primary base block (minor version 1, bad checksum) rebuilt from the old-format LOG1; " +
				"effective version 3; key_with_many_subkeys found (its hive bins and log are OldDirtyHive's)"},
		{hive: "BadLogHive1/BadLogHive", outcome: "refused", refusal: ErrLogsUnusable, yarp: "AutoRecoveryException (log base block checksum)"},
		{hive: "BadLogHive2/BadLogHive", outcome: "refused", refusal: ErrLogsUnusable, yarp: "AutoRecoveryException (no dirty vector)"},
		{hive: "BadLogHive3/BadLogHive", outcome: "refused", refusal: ErrLogsUnusable, yarp: "AutoRecoveryException (new-format logs with bad base block checksums)"},
		{hive: "TruncatedHive", outcome: "refused", refusal: ErrFormat, yarp: "readable only as a truncated hive (RegistryHiveTruncated)"},
		{hive: "TruncatedNameHive", outcome: "refused", refusal: ErrFormat, yarp: "ParseException walking the root's subkeys"},
		{hive: "WrongOrderHive", outcome: "read", corrupt: true, yarp: "WalkException: subkeys out of order"},
		{hive: "DuplicateSubkeysHive", outcome: "read", corrupt: true, yarp: "WalkException walking key_with_many_subkeys"},
		{hive: "InvalidParentHive", outcome: "read", corrupt: true, yarp: "WalkException: a parent field points elsewhere"},
		{hive: "BadListHive", outcome: "read", corrupt: true, yarp: "WalkException (kvmify reads the 7 keys as libhivex, libregf and regipy do)",
			facts: wantKeys(`1`, `2`, `2\subkey`, `3`, `3\subkey`, `4`)},
		{hive: "BadSubkeyHive", outcome: "read", corrupt: true, yarp: "WalkException (kvmify reads the 7 keys as libhivex, libregf and regipy do)",
			facts: wantKeys(`1`, `2`, `2\subkey`, `3`, `3\subkey`, `4`)},
		{hive: "EmptyHive", outcome: "read", yarp: "root has no subkeys", facts: func(t *testing.T, h *Hive) {
			if r, _ := h.Root(); r.SubkeyCount() != 0 {
				t.Errorf("root has %d subkeys", r.SubkeyCount())
			}
		}},
		{hive: "BigDataHive", outcome: "read", yarp: "key_with_bigdata: default value 16345 bytes of '1', V 81725 bytes of '2', both in db cells",
			facts: func(t *testing.T, h *Hive) {
				wantValue(t, h, "key_with_bigdata", "", bytes.Repeat([]byte("1"), 16345))
				wantValue(t, h, "key_with_bigdata", "V", bytes.Repeat([]byte("2"), 81725))
			}},
		{hive: "ManySubkeysHive", outcome: "read", yarp: "5000 subkeys under an ri list; lookups are case-insensitive",
			facts: func(t *testing.T, h *Hive) {
				k, err := h.Lookup(`key_with_MAny_subkeys`)
				if err != nil || k.SubkeyCount() != 5000 {
					t.Fatalf("key_with_many_subkeys: %v", err)
				}
				if k, err := h.Lookup(`\key_with_maNY_sUBkeys\2119\Find_me`); err != nil || k.Path() != `key_with_many_subkeys\2119\find_me` {
					t.Errorf("lookup of find_me: %v", err)
				}
				if _, err := h.Lookup(`key_with_many_subkeys\3000\doesnt_exist`); !errors.Is(err, ErrNotFound) {
					t.Errorf("missing key: %v", err)
				}
			}},
		{hive: "GarbageHive", outcome: "read", yarp: "one hive bin of 4096 bytes, garbage after it",
			noHivex: "libhivex refuses its bad base block checksum",
			facts: func(t *testing.T, h *Hive) {
				if len(h.bins) != 1 || h.base.HiveBinsDataSize != 4096 {
					t.Errorf("%d bins, %d bytes", len(h.bins), h.base.HiveBinsDataSize)
				}
			}},
		{hive: "EffectiveSizeHive", outcome: "read", yarp: "base block checksum wrong: the hive bins actually present (487424 bytes) count, not the recorded size",
			noHivex: "libhivex refuses its bad base block checksum",
			facts: func(t *testing.T, h *Hive) {
				if len(h.hbins) != 487424 || h.base.HiveBinsDataSize == 487424 {
					t.Errorf("hive bins %d bytes (recorded %d), want 487424", len(h.hbins), h.base.HiveBinsDataSize)
				}
				if d, _ := h.Dirty(); !d {
					t.Error("not reported dirty")
				}
				wantKeys(`key_with_many_subkeys\2119\find_me`)(t, h)
			}},
		{hive: "UnicodeHive", outcome: "read", yarp: `ПриВет\КлюЧ is found as Привет\Ключ; привет is found`,
			facts: func(t *testing.T, h *Hive) {
				if k, err := h.Lookup(`\ПриВет\КлюЧ`); err != nil || k.Path() != `Привет\Ключ` {
					t.Errorf("lookup: %v", err)
				}
				if _, err := h.Lookup(`привеТ`); err != nil {
					t.Error(err)
				}
			}},
		{hive: "ExtendedASCIIHive", outcome: "read", yarp: "ëigenaardig: compressed name; its value ëigenaardig holds 'ëigenaardig'",
			facts: func(t *testing.T, h *Hive) {
				k, err := h.Lookup("ëigenaardig")
				if err != nil || k.Flags&KeyCompName == 0 {
					t.Fatalf("key: %v", err)
				}
				v, err := k.Value("ëigenaardig")
				if s, _ := v.String(); err != nil || s != "ëigenaardig" {
					t.Errorf("value %q: %v", s, err)
				}
			}},
		{hive: "BogusKeyNamesHive", outcome: "read", yarp: "key names with CR LF and NUL", facts: wantKeys("testnew\r\nne", "testnu\x00l")},
		{hive: "NewFlagsHive", outcome: "read", yarp: `keys 1 and 1\2`, facts: wantKeys(`1`, `1\2`)},
		{hive: "MultiSzHive", outcome: "read", yarp: "value 2 holds 'привет', 'как дела?'",
			facts: func(t *testing.T, h *Hive) {
				k, err := h.Lookup("key")
				if err != nil {
					t.Fatal(err)
				}
				v, err := k.Value("2")
				if err != nil {
					t.Fatal(err)
				}
				if s, err := v.Strings(); err != nil || !slices.Equal(s[:2], []string{"привет", "как дела?"}) {
					t.Errorf("strings %q: %v", s, err)
				}
			}},
		{hive: "StringValuesHive", outcome: "read", yarp: "default value 'test тест'",
			facts: func(t *testing.T, h *Hive) {
				k, _ := h.Lookup("key")
				v, err := k.Value("")
				if s, _ := v.String(); err != nil || s != "test тест" {
					t.Errorf("default value %q: %v", s, err)
				}
			}},
		{hive: "ValuesOrderHive", outcome: "read", yarp: "values stored in the order aaa, zzz, bbb",
			facts: func(t *testing.T, h *Hive) {
				r, _ := h.Root()
				vs, err := r.Values()
				var names []string
				for _, v := range vs {
					names = append(names, v.Name)
				}
				if err != nil || !slices.Equal(names, []string{"aaa", "zzz", "bbb"}) {
					t.Errorf("values %q: %v", names, err)
				}
			}},
		{hive: "TwoOwnersHive", outcome: "read", yarp: "two keys with security descriptors of different owners"},
		{hive: "DupNameHive", outcome: "read", yarp: "subkey ccc; deleted keys bbb, ccc and Новый раздел #1 remain in free space", facts: wantKeys("ccc")},
		{hive: "SqliteHive", outcome: "read", yarp: `subkeys A1 and A2; A2's value A2 is "AAA2"`, facts: wantKeys("A1", "A2")},
		{hive: "SlackHive", outcome: "read", yarp: "slack space after cells holds 'SLCK'"},
		{hive: "CompHive", outcome: "read", yarp: "walks everywhere without error"},
		{hive: "DeletedDataHive", outcome: "read", yarp: "deleted values v, v2 only in free cells"},
		{hive: "DeletedTreeHive", outcome: "read", yarp: `deleted keys 1\2\3... only in free cells`},
		{hive: "HealedHive", outcome: "read", corrupt: true, yarp: "allocated cells nothing references (reported here as leaks; its sk reference counts are also wrong)",
			facts: func(t *testing.T, h *Hive) {
				if r := h.CheckReport(); r.LeakTotal == 0 {
					t.Error("no leaked cells reported")
				}
			}},
		{hive: "NewDirtyHive1/NewDirtyHive", outcome: "read", yarp: "before recovery: Key1 (default value of 6001 UTF-16 characters), Key2\\Key2_1 and Key2\\Key2_2 exist",
			facts: func(t *testing.T, h *Hive) {
				wantKeys(`Key1`, `Key2\Key2_1`, `Key2\Key2_2`)(t, h)
				k, _ := h.Lookup("Key1")
				if v, err := k.Value(""); err != nil || len(v.Raw()) != 2*6001 {
					t.Errorf("Key1 default value: %d bytes, %v", len(v.Raw()), err)
				}
			}},
	}
}

func wantKeys(paths ...string) func(t *testing.T, h *Hive) {
	return func(t *testing.T, h *Hive) {
		t.Helper()
		for _, p := range paths {
			if _, err := h.Lookup(p); err != nil {
				t.Errorf("key %q: %v", p, err)
			}
		}
	}
}

func wantValue(t *testing.T, h *Hive, key, name string, want []byte) {
	t.Helper()
	k, err := h.Lookup(key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := k.Value(name)
	if err != nil || !bytes.Equal(v.Raw(), want) {
		t.Errorf("%s : %q: %d bytes (%v), want %d", key, name, len(v.Raw()), err, len(want))
	}
}

// TestYarpSuite runs every yarp hive whose outcome yarp's tests state.
func TestYarpSuite(t *testing.T) {
	for _, c := range yarpCases() {
		t.Run(c.hive, func(t *testing.T) {
			path := testutil.CorpusFile(t, "yarp-hives/"+c.hive)
			t.Logf("yarp: %s", c.yarp)
			switch c.outcome {
			case "recovered":
				yarpRecovered(t, path, c)
			case "refused":
				yarpRefused(t, path, c)
			case "read":
				yarpRead(t, path, c)
			default:
				t.Fatalf("unknown outcome %q", c.outcome)
			}
		})
	}
}

func yarpRecovered(t *testing.T, path string, c yarpCase) {
	out, rep, err := RecoverFile(path)
	if err != nil {
		t.Fatalf("RecoverFile: %v\n%s", err, rep)
	}
	if !rep.Clean || rep.EntriesApplied == 0 {
		t.Errorf("report: %s", rep)
	}
	h, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Errorf("recovered hive fails Check: %v", err)
	}
	windows, err := os.ReadFile(testutil.CorpusFile(t, "yarp-hives/"+c.windows))
	if err != nil {
		t.Fatal(err)
	}
	want := sortedDump(t, windows)
	diffSorted(t, sortedDump(t, out), want)
	hx := hivexDump(t, writeTemp(t, "recovered", out))
	sort.Strings(hx)
	diffSorted(t, hx, want)
	primary, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := Open(primary); err == nil {
		if d := kvmifyDump(t, p); len(d) > 0 && slices.Equal(sortedStrings(d), want) {
			t.Error("the primary already equals Windows' result: the case proves nothing")
		}
	}
	t.Logf("%d keys and values equal to %s", len(want), c.windows)
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func yarpRefused(t *testing.T, path string, c yarpCase) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(c.refusal, ErrLogsUnusable) {
		out, rep, err := RecoverFile(path)
		if !errors.Is(err, ErrLogsUnusable) || out != nil || rep == nil {
			t.Fatalf("RecoverFile: %v (output %d bytes), want ErrLogsUnusable with a report", err, len(out))
		}
		t.Logf("refused: %v", err)
		return
	}
	err = openAndWalk(data)
	var fe *FormatError
	if !errors.Is(err, c.refusal) || !errors.As(err, &fe) || fe.Offset <= 0 {
		t.Fatalf("reading: %v, want %v with an offset", err, c.refusal)
	}
	t.Logf("refused: %v", err)
}

func yarpRead(t *testing.T, path string, c yarpCase) {
	h, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := sortedStrings(kvmifyDump(t, h))
	if c.noHivex == "" {
		diffSorted(t, got, sortedStrings(hivexDump(t, path)))
	} else {
		t.Logf("not compared with libhivex: %s", c.noHivex)
	}
	r := h.CheckReport()
	switch {
	case c.corrupt && r.Total == 0:
		t.Error("Check finds no corruption")
	case !c.corrupt && r.Total > 0:
		t.Errorf("Check: %v", r.Err())
	}
	for _, p := range r.Problems {
		if strings.Contains(p.Msg, "loop") {
			t.Errorf("called a loop: %v", p)
		}
	}
	if c.facts != nil {
		c.facts(t, h)
	}
}

// TestYarpLogDiscovery: yarp's Discovery cases, the logs found beside a
// hive. Names are matched case-insensitively (they come from NTFS), which
// yarp's test allows for case 4 too.
func TestYarpLogDiscovery(t *testing.T) {
	for _, c := range []struct {
		hive string
		want []string
	}{
		{"Discovery/1/aa", []string{"aa.LOG", "aa.LOG1", "aa.LOG2"}},
		{"Discovery/2/AA", []string{"aa.LOG1", "aa.LOG2"}},
		{"Discovery/3/AA", []string{"aa.log", "aa.log1"}},
		{"Discovery/4/AA", []string{"aa.LOG", "aa.log1", "aa.log2"}},
		{"Discovery/5/aa", nil},
	} {
		t.Run(c.hive, func(t *testing.T) {
			logs, err := FindLogs(testutil.CorpusFile(t, "yarp-hives/"+c.hive))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range logs {
				got = append(got, l[strings.LastIndexByte(l, '/')+1:])
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("found %q, want %q", got, c.want)
			}
		})
	}
}
