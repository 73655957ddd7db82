package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
)

// Flush makes every write acknowledged before it durable: it commits the
// block map as described in the package documentation. It returns at once
// when nothing changed since the last commit, and for an ephemeral overlay.
func (o *Overlay) Flush() error {
	o.mu.RLock()
	closed := o.closed
	o.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if o.ephemeral {
		return nil
	}
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	return o.commit()
}

func (o *Overlay) commit() error {
	// Snapshot under the gate, so no write is half way between choosing to
	// write a slot in place and updating the map.
	o.gate.Lock()
	if !o.dirty.Load() {
		o.gate.Unlock()
		return nil
	}
	o.mu.Lock()
	gen := o.gen + 1
	keys := make([]string, 0, len(o.meta))
	for k := range o.meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	committing := newBitmap(o.slots.high)
	rec := encodeMap(gen, o.bmap.count, o.bmap.data, o.spb, func(fn func(mapEntry)) {
		o.bmap.each(func(e mapEntry) {
			if e.Value >= valueSlotBase {
				committing.set(int64(e.Value - valueSlotBase))
			}
			fn(e)
		})
	}, o.slotSums, o.meta, keys)
	o.slots.committing = committing
	nslots := (int64(len(rec)) + int64(o.bs) - 1) / int64(o.bs)
	recSlot := o.slots.allocRun(nslots)
	for s := recSlot; s < recSlot+nslots; s++ {
		committing.set(s)
	}
	o.dirty.Store(false)
	o.mu.Unlock()
	o.gate.Unlock()

	err := o.writeCommit(gen, rec, o.slotOffset(recSlot))

	o.mu.Lock()
	if err != nil {
		o.slots.commitFailed()
		o.dirty.Store(true)
	} else {
		o.slots.commitDone()
		o.gen = gen
	}
	o.mu.Unlock()
	return err
}

