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
// answered out of order; memory per connection is bounded by a byte budget.
//
// The protocol is described in doc/proto.md of the NBD project.
package nbd
