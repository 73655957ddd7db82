package nbd

import (
	"bufio"
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvmify/kvmify/disk"
)

// readBufferSize is the bufio size for request headers; large payloads
// bypass it.
const readBufferSize = 1 << 20

// socketSendBuffer is the SO_SNDBUF asked for (the kernel caps it at
// net.core.wmem_max).
const socketSendBuffer = 2 << 20

// shutdownReadGrace is how long a shutting-down connection keeps accepting
// requests already on their way.
const shutdownReadGrace = 500 * time.Millisecond

// shutdownWriteGrace is how long replies to in-flight requests may take to
// reach the client once the server shuts down.
const shutdownWriteGrace = 10 * time.Second

// conn is one client connection through negotiation and transmission.
type conn struct {
	srv *Server
	raw net.Conn // the accepted socket; deadlines and Close go here
	nc  net.Conn // raw, or the TLS connection over it after STARTTLS
	r   *requestReader
	w   *bufio.Writer // negotiation replies only
	tls bool

	// Negotiated options, discarded by STARTTLS.
	structured bool   // NBD_OPT_STRUCTURED_REPLY was acknowledged
	metaExport string // export named by the last NBD_OPT_SET_META_CONTEXT
	metaAlloc  bool   // that SET selected base:allocation

	stopping atomic.Bool
	refused  bool // over Limits.MaxConnections: told so and closed

	// Deadlines for the stall timeouts (deadline.go). dlmu orders their
	// updates with stop's, so that shutdown's grace periods stand.
	dlmu       sync.Mutex
	readUntil  time.Time // request loop only
	writeUntil time.Time // under wmu

	// Transmission state.
	exp      *export
	wmu      sync.Mutex // held by whoever writes replies to the socket
	replies  replyQueue
	budget   byteBudget // this connection's share; charges also come from srv.mem
	direct   []byte     // the buffer of serveDirect, made on first use
	slots    chan struct{}
	jobs     chan job // to idle workers; closed when the request loop ends
	workers  sync.WaitGroup
	brokeErr atomic.Bool
	// rawSock lets large reads leave with sendfile(2); nil under TLS, whose
	// records the kernel cannot build.
	rawSock syscall.RawConn
	// Request-loop state: replies answered inline but not yet sent, whether
	// the backend's file system refused RWF_NOWAIT or keeps files in memory,
	// and the file reads last went to.
	held         int
	heldBytes    int
	noNowait     bool
	ramFile      bool
	lastFile     *os.File
	lastFileConn syscall.RawConn
}

// export is an Export with its capabilities resolved from the backend.
type export struct {
	Export
	size    int64
	flags   uint16
	writer  disk.Writer
	flusher disk.Flusher
	trimmer disk.Trimmer
	zeroer  disk.Zeroer

	// What this connection negotiated for the export.
	structured  bool // replies to READ and errors are structured
	filer       disk.FileRanger
	quick       disk.QuickWriter
	blockStatus bool          // base:allocation was selected for it
	extenter    disk.Extenter // nil: every range is reported as data
}

func resolveExport(e Export) *export {
	x := &export{Export: e, size: e.Backend.Size()}
	x.filer, _ = e.Backend.(disk.FileRanger)
	x.flags = tflagHasFlags | tflagSendCache
	if w, ok := e.Backend.(disk.Writer); ok && !e.ReadOnly {
		x.writer = w
		x.zeroer, _ = e.Backend.(disk.Zeroer)
		x.trimmer, _ = e.Backend.(disk.Trimmer)
		x.quick, _ = e.Backend.(disk.QuickWriter)
		// Without a Zeroer, WRITE_ZEROES is emulated with zero-filled writes.
		x.flags |= tflagSendWriteZeroes
		if x.trimmer != nil {
			x.flags |= tflagSendTrim
		}
	} else {
		x.flags |= tflagReadOnly
	}
	if f, ok := e.Backend.(disk.Flusher); ok {
		x.flusher = f
		x.flags |= tflagSendFlush | tflagSendFUA
	}
	if x.writer == nil {
		// Nothing changes, so every connection trivially sees the same data.
		x.flags |= tflagCanMultiConn
	} else if m, ok := e.Backend.(MultiConnSafe); ok && m.MultiConnSafe() {
		x.flags |= tflagCanMultiConn
	}
	return x
}

// resolve gives the export as this connection sees it: the backend's
// abilities plus what was negotiated. INFO and GO both use it, so they
// report the same flags as the spec requires.
func (c *conn) resolve(e Export) *export {
	x := resolveExport(e)
	if !c.structured {
		return x
	}
	x.structured = true
	// Reads are always answered with a single chunk, so DF is honoured.
	x.flags |= tflagSendDF
	// A selection made for another export does not carry over (spec).
	if c.metaAlloc && c.metaExport == e.Name {
		x.blockStatus = true
		x.extenter, _ = e.Backend.(disk.Extenter)
	}
	return x
}

func (c *conn) serve(ctx context.Context) {
	c.nc = c.raw
	// A read reply is header plus up to MaxBlockSize bytes; a send buffer
	// that holds a typical reply whole lets one write finish it instead of
	// parking the worker on the poller for every partial write.
	if b, ok := c.raw.(interface{ SetWriteBuffer(int) error }); ok {
		b.SetWriteBuffer(socketSendBuffer)
	}
	defer c.srv.forget(c)
	defer c.raw.Close()
	if c.refused {
		c.refuse()
		return
	}
	c.raw.SetDeadline(time.Now().Add(c.srv.handshakeTimeout()))
	if c.stopping.Load() {
		return
	}
	c.r = newRequestReader(c.nc, readBufferSize)
	c.w = bufio.NewWriterSize(c.nc, 4096)
	exp := c.negotiate(ctx)
	if exp == nil {
		return
	}
	c.w = nil
	c.raw.SetDeadline(time.Time{})
	if c.stopping.Load() {
		return
	}
	if sc, ok := c.nc.(syscall.Conn); ok && !c.tls {
		c.rawSock, _ = sc.SyscallConn()
	}
	c.transmit(exp)
}

// stop makes the connection finish: reading stops after a short grace, and
// the request loop then waits for in-flight requests before closing.
func (c *conn) stop() {
	c.dlmu.Lock()
	defer c.dlmu.Unlock()
	c.stopping.Store(true)
	// Requests the client sent just before shutdown are still read and
	// answered for a moment, rather than lost in a reset connection.
	c.raw.SetReadDeadline(time.Now().Add(shutdownReadGrace))
	// A client that stopped reading replies must not hold shutdown forever.
	c.raw.SetWriteDeadline(time.Now().Add(shutdownWriteGrace))
}

// broken is called after a failed reply write: the stream is unusable.
func (c *conn) broken() {
	c.brokeErr.Store(true)
	c.raw.Close()
}
