// Package pipeline is the one path every serving command (serve, mount,
// export, and later boot) takes from an image to a disk it may serve, and
// it owns the promises kvmify makes on that path:
//
//   - the source is opened once, read-only (OpenSource), and planned from
//     that handle; it is never written;
//   - every argument and output path is checked before anything is created
//     or changed (Open's steps 1–6), so a refusal leaves no file behind;
//   - no output path is ever a file the command reads (package outpath);
//   - the boot fix goes into an overlay in one commit or not at all: a new
//     patched overlay is built under a temporary name beside its final
//     path, committed, and linked into place; on any error it is removed;
//   - an existing overlay's recorded patch must agree with what was asked
//     (--no-patch, --target), or the run is refused with what to do;
//   - what was done is recorded in the overlay and in the report.
//
// inspect, plan, ls and cat use the same source opener and the same file
// system detection (package fstype), so a BitLocker volume or a damaged
// Windows volume is judged the same way everywhere.
package pipeline
