package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmify/kvmify/nbd"
)

// TestNBDLimitFlags parses serve's limit flags into the server's options,
// refuses nonsense as a usage error and finds them explained in --help.
func TestNBDLimitFlags(t *testing.T) {
	var f nbdLimitFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{"--max-connections", "3", "--memory-limit", "96", "--conn-memory-limit", "8", "--payload-timeout", "5s", "--reply-timeout", "7s"}); err != nil {
		t.Fatal(err)
	}
	if err := f.check(); err != nil {
		t.Fatal(err)
	}
	want := nbd.Limits{MaxConnections: 3, Memory: 96 << 20, ConnMemory: 8 << 20, PayloadTimeout: 5 * time.Second, ReplyTimeout: 7 * time.Second}
	if got := f.limits(); got != want {
		t.Errorf("limits %+v, want %+v", got, want)
	}
	for _, bad := range []nbdLimitFlags{
		{MaxConnections: -1},
		{MemoryMiB: 8, ConnMemoryMiB: 16},
		{ReplyTimeout: -time.Second},
	} {
		var ue usageError
		if err := bad.check(); !errors.As(err, &ue) {
			t.Errorf("%+v: got %v, want a usage error", bad, err)
		}
	}
	if !strings.Contains(newServeCmd().Long, "--payload-timeout (default 30s)") {
		t.Error("serve --help does not explain the limits")
	}
}
