package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// HivexValue is a value as libhivex reads it: its type and the hex of its
// raw bytes; nil in a result means the value is absent.
type HivexValue struct {
	Type uint32 `json:"type"`
	Data string `json:"data"`
}

// HivexApply runs bootfix/testdata/hivex_apply.py, which applies changes (a
// JSON list of {key, value, op, type, data}) to the hive file at path with
// python3-hivex, an editor independent of kvmify's, and reads every changed
// value back from a fresh handle. With readOnly it only reads them back.
func HivexApply(t testing.TB, path string, changes any, readOnly bool) ([]*HivexValue, error) {
	t.Helper()
	py := RequirePython3Module(t, "hivex")
	in, err := json.Marshal(changes)
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join(RepoRoot(), "bootfix", "testdata", "hivex_apply.py"), path}
	if readOnly {
		args = append(args, "--read-only")
	}
	cmd := exec.Command(py, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("hivex_apply.py: %v\n%s", err, stderr.String())
	}
	var got []*HivexValue
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("hivex_apply.py output: %w", err)
	}
	return got, nil
}
