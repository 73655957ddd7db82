// Package nbd is kvmify's Network Block Device server: it serves any
// disk.Reader (a source image, an overlay) to NBD clients such as QEMU,
// qemu-img, nbdcopy and nbdinfo.
//
// It speaks the fixed newstyle handshake (EXPORT_NAME, GO, INFO, LIST, ABORT
// and STARTTLS with TLS 1.3) and the transmission commands READ, WRITE,
// FLUSH, TRIM, WRITE_ZEROES, CACHE and DISC with simple replies. What an
// export can do is discovered from its backend by type assertion on the
// optional interfaces of package disk (Writer, Flusher, Trimmer, Zeroer) and
// on MultiConnSafe, and only what is true is advertised.
//
// Every request is checked by one function (validateRequest) before it is
// dispatched, and every backend error is turned into an NBD errno by one
// function (errnoFor). Requests on a connection run concurrently and are
// answered out of order; memory per connection is bounded by a byte budget.
//
// The protocol is described in doc/proto.md of the NBD project.
package nbd
