package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmify/kvmify/nbd"
)

// nbdLimitFlags are serve's flags for the NBD server's limits.
type nbdLimitFlags struct {
	MaxConnections int
	MemoryMiB      int64
	ConnMemoryMiB  int64
	PayloadTimeout time.Duration
	ReplyTimeout   time.Duration
}

// nbdLimitsHelp is the paragraph of serve --help about them.
const nbdLimitsHelp = `Limits against clients that misbehave: at most --max-connections clients
(default 16) are served at once and one more is refused with a message.
Buffered request and reply data is bounded per connection
(--conn-memory-limit, default 64 MiB) and across all connections
(--memory-limit, default 256 MiB): a connection over its own budget is not
read from until its client reads replies, and with the server's budget spent
requests are streamed through a 256 KiB buffer per connection, so other
clients keep working. A WRITE payload that stops arriving for
--payload-timeout (default 30s) and a client that takes no reply data for
--reply-timeout (default 60s) are disconnected (after at most three times
that), freeing what they held; an idle client is never disconnected.`

func (f *nbdLimitFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.MaxConnections, "max-connections", nbd.DefaultMaxConnections, "clients served at once; one more is refused")
	fs.Int64Var(&f.MemoryMiB, "memory-limit", nbd.DefaultMemory>>20, "MiB of request and reply data buffered across all connections")
	fs.Int64Var(&f.ConnMemoryMiB, "conn-memory-limit", nbd.DefaultConnMemory>>20, "MiB of request and reply data buffered per connection")
	fs.DurationVar(&f.PayloadTimeout, "payload-timeout", nbd.DefaultPayloadTimeout, "disconnect a client whose WRITE payload stops arriving for this long")
	fs.DurationVar(&f.ReplyTimeout, "reply-timeout", nbd.DefaultReplyTimeout, "disconnect a client that takes no reply data for this long")
}

// check refuses limits that make no sense; zero values (options built
// without the flags) mean the server's defaults.
func (f *nbdLimitFlags) check() error {
	mem, conn := f.MemoryMiB, f.ConnMemoryMiB
	if mem == 0 {
		mem = nbd.DefaultMemory >> 20
	}
	if conn == 0 {
		conn = nbd.DefaultConnMemory >> 20
	}
	switch {
	case f.MaxConnections < 0:
		return usagef("--max-connections must not be negative (0 means the default)")
	case mem < 1 || mem > 1<<30:
		return usagef("--memory-limit must be between 1 and %d MiB", 1<<30)
	case conn < 1 || conn > mem:
		return usagef("--conn-memory-limit must be between 1 MiB and --memory-limit")
	case f.PayloadTimeout < 0 || f.ReplyTimeout < 0:
		return usagef("--payload-timeout and --reply-timeout must not be negative (0 means the default)")
	}
	return nil
}

// limits gives the flags as the server's options.
func (f *nbdLimitFlags) limits() nbd.Limits {
	return nbd.Limits{
		// Zero fields are the server's defaults.
		MaxConnections: f.MaxConnections,
		Memory:         f.MemoryMiB << 20,
		ConnMemory:     f.ConnMemoryMiB << 20,
		PayloadTimeout: f.PayloadTimeout,
		ReplyTimeout:   f.ReplyTimeout,
	}
}
