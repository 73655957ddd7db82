package nbd

import (
	"fmt"
	"time"
)

// Limits bound the memory, connections and time a client can make the
// server spend. Zero fields take the defaults below; a negative duration or
// MaxConnections switches that limit off.
//
// Every request is charged to its connection's budget (ConnMemory) and to
// the server's (Memory) before it is read or served, and its reply gives the
// charge back once the socket took it: READ data and WRITE payloads at their
// length, every other reply at a small fixed cost, whether it is served by a
// worker or in the request loop, sent at once or held for a batch. A
// connection whose own budget is spent stops reading requests until its
// client reads replies. A connection that finds the server's budget spent
// serves each request itself, one at a time, through a buffer of its own of
// DirectChunk bytes, streaming READ data to the socket and WRITE payloads to
// the backend, so clients that never read their replies cannot starve the
// others. Server memory for buffers is thus at most Memory plus
// MaxConnections × (DirectChunk + the 1 MiB request reader).
type Limits struct {
	// Memory bounds the bytes buffered for requests and replies across all
	// connections; zero means DefaultMemory.
	Memory int64
	// ConnMemory bounds them per connection; zero means DefaultConnMemory.
	ConnMemory int64
	// MaxConnections bounds the connections served at once; a client beyond
	// it is refused during negotiation with NBD_REP_ERR_POLICY and a
	// message. Zero means DefaultMaxConnections.
	MaxConnections int
	// PayloadTimeout closes a connection whose WRITE payload stops
	// arriving: no byte of it for at least this long (at most three times
	// as long; see deadline.go for why not exactly), which also frees what
	// the connection holds. Zero means DefaultPayloadTimeout. A connection
	// idle between requests is never timed out.
	PayloadTimeout time.Duration
	// ReplyTimeout likewise closes a connection whose client takes no
	// reply bytes while replies wait for the socket. Under TLS a reply write
	// that runs into it closes the connection even if it made progress.
	// Zero means DefaultReplyTimeout.
	ReplyTimeout time.Duration
}

// Defaults of Limits.
const (
	DefaultMemory         = 256 << 20
	DefaultConnMemory     = 2 * MaxBlockSize
	DefaultMaxConnections = 16
	DefaultPayloadTimeout = 30 * time.Second
	DefaultReplyTimeout   = 60 * time.Second
)

// DirectChunk is the buffer a connection uses when the server's memory
// budget is spent.
const DirectChunk = 256 << 10

// replyCost is what a reply without data is charged: the queued reply and
// its share of the writev vector.
const replyCost = 128

// minMemory is the least a memory budget may be: one direct chunk.
const minMemory = DirectChunk

func (l Limits) check() error {
	if l.Memory != 0 && l.Memory < minMemory {
		return fmt.Errorf("nbd: memory limit %d bytes is below %d", l.Memory, minMemory)
	}
	if l.ConnMemory != 0 && l.ConnMemory < minMemory {
		return fmt.Errorf("nbd: per-connection memory limit %d bytes is below %d", l.ConnMemory, minMemory)
	}
	return nil
}

func (l Limits) withDefaults() Limits {
	if l.Memory == 0 {
		l.Memory = DefaultMemory
	}
	if l.ConnMemory == 0 {
		l.ConnMemory = DefaultConnMemory
	}
	l.ConnMemory = min(l.ConnMemory, l.Memory)
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.PayloadTimeout == 0 {
		l.PayloadTimeout = DefaultPayloadTimeout
	}
	if l.ReplyTimeout == 0 {
		l.ReplyTimeout = DefaultReplyTimeout
	}
	return l
}
