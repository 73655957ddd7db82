package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps default overlays (under $XDG_STATE_HOME) out of the real
// home directory: every test, and every binary a test runs, uses a state
// directory of its own that is removed at the end.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvmify-test-state-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
