// Package nbd is kvmify's Network Block Device server: it serves any
// disk.Reader (a source image, an overlay) to NBD clients such as QEMU,
// qemu-img, nbdcopy and nbdinfo.
//
// It speaks the fixed newstyle handshake (EXPORT_NAME, GO, INFO, LIST, ABORT,
// STARTTLS with TLS 1.3, STRUCTURED_REPLY, and LIST_META_CONTEXT and
// SET_META_CONTEXT for the one context base:allocation) and the transmission
// commands READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE, DISC and, once
// base:allocation is selected, BLOCK_STATUS. What an export can do is
// discovered from its backend by type assertion on the optional interfaces
// of package disk (Writer, Flusher, Trimmer, Zeroer, Extenter) and on
// MultiConnSafe, and only what is true is advertised.
//
// Clients that negotiate nothing get simple replies and exactly the flags
// they always did. With structured replies a READ is answered by one data
// chunk (so NBD_FLAG_SEND_DF is advertised and DF honoured), errors on any
// command are error chunks, and other successes stay simple replies.
// BLOCK_STATUS reports holes and zeroed runs as the backend's Extenter sees
// them, at most 2048 descriptors per reply; a backend without one
// is reported as all data. Extended headers are not offered.
//
// Every request is checked by one function (validateRequest) before it is
// dispatched, and every backend error is turned into an NBD errno by one
// function (errnoFor). Requests on a connection run concurrently and are
// answered out of order.
//
// What clients can make the server hold is bounded (Limits): every request
// is charged, before it is read or served, to a byte budget of its
// connection and one of the server, and its reply gives the charge back once
// the socket took it, however it was made (worker, request loop, held for a
// batch). A connection over its own budget is not read from until its client
// reads replies; one that finds the server's budget spent serves requests
// one at a time through a small buffer of its own, so clients that never
// read cannot starve the others. Sendfile replies hold no buffer. Stalled
// WRITE payloads and clients that take no replies are disconnected after a
// timeout, and connections beyond a limit are refused with a message.
//
// The read path is built for the page cache, where a server's cost is its
// copies and wake-ups. A backend that is a disk.FileRanger (a source file,
// an overlay over one for the blocks it does not hold) lets reads skip the
// workers: pipelined reads of 64 KiB and more leave with sendfile(2), other
// reads whose data is cached are copied in the request loop and their
// replies sent together. Writes a disk.QuickWriter can take without
// reading a lower layer are done in the request loop too. Workers hand
// finished replies to a queue that one writev empties. TLS, block devices,
// blocks held by the overlay, partial writes into unchanged blocks and FUA
// writes take the ordinary path of a worker, a pooled buffer and one copy.
//
// The protocol is described in doc/proto.md of the NBD project.
package nbd
