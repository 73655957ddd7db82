// Package registry is a pure-Go engine for Windows registry hive files
// ("regf"): it reads the base block, hive bins, cells, keys, values and their
// lists, checks a hive's invariants (Check), recovers dirty hives from their
// transaction logs in memory (Recover), and edits hives in place (Editor,
// New), reporting exactly which byte ranges changed. Offsets named "cell offsets" are relative to the first
// hive bin (file offset = 4096 + cell offset), as in the format itself;
// errors always report absolute file offsets.
package registry

import (
	"fmt"
	"os"
	"strings"
)

// Hive is a parsed hive held in memory; it is read-only and safe for
// concurrent readers.
type Hive struct {
	data  []byte // the whole file as given
	hbins []byte // data[BaseBlockSize : BaseBlockSize+HiveBinsDataSize]
	base  *BaseBlock
	bins  []hbin

	dirty string // why the hive is dirty, or ""
}

// Open parses a hive file held in memory. The slice is kept, not copied, and
// must not be modified while the Hive is in use. A dirty hive (sequence
// numbers differ or bad checksum) opens read-only; Dirty reports why.
func Open(data []byte) (*Hive, error) {
	base, err := ParseBaseBlock(data)
	if err != nil {
		return nil, err
	}
	size := base.HiveBinsDataSize
	if !base.ChecksumValid() {
		// A base block that fails its checksum may hold any size; the
		// bins that are actually there decide (as yarp reads
		// EffectiveSizeHive). The hive is dirty either way.
		if n := binsExtent(data); n > 0 {
			size = n
		}
	}
	if size%hbinAlignment != 0 || size == 0 {
		return nil, formatErr(regfHiveBinsDataSizeOffset, "base block", size, "hive bins data size is not a positive multiple of %d", hbinAlignment)
	}
	if uint64(size) > uint64(len(data)-BaseBlockSize) {
		return nil, formatErr(regfHiveBinsDataSizeOffset, "base block", size, "hive bins data size exceeds the file (%d bytes): truncated hive", len(data))
	}
	h := &Hive{data: data, hbins: data[BaseBlockSize : BaseBlockSize+int(size)], base: base}
	if h.bins, err = parseBins(h.hbins); err != nil {
		return nil, err
	}
	switch {
	case !base.ChecksumValid():
		h.dirty = fmt.Sprintf("base block checksum 0x%08x does not match its content (0x%08x)", base.Checksum, BaseBlockChecksum(data))
	case base.Dirty():
		h.dirty = fmt.Sprintf("sequence numbers differ (primary %d, secondary %d)", base.PrimarySequence, base.SecondarySequence)
	}
	if _, err := h.key(base.RootCellOffset, "", 0); err != nil {
		return nil, err
	}
	return h, nil
}

// OpenFile reads and parses the hive file at path.
func OpenFile(path string) (*Hive, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Open(data)
}

// BaseBlock returns the hive's decoded base block.
func (h *Hive) BaseBlock() *BaseBlock { return h.base }

// Dirty reports whether the hive's last write was incomplete (its logs would
// have to be applied), and why.
func (h *Hive) Dirty() (dirty bool, reason string) { return h.dirty != "", h.dirty }

// DirtyErr returns nil for a clean hive, else an error matching ErrDirtyHive
// that says why: for callers that must not use a hive whose logs were not
// applied.
func (h *Hive) DirtyErr() error {
	if h.dirty == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrDirtyHive, h.dirty)
}

// Bytes returns the hive file as given to Open; callers must not modify it.
func (h *Hive) Bytes() []byte { return h.data }

// Root returns the hive's root key.
func (h *Hive) Root() (*Key, error) { return h.key(h.base.RootCellOffset, "", 0) }

// Lookup finds a key by its backslash-separated path relative to the root
// (case-insensitive; empty components are ignored, so "" is the root).
func (h *Hive) Lookup(path string) (*Key, error) {
	k, err := h.Root()
	if err != nil {
		return nil, err
	}
	for _, name := range strings.Split(path, `\`) {
		if name == "" {
			continue
		}
		if k, err = k.Subkey(name); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// maxDepth bounds key nesting during walks; Windows itself limits key paths to
// 512 levels.
const maxDepth = 512

// Walk calls fn for every key in depth-first order, parents before children
// and siblings in stored (sorted) order. It stops at the first error from fn
// or from the hive. A key that is its own ancestor (a reference loop) or
// nesting beyond 512 levels is a FormatError; two keys sharing a subkey
// list or a subkey is not a loop, and the shared part is visited under each
// (as libhivex, libregf and regipy read such hives).
func (h *Hive) Walk(fn func(k *Key) error) error {
	root, err := h.Root()
	if err != nil {
		return err
	}
	return root.Walk(fn)
}

// Walk calls fn for k and every key below it, like Hive.Walk.
func (k *Key) Walk(fn func(k *Key) error) error {
	w := &walker{fn: fn, budget: walkBudget(len(k.h.hbins))}
	return w.walk(k)
}

// walkBudget bounds how many keys a walk visits. Shared subtrees are
// visited once per parent, so a hostile hive whose keys share lists level
// after level would otherwise need an exponential walk; a real hive visits
// each key once, and a key takes at least an nk cell.
func walkBudget(hbinsLen int) int {
	return max(1024, 2*hbinsLen/(nkFixedSize+cellSizeFieldSize))
}

// walker carries one walk: the keys on the path from its start to the key
// being visited (a loop is a key met again on that path; paths are at most
// 512 keys deep, so a slice scan beats a map), the visits left, and a set
// reused by each key's subkey list read.
type walker struct {
	fn     func(*Key) error
	path   []uint32
	budget int
	seen   cellSet
}

func (w *walker) walk(k *Key) error {
	for _, off := range w.path {
		if off == k.off {
			return formatErr(abs(k.off), "nk", k.off, "key is its own ancestor (reference loop) at %q", k.path)
		}
	}
	if w.budget--; w.budget < 0 {
		return &FormatError{Offset: abs(k.off), Structure: "nk", Msg: "walk visits more keys than the hive can hold (subkey lists shared level after level)", Err: ErrLimit}
	}
	if err := w.fn(k); err != nil {
		return err
	}
	clear(w.seen.m)
	subs, err := k.subkeys(&w.seen)
	if err != nil {
		return err
	}
	w.path = append(w.path, k.off)
	defer func() { w.path = w.path[:len(w.path)-1] }()
	for _, s := range subs {
		if s.depth > maxDepth {
			return &FormatError{Offset: abs(s.off), Structure: "nk", Msg: fmt.Sprintf("key nesting deeper than %d levels", maxDepth), Err: ErrLimit}
		}
		if err := w.walk(s); err != nil {
			return err
		}
	}
	return nil
}
