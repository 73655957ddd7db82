package registry

import (
	"encoding/binary"
	"slices"
)

// leaf is one lf/lh/li subkey list as the editor rewrites it.
type leaf struct {
	off     uint32 // noCell for a list not yet written
	sig     [2]byte
	entries []listEntry
}

// subkeyLeaves reads a key's subkey list: its leaves, and whether they hang
// under an ri index list.
func (e *Editor) subkeyLeaves(listOff uint32) (leaves []leaf, ri bool, err error) {
	sig, entries, err := e.h.readList(listOff)
	if err != nil {
		return nil, false, err
	}
	if sig != sigRI {
		return []leaf{{listOff, sig, entries}}, false, nil
	}
	for _, ent := range entries {
		s, le, err := e.h.readList(ent.off)
		if err != nil {
			return nil, false, err
		}
		if s == sigRI {
			return nil, false, formatErr(abs(ent.off), "ri", ent.off, "ri list nested in an ri list")
		}
		leaves = append(leaves, leaf{ent.off, s, le})
	}
	return leaves, true, nil
}

// upName returns the upcased name units of the key node at off, for sorting.
func (e *Editor) upName(off uint32) ([]uint16, error) {
	r, err := e.h.readNK(off)
	if err != nil {
		return nil, err
	}
	return upcaseUnits(nameUnits(r.name, r.flags&KeyCompName != 0)), nil
}

// leafHash is the element hash a list of kind sig stores for a name.
func leafHash(sig [2]byte, units []uint16) uint32 {
	switch sig {
	case sigLH:
		return lhHash(units)
	case sigLF:
		return lfHint(units)
	}
	return 0
}

// newLeafKind is the list kind for a key's first subkey: lh from version 1.5
// on (Windows XP and later), lf before.
func (e *Editor) newLeafKind() [2]byte {
	if e.base.MinorVersion >= 5 {
		return sigLH
	}
	return sigLF
}

// insertSubkey links the key node child (named units) into parent's subkey
// list at its sorted place, splitting a full leaf under an ri list.
func (e *Editor) insertSubkey(parent, child uint32, units []uint16) error {
	pr, err := e.h.readNK(parent)
	if err != nil {
		return err
	}
	var (
		leaves []leaf
		ri     bool
	)
	if pr.subkeyCount == 0 {
		leaves = []leaf{{off: noCell, sig: e.newLeafKind()}}
	} else if leaves, ri, err = e.subkeyLeaves(pr.subkeyList); err != nil {
		return err
	}
	up := upcaseUnits(slices.Clone(units))
	// The new name goes into the first leaf whose last name sorts after it,
	// or at the end of the last leaf.
	li, pos := len(leaves)-1, len(leaves[len(leaves)-1].entries)
	for i, l := range leaves {
		found := false
		for j, ent := range l.entries {
			n, err := e.upName(ent.off)
			if err != nil {
				return err
			}
			if compareUnits(up, n) < 0 {
				li, pos, found = i, j, true
				break
			}
		}
		if found {
			break
		}
	}
	l := &leaves[li]
	l.entries = slices.Insert(l.entries, pos, listEntry{off: child, hash: leafHash(l.sig, units)})

	parts := []leaf{*l}
	if len(l.entries) > e.maxLeaf {
		half := len(l.entries) / 2
		parts = []leaf{
			{off: l.off, sig: l.sig, entries: l.entries[:half]},
			{off: noCell, sig: l.sig, entries: slices.Clone(l.entries[half:])},
		}
	}
	for i := range parts {
		if parts[i].off, err = e.writeList(parts[i].off, parts[i].sig, parts[i].entries); err != nil {
			return err
		}
	}
	if !ri && len(parts) == 1 {
		return e.setSubkeyList(parent, parts[0].off)
	}
	var idx []listEntry
	for i, lf := range leaves {
		if i == li {
			for _, p := range parts {
				idx = append(idx, listEntry{off: p.off})
			}
			continue
		}
		idx = append(idx, listEntry{off: lf.off})
	}
	riOff := uint32(noCell)
	if ri {
		riOff = pr.subkeyList
	}
	if riOff, err = e.writeList(riOff, sigRI, idx); err != nil {
		return err
	}
	return e.setSubkeyList(parent, riOff)
}

// removeSubkey unlinks the key node child from parent's subkey list, freeing
// lists that become empty.
func (e *Editor) removeSubkey(parent, child uint32) error {
	pr, err := e.h.readNK(parent)
	if err != nil {
		return err
	}
	if pr.subkeyCount == 0 {
		return formatErr(abs(parent), "nk", child, "subkey not found in an empty subkey list")
	}
	leaves, ri, err := e.subkeyLeaves(pr.subkeyList)
	if err != nil {
		return err
	}
	for i, l := range leaves {
		j := slices.IndexFunc(l.entries, func(ent listEntry) bool { return ent.off == child })
		if j < 0 {
			continue
		}
		l.entries = slices.Delete(l.entries, j, j+1)
		if len(l.entries) > 0 {
			_, err := e.writeList(l.off, l.sig, l.entries)
			return err
		}
		if err := e.alloc.release(l.off); err != nil {
			return err
		}
		if !ri {
			return e.setSubkeyList(parent, noCell)
		}
		idx := make([]listEntry, 0, len(leaves)-1)
		for k, o := range leaves {
			if k != i {
				idx = append(idx, listEntry{off: o.off})
			}
		}
		if len(idx) > 0 {
			_, err := e.writeList(pr.subkeyList, sigRI, idx)
			return err
		}
		if err := e.alloc.release(pr.subkeyList); err != nil {
			return err
		}
		return e.setSubkeyList(parent, noCell)
	}
	return formatErr(abs(pr.subkeyList), "subkey list", child, "subkey 0x%x not found in its parent's list", abs(child))
}

// writeList stores a subkey list of kind sig, in place when the cell at off
// is big enough, else in a new cell (freeing off); it returns the list's
// offset. off may be noCell for a new list.
func (e *Editor) writeList(off uint32, sig [2]byte, entries []listEntry) (uint32, error) {
	elem := indexElementSize
	if sig == sigLF || sig == sigLH {
		elem = leafHashElementSize
	}
	need := listHeaderSize + elem*len(entries)
	var b []byte
	if off != noCell {
		cb, err := e.h.cell(off, string(sig[:]))
		if err != nil {
			return 0, err
		}
		if len(cb) >= need {
			b = cb
		} else if err := e.alloc.release(off); err != nil {
			return 0, err
		}
	}
	if b == nil {
		n, err := e.alloc.alloc(need)
		if err != nil {
			return 0, err
		}
		off, b = n, e.cellBytes(n)
	}
	le := binary.LittleEndian
	copy(b, sig[:])
	le.PutUint16(b[listCountOffset:], uint16(len(entries)))
	for i, ent := range entries {
		p := b[listElementsOffset+i*elem:]
		le.PutUint32(p, ent.off)
		if elem == leafHashElementSize {
			le.PutUint32(p[4:], ent.hash)
		}
	}
	return off, nil
}

// setSubkeyList points parent's key node at a new subkey list.
func (e *Editor) setSubkeyList(parent, list uint32) error {
	b, err := e.nkData(parent)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b[nkSubkeyListOffset:], list)
	return nil
}
