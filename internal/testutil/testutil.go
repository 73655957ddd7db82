// Package testutil holds helpers shared by kvmify's tests: locating real
// peer tools and the shared corpus.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// InCI reports whether the tests run under CI, where every peer tool must be
// installed and a missing one is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// RequireTool returns the path of an external tool, skipping the test when it
// is missing on a developer machine and failing it under CI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if InCI() {
			t.Fatalf("required tool %s is not installed (the README's test command installs it)", name)
		}
		t.Skipf("%s not installed; run the README's test command to install the test peers", name)
	}
	return p
}

// RequirePython3Module returns a python3 interpreter (the system one, which
// sees Debian's python3-* packages) that can import module.
func RequirePython3Module(t testing.TB, module string) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import "+module).Run() == nil {
			return py
		}
	}
	if InCI() {
		t.Fatalf("python3 module %s is not importable (the README's test command installs it)", module)
	}
	t.Skipf("python3 module %s not installed", module)
	return ""
}

// RepoRoot is the top of the kvmify checkout.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CorpusFile returns the path of a file in ../shared/corpus (beside the
// checkout), skipping the test with a clear message when it is absent.
// KVMIFY_CORPUS overrides the directory.
func CorpusFile(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("KVMIFY_CORPUS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared", "corpus")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus file %s not available (%v); it lives in ../shared/corpus beside the checkout", name, err)
	}
	return p
}

// FileSHA256 returns the hex sha256 of a file's content.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BuildKvmify builds the kvmify binary into a test temp dir and returns its
// path, for tests that drive the CLI like a user.
func BuildKvmify(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kvmify")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/kvmify")
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kvmify: %v\n%s", err, b)
	}
	return out
}
