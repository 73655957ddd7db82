package registry

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// oracleKey is one key as testdata/hivexkeys.py (libhivex) reports it.
type oracleKey struct {
	K       string        `json:"k"`
	Exists  bool          `json:"exists"`
	Values  []oracleValue `json:"values"`
	Subkeys []string      `json:"subkeys"`
}

type oracleValue struct {
	N string    `json:"n"`
	T ValueType `json:"t"`
	D string    `json:"d"`
}

// hivexKeys asks the hivex Python module for the given keys of the hive
// file at path (components matched exactly).
func hivexKeys(t *testing.T, path string, keys []string) map[string]oracleKey {
	t.Helper()
	py := testutil.RequirePython3Module(t, "hivex")
	script, err := filepath.Abs(filepath.Join("testdata", "hivexkeys.py"))
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for _, k := range keys {
		b, _ := json.Marshal(k)
		in.Write(append(b, '\n'))
	}
	cmd := exec.Command(py, script, path)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hivex reading %s: %v\n%s", path, err, stderr.Bytes())
	}
	got := map[string]oracleKey{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var k oracleKey
		if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
			t.Fatalf("hivex line %q: %v", trunc(sc.Text()), err)
		}
		got[k.K] = k
	}
	if len(got) != len(keys) {
		t.Fatalf("hivex answered %d of %d keys", len(got), len(keys))
	}
	return got
}

// hivexshOpens checks that hivexsh opens the hive file and lists its root.
func hivexshOpens(t *testing.T, path string) {
	t.Helper()
	sh := testutil.RequireTool(t, "hivexsh")
	cmd := exec.Command(sh, path)
	cmd.Stdin = strings.NewReader("ls\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hivexsh %s: %v\n%s", path, err, out)
	}
}

// editTempFile stores hive bytes in a fresh temporary file.
func editTempFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hive")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantKey is a key's expected content, the model the edit tests keep.
type wantKey struct {
	path    string
	values  []oracleValue // in stored order
	subkeys []string      // in Windows' sorted order
}

// compareOracle compares what hivex read with the expected keys; absent
// lists keys that must not exist.
func compareOracle(t *testing.T, got map[string]oracleKey, want []*wantKey, absent []string) {
	t.Helper()
	for _, w := range want {
		g := got[w.path]
		if !g.Exists {
			t.Errorf("hivex: key %q missing", w.path)
			continue
		}
		if strings.Join(g.Subkeys, "\x00") != strings.Join(w.subkeys, "\x00") {
			t.Errorf("hivex: key %q subkeys %q, want %q", w.path, g.Subkeys, w.subkeys)
		}
		if len(g.Values) != len(w.values) {
			t.Errorf("hivex: key %q has %d values, want %d", w.path, len(g.Values), len(w.values))
			continue
		}
		for i, v := range w.values {
			if g.Values[i] != v {
				t.Errorf("hivex: key %q value %d = %q type %v data %s, want %q type %v data %s",
					w.path, i, g.Values[i].N, g.Values[i].T, trunc(g.Values[i].D), v.N, v.T, trunc(v.D))
			}
		}
	}
	for _, a := range absent {
		if got[a].Exists {
			t.Errorf("hivex: deleted key %q still exists", a)
		}
	}
}

// ourKey reads a key with kvmify's parser in the oracle's form.
func ourKey(h *Hive, path string) (oracleKey, error) {
	k, err := h.Lookup(path)
	if err != nil {
		return oracleKey{K: path}, err
	}
	out := oracleKey{K: path, Exists: true}
	vs, err := k.Values()
	if err != nil {
		return out, err
	}
	for _, v := range vs {
		out.Values = append(out.Values, oracleValue{v.Name, v.Type, hex.EncodeToString(v.Raw())})
	}
	subs, err := k.Subkeys()
	if err != nil {
		return out, err
	}
	for _, s := range subs {
		out.Subkeys = append(out.Subkeys, s.Name)
	}
	return out, nil
}