// writeCommit writes the map record, makes it and all data durable, then
// writes and syncs the root that points at it.
func (o *Overlay) writeCommit(gen uint64, rec []byte, recOff int64) error {
	if _, err := o.f.WriteAt(rec, recOff); err != nil {
		return fmt.Errorf("overlay %s: writing map record: %w", o.path, err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("overlay %s: sync: %w", o.path, err)
	}
	root := rawRoot{Generation: gen, MapOffset: uint64(recOff), MapLength: uint64(len(rec)), MapCRC: crc32.Checksum(rec, crcTable)}
	if _, err := o.f.WriteAt(root.encodeCopies(), rootOffset(gen)); err != nil {
		return fmt.Errorf("overlay %s: writing commit root: %w", o.path, err)
	}
	if err := o.f.Sync(); err != nil {
		return fmt.Errorf("overlay %s: sync: %w", o.path, err)
	}
	return nil
}

// loaded is an overlay file's committed state as found on disk.
type loaded struct {
	hdr      *rawHeader
	root     *rawRoot
	rec      *mapRecord
	mapSlot  int64 // first slot of the map record
	mapSlots int64 // slots the map record occupies
	// accepted is set when the state is an older generation accepted
	// explicitly; both roots are rewritten before the overlay is used.
	accepted bool
	// warnings name damage that did not prevent loading (a root copy that
	// fails its check while the other copy is intact).
	warnings []string
}

// loadOptions say how load treats a damaged newest commit.
type loadOptions struct {
	// accept is a generation the caller accepts in place of the newest
	// (0: none): it is loaded, if its root and map record are intact and
	// every block it references passes its checksum.
	accept uint64
	// noVerify skips reading the data of the state chosen when a root copy
	// is damaged (ReadInfo, which serves no data).
	noVerify bool
}

// rootLoc is what one root location holds: the newest of its copies that
// passes its checks, whether it was never written, and the damage found.
type rootLoc struct {
	off     int64
	root    *rawRoot
	blank   bool   // every byte of both copies is zero
	damage  error  // copies that fail their checks
	genHint uint64 // generation field of a damaged copy with a good magic (unverified)
}

func readRootLoc(r io.ReaderAt, off int64) (rootLoc, error) {
	b := make([]byte, rootRegionSize)
	if err := readFull(r, b, off); err != nil {
		return rootLoc{}, err
	}
	loc := rootLoc{off: off}
	blank := 0
	for i := range rootCopies {
		coff := off + int64(i)*rootCopyStride
		cb := b[i*rootCopyStride : i*rootCopyStride+rootSize]
		if allZero(cb) {
			blank++
			loc.damage = errors.Join(loc.damage, formatErr(coff, "commit root", "copy is blank", nil, ErrCorrupt))
			continue
		}
		root, err := decodeRoot(cb, coff)
		if err == nil && rootOffset(root.Generation) != off {
			err = formatErr(coff+rootGenerationOff, "commit root", "generation belongs at the other root's place", root.Generation, ErrCorrupt)
		}
		if err != nil {
			if string(cb[:len(rootMagic)]) == rootMagic {
				loc.genHint = binary.LittleEndian.Uint64(cb[rootGenerationOff:])
			}
			loc.damage = errors.Join(loc.damage, err)
			continue
		}
		if loc.root == nil || root.Generation > loc.root.Generation {
			loc.root = root
		}
	}
	if blank == rootCopies {
		loc.blank, loc.damage = true, nil
	}
	return loc, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// load reads and validates an overlay file of fileSize bytes: the header,
// the newest intact root, and the map record it points to. The rules for a
// damaged root or record are those of the package documentation: a torn or
// damaged copy of a root is survived by the other copy; a root location
// whose copies are both damaged, or a newest map record that fails its
// checks, is refused with a CommitError unless opts.accept names the older
// generation, whose every block is then verified.
func load(r io.ReaderAt, fileSize int64, opts loadOptions) (*loaded, error) {
	if fileSize < dataOffset {
		hb := make([]byte, min(fileSize, headerSize))
		if err := readFull(r, hb, headerOffset); err != nil {
			return nil, err
		}
		if _, err := decodeHeader(hb); err != nil {
			return nil, err
		}
		return nil, formatErr(0, "file", "shorter than the header and roots", fileSize, ErrCorrupt)
	}
	hb := make([]byte, headerSize)
	if err := readFull(r, hb, headerOffset); err != nil {
		return nil, err
	}
	hdr, err := decodeHeader(hb)
	if err != nil {
		return nil, err
	}
	var locs [2]rootLoc
	for i, off := range []int64{rootAOffset, rootBOffset} {
		if locs[i], err = readRootLoc(r, off); err != nil {
			return nil, err
		}
	}
	cur, older := &locs[0], &locs[1]
	if cur.root == nil || (older.root != nil && older.root.Generation > cur.root.Generation) {
		cur, older = older, cur
	}
	if cur.root == nil {
		if cur.blank && older.blank {
			return nil, formatErr(rootAOffset, "commit root", "neither root was ever written", nil, ErrCorrupt)
		}
		return nil, fmt.Errorf("no intact commit root: %w", oneLine(errors.Join(cur.damage, older.damage)))
	}
	g := cur.root.Generation
	var warnings []string
	suspicious := false
	for _, l := range []*rootLoc{cur, older} {
		if l.root != nil && l.damage != nil {
			// One copy survives. Its twin was damaged at rest or torn by a
			// crash while a commit that was never acknowledged wrote it.
			warnings = append(warnings, fmt.Sprintf("commit root at byte 0x%x: one copy is damaged, the other is intact: %v", l.off, oneLine(l.damage)))
			suspicious = true
		}
	}
	target := cur
	if opts.accept != 0 && opts.accept != g {
		if older.root == nil || older.root.Generation != opts.accept {
			return nil, fmt.Errorf("generation %d cannot be accepted: no intact commit root holds it (the intact roots hold %s)", opts.accept, rootGens(cur, older))
		}
		target = older
	}
	// The other location holds the previous commit once a second commit
	// was made; blank there is right only for a new overlay.
	if older.root == nil && !(older.blank && g == 1) && opts.accept == 0 {
		reason := fmt.Errorf("commit root at byte 0x%x is damaged (both copies: %w)", older.off, oneLine(orBlank(older)))
		held := fmt.Sprintf("the newest commit, generation %d, or the previous one, %d", g+1, g-1)
		if g == 1 {
			held = fmt.Sprintf("the newest commit, generation %d", g+1)
		}
		reason = fmt.Errorf("%w; it held %s", reason, held)
		if older.genHint != 0 {
			reason = fmt.Errorf("%w (its damaged generation field reads %d, unverified)", reason, older.genHint)
		}
		return nil, &CommitError{Lost: g + 1, Fallback: g, Reason: reason}
	}
	st, err := loadRoot(r, fileSize, hdr, target.root, target.off)
	if err != nil {
		if opts.accept == 0 && older.root != nil {
			return nil, &CommitError{Lost: g, Fallback: older.root.Generation,
				Reason: fmt.Errorf("the newest commit, generation %d, is damaged: %w", g, err)}
		}
		return nil, err
	}
	st.warnings = warnings
	if opts.accept != 0 {
		st.accepted = true
		suspicious = true
	}
	if suspicious && !opts.noVerify {
		if err := verifyBlocks(r, st); err != nil {
			return nil, fmt.Errorf("generation %d cannot be served, its data is not intact: %w", st.root.Generation, err)
		}
	}
	return st, nil
}

// oneLine joins the errors errors.Join put on separate lines with "; ".
func oneLine(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = oneLine(e).Error()
		}
		return &joined{msg: strings.Join(msgs, "; "), errs: errs}
	}
	return err
}

