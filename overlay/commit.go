package overlay

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
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
	rec := encodeMap(gen, o.bmap.count, func(fn func(mapEntry)) {
		o.bmap.each(func(e mapEntry) {
			if e.Value >= valueSlotBase {
				committing.set(int64(e.Value - valueSlotBase))
			}
			fn(e)
		})
	}, o.meta, keys)
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
	if _, err := o.f.WriteAt(root.encode(), rootOffset(gen)); err != nil {
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
}

// load reads and validates an overlay file of fileSize bytes: the header,
// the newest root whose CRC is valid (a torn root is the expected result of
// a crash during a commit), and the map record it points to.
func load(r io.ReaderAt, fileSize int64) (*loaded, error) {
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
	var best *rawRoot
	var rootErr error
	for _, off := range []int64{rootAOffset, rootBOffset} {
		rb := make([]byte, rootSize)
		if err := readFull(r, rb, off); err != nil {
			return nil, err
		}
		root, err := decodeRoot(rb, off)
		if err != nil {
			rootErr = errors.Join(rootErr, err)
			continue
		}
		if best == nil || root.Generation > best.Generation {
			best = root
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no valid commit root: %w", rootErr)
	}
	bs := int64(hdr.BlockSize)
	nblocks := blockCount(int64(hdr.SourceSize), int(bs))
	st := &loaded{hdr: hdr, root: best}
	rootOff := rootOffset(best.Generation)
	switch {
	case best.MapLength == 0 && best.MapOffset == 0:
		st.rec = &mapRecord{Generation: best.Generation, Meta: map[string][]byte{}}
		return st, nil
	case best.MapOffset < dataOffset || (best.MapOffset-dataOffset)%uint64(bs) != 0:
		return nil, formatErr(rootOff+rootMapOffsetOff, "commit root", "map record offset not at a slot", best.MapOffset, ErrCorrupt)
	case best.MapLength > maxMapLength(nblocks):
		return nil, formatErr(rootOff+rootMapLengthOff, "commit root", "map record longer than any this disk can need", best.MapLength, ErrCorrupt)
	case best.MapLength > uint64(fileSize) || best.MapOffset > uint64(fileSize)-best.MapLength:
		return nil, formatErr(rootOff+rootMapLengthOff, "commit root", fmt.Sprintf("map record at byte %d runs past the end of the %d-byte file", best.MapOffset, fileSize), best.MapLength, ErrCorrupt)
	}
	mb := make([]byte, best.MapLength)
	if err := readFull(r, mb, int64(best.MapOffset)); err != nil {
		return nil, err
	}
	nslots := (fileSize - dataOffset) / bs // data slots are always written whole
	rec, err := decodeMap(mb, int64(best.MapOffset), best, nblocks, nslots)
	if err != nil {
		return nil, err
	}
	st.rec = rec
	st.mapSlot = (int64(best.MapOffset) - dataOffset) / bs
	st.mapSlots = (int64(best.MapLength) + bs - 1) / bs
	for i, e := range rec.Entries {
		if s := int64(e.Value) - valueSlotBase; e.Value >= valueSlotBase && s >= st.mapSlot && s < st.mapSlot+st.mapSlots {
			return nil, formatErr(int64(best.MapOffset)+mapFixedSize+int64(i)*mapEntrySize+mapEntryValue, "map record", "data slot overlaps the map record", s, ErrCorrupt)
		}
	}
	return st, nil
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
