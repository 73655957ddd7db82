package registry

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// mergeIDEValue is one value of Microsoft's MergeIDE registry fix (KB314082).
type mergeIDEValue struct {
	key, name string
	typ       ValueType
	data      []byte
}

// Class GUIDs of the MergeIDE critical device entries.
const (
	guidHDC  = "{4D36E96A-E325-11CE-BFC1-08002BE10318}" // IDE ATA/ATAPI controllers
	guidDisk = "{4D36E967-E325-11CE-BFC1-08002BE10318}" // disk drives
)

func dword(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// mergeIDEEdits lists the MergeIDE values for one control set.
func mergeIDEEdits(cs string) []mergeIDEValue {
	cddb := cs + `\Control\CriticalDeviceDatabase\`
	var out []mergeIDEValue
	device := func(id, service, guid string) {
		out = append(out,
			mergeIDEValue{cddb + id, "Service", RegSZ, utf16z(service)},
			mergeIDEValue{cddb + id, "ClassGUID", RegSZ, utf16z(guid)})
	}
	for _, id := range []string{"primary_ide_channel", "secondary_ide_channel", `*pnp0600`, `*azt0502`} {
		device(id, "atapi", guidHDC)
	}
	device("gendisk", "disk", guidDisk)
	device("pci#cc_0101", "pciide", guidHDC)
	for _, dev := range []string{"1222", "1230", "2411", "2421", "7010", "7111", "7199"} {
		device("pci#ven_8086&dev_"+dev, "intelide", guidHDC)
	}
	for _, s := range []struct{ name, group, file string }{
		{"atapi", "SCSI miniport", "atapi"},
		{"IntelIde", "System Bus Extender", "intelide"},
		{"PCIIde", "System Bus Extender", "pciide"},
	} {
		k := cs + `\Services\` + s.name
		out = append(out,
			mergeIDEValue{k, "ErrorControl", RegDword, dword(1)},
			mergeIDEValue{k, "Group", RegSZ, utf16z(s.group)},
			mergeIDEValue{k, "Start", RegDword, dword(0)},
			mergeIDEValue{k, "Type", RegDword, dword(1)},
			mergeIDEValue{k, "ImagePath", RegExpandSZ, utf16z(`system32\drivers\` + s.file + ".sys")})
	}
	return out
}

// applyMergeIDE opens data, applies MergeIDE to ControlSet001 and 003 and
// saves.
func applyMergeIDE(tb testing.TB, data []byte) *SaveResult {
	h, err := Open(data)
	if err != nil {
		tb.Fatal(err)
	}
	ed, err := NewEditor(h)
	if err != nil {
		tb.Fatal(err)
	}
	for _, cs := range []string{"ControlSet001", "ControlSet003"} {
		for _, v := range mergeIDEEdits(cs) {
			if err := ed.CreateKey(v.key); err != nil {
				tb.Fatal(err)
			}
			if err := ed.SetValue(v.key, v.name, v.typ, v.data); err != nil {
				tb.Fatal(err)
			}
		}
	}
	res, err := ed.Save()
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// TestMergeIDEOnXP applies the MergeIDE fix to the real XP SYSTEM hive: the
// file length must not change (new cells fit in free space and slack), Check
// must pass and libhivex must read every value back.
func TestMergeIDEOnXP(t *testing.T) {
	path := testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM")
	sum := testutil.FileSHA256(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res := applyMergeIDE(t, data)
	checkChanged(t, data, res)
	if res.Size != int64(len(data)) {
		t.Fatalf("file length changed: %d → %d", len(data), res.Size)
	}
	h, err := Open(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := strictCheck(h); err != nil {
		t.Fatal(err)
	}
	var changed int64
	for _, r := range res.Changed {
		changed += r.Len
	}
	t.Logf("%d changed ranges, %d bytes; hive bins %d → %d bytes", len(res.Changed), changed,
		binary.LittleEndian.Uint32(data[regfHiveBinsDataSizeOffset:]), h.BaseBlock().HiveBinsDataSize)

	// Expected content per key: the values the key had, replaced or extended
	// in MergeIDE order.
	orig, err := Open(data)
	if err != nil {
		t.Fatal(err)
	}
	var edits []mergeIDEValue
	for _, cs := range []string{"ControlSet001", "ControlSet003"} {
		edits = append(edits, mergeIDEEdits(cs)...)
	}
	want := map[string]*wantKey{}
	var order []string
	for _, v := range edits {
		w := want[v.key]
		if w == nil {
			w = &wantKey{path: v.key}
			if k, err := orig.Lookup(v.key); err == nil {
				vs, err := k.Values()
				if err != nil {
					t.Fatal(err)
				}
				for _, ov := range vs {
					w.values = append(w.values, oracleValue{ov.Name, ov.Type, hex.EncodeToString(ov.Raw())})
				}
			}
			want[v.key] = w
			order = append(order, v.key)
		}
		nv := oracleValue{v.name, v.typ, hex.EncodeToString(v.data)}
		replaced := false
		for i := range w.values {
			if equalFoldName(w.values[i].N, v.name) {
				w.values[i].T, w.values[i].D, replaced = v.typ, nv.D, true
			}
		}
		if !replaced {
			w.values = append(w.values, nv)
		}
	}
	got := hivexKeys(t, editTempFile(t, res.Data), order)
	for _, p := range order {
		g := got[p]
		w := want[p]
		if !g.Exists {
			t.Errorf("hivex: %q missing", p)
			continue
		}
		if len(g.Values) != len(w.values) {
			t.Errorf("hivex: %q has %d values, want %d", p, len(g.Values), len(w.values))
			continue
		}
		for i := range w.values {
			if g.Values[i] != w.values[i] {
				t.Errorf("hivex: %q value %d = %+v, want %+v", p, i, g.Values[i], w.values[i])
			}
		}
	}
	hivexshOpens(t, editTempFile(t, res.Data))
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("the corpus hive changed")
	}
}

func equalFoldName(a, b string) bool {
	return compareUnits(upcaseUnits(nameUnitsOf(a)), upcaseUnits(nameUnitsOf(b))) == 0
}

func nameUnitsOf(s string) []uint16 {
	b, comp, _ := encodeName(s)
	return nameUnits(b, comp)
}

// BenchmarkMergeIDEPlanSave parses the XP SYSTEM hive, applies the MergeIDE
// set to two control sets and saves (with the changed-range diff): the whole
// cost of patching a hive. hivexregedit --export of the same file runs once
// in the same benchmark; its wall time is reported as hivexregedit-s and the
// ratio as x-faster.
func BenchmarkMergeIDEPlanSave(b *testing.B) {
	path := testutil.CorpusFile(b, "xp-sp3-x86.SYSTEM")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var peer time.Duration
	if tool, err := exec.LookPath("hivexregedit"); err == nil {
		cmd := exec.Command(tool, "--export", path, `\`)
		cmd.Stdout = io.Discard
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("hivexregedit --export: %v", err)
		}
		peer = time.Since(t0)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		applyMergeIDE(b, data)
	}
	if peer > 0 {
		per := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(peer.Seconds(), "hivexregedit-s")
		b.ReportMetric(peer.Seconds()/per, "x-faster")
	}
}
