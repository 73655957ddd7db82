// Package windows finds Windows installs on a disk image's file systems,
// judges whether they are safe to patch, and turns bootfix's registry
// changes into a Plan: the patched SYSTEM hive and the disk writes that
// would put it in place. It only reads; applying a Plan is the overlay's
// job.
//
// The layers meet here: partition finds the volumes, ntfs reads them
// (OpenNTFS; DirFS reads a mounted volume instead), registry parses and
// recovers the SYSTEM hive, bootfix decides what to change, a HiveEditor
// produces the patched hive file and ntfs.PlanRewrite (used by default for
// volumes read through OpenNTFS) turns it into writes at absolute disk
// offsets.
package windows
