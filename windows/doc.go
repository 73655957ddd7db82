// Package windows finds Windows installs on a disk image's file systems,
// judges whether they are safe to patch, and turns bootfix's registry
// changes into a Plan: the patched SYSTEM hive and the disk writes that
// would put it in place. It only reads; applying a Plan is the overlay's
// job.
package windows