// joined is errors.Join's result printed on one line.
type joined struct {
	msg  string
	errs []error
}

func (j *joined) Error() string   { return j.msg }
func (j *joined) Unwrap() []error { return j.errs }

func orBlank(l *rootLoc) error {
	if l.blank {
		return formatErr(l.off, "commit root", "blank", nil, ErrCorrupt)
	}
	return l.damage
}

func rootGens(ls ...*rootLoc) string {
	var out []string
	for _, l := range ls {
		if l.root != nil {
			out = append(out, fmt.Sprint(l.root.Generation))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " and ")
}

// loadRoot reads and validates the map record root points to.
func loadRoot(r io.ReaderAt, fileSize int64, hdr *rawHeader, root *rawRoot, rootOff int64) (*loaded, error) {
	bs := int64(hdr.BlockSize)
	spb := int(bs / sumSize)
	nblocks := blockCount(int64(hdr.SourceSize), int(bs))
	st := &loaded{hdr: hdr, root: root}
	switch {
	case root.MapLength == 0 && root.MapOffset == 0:
		st.rec = &mapRecord{Generation: root.Generation, Meta: map[string][]byte{}}
		return st, nil
	case root.MapOffset < dataOffset || (root.MapOffset-dataOffset)%uint64(bs) != 0:
		return nil, formatErr(rootOff+rootMapOffsetOff, "commit root", "map record offset not at a slot", root.MapOffset, ErrCorrupt)
	case root.MapLength > maxMapLength(nblocks, spb):
		return nil, formatErr(rootOff+rootMapLengthOff, "commit root", "map record longer than any this disk can need", root.MapLength, ErrCorrupt)
	case root.MapLength > uint64(fileSize) || root.MapOffset > uint64(fileSize)-root.MapLength:
		return nil, formatErr(rootOff+rootMapLengthOff, "commit root", fmt.Sprintf("map record at byte %d runs past the end of the %d-byte file", root.MapOffset, fileSize), root.MapLength, ErrCorrupt)
	}
	mb := make([]byte, root.MapLength)
	if err := readFull(r, mb, int64(root.MapOffset)); err != nil {
		return nil, err
	}
	nslots := (fileSize - dataOffset) / bs // data slots are always written whole
	rec, err := decodeMap(mb, int64(root.MapOffset), root, nblocks, nslots, spb)
	if err != nil {
		return nil, err
	}
	st.rec = rec
	st.mapSlot = (int64(root.MapOffset) - dataOffset) / bs
	st.mapSlots = (int64(root.MapLength) + bs - 1) / bs
	for _, e := range rec.Entries {
		if s := int64(e.Value) - valueSlotBase; e.Value >= valueSlotBase && s >= st.mapSlot && s < st.mapSlot+st.mapSlots {
			return nil, formatErr(int64(root.MapOffset), "map record", fmt.Sprintf("block %d's data slot overlaps the map record", e.VBlock), s, ErrCorrupt)
		}
	}
	return st, nil
}

// verifyBlocks reads every slot st references and checks it against its
// recorded checksums: what proves that an older commit's slots were not
// reused since, or that a commit found after damage is whole.
func verifyBlocks(r io.ReaderAt, st *loaded) error {
	bs := int(st.hdr.BlockSize)
	spb := bs / sumSize
	buf := make([]byte, bs)
	k := 0
	for _, e := range st.rec.Entries {
		if e.Value < valueSlotBase {
			continue
		}
		s := int64(e.Value - valueSlotBase)
		sums := st.rec.Sums[k*spb : (k+1)*spb]
		k++
		off := dataOffset + s*int64(bs)
		if err := readFull(r, buf, off); err != nil {
			return err
		}
		for i, want := range sums {
			if got := crc32.Checksum(buf[i*sumSize:(i+1)*sumSize], crcTable); got != want {
				return &DataError{Block: int64(e.VBlock), DiskOffset: int64(e.VBlock)*int64(bs) + int64(i*sumSize),
					Slot: s, FileOffset: off + int64(i*sumSize), Want: want, Got: got}
			}
		}
	}
	return nil
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return formatErr(off+int64(n), "file", "truncated", len(b)-n, ErrCorrupt)
	}
	return fmt.Errorf("reading at byte %d: %w", off+int64(n), err)
}
