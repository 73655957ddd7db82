package ntfs

// attrAlign is the alignment of attribute records inside an MFT record.
const attrAlign = 8

// resizeRunlist replaces the mapping pairs of attribute a (inside its
// record copy) with runs, growing the attribute into the record's free
// space and moving the attributes after it. It never creates an
// $ATTRIBUTE_LIST: a runlist that no longer fits is an error.
func (p *planner) resizeRunlist(a *Attr, runs []Run) error {
	raw, err := p.record(a.Record)
	if err != nil {
		return err
	}
	enc, err := encodeRunlist(runs)
	if err != nil {
		return err
	}
	recOff := p.recordExtents[a.Record][0].Offset
	pairsOff := a.RunlistOffset - a.RecordOffset
	newLen := (pairsOff + len(enc) + attrAlign - 1) / attrAlign * attrAlign
	newLen = max(newLen, a.Length)
	delta := newLen - a.Length
	inUse := int(le32(raw[recBytesInUseOff:]))
	allocated := int(le32(raw[recBytesAllocatedOff:]))
	allocated = min(allocated, len(raw))
	if inUse+delta > allocated {
		return formatErr(recOff+int64(a.RecordOffset), "attribute", ErrRunlistFull, len(enc),
			"record %d: %d-byte runlist needs %d more bytes, the record has %d free; an $ATTRIBUTE_LIST would be needed",
			a.Record, len(enc), delta, allocated-inUse)
	}
	end := a.RecordOffset + a.Length
	if delta > 0 {
		copy(raw[end+delta:inUse+delta], raw[end:inUse])
		put32(raw[recBytesInUseOff:], uint32(inUse+delta))
		put32(raw[a.RecordOffset+attrLengthOff:], uint32(newLen))
	}
	pairs := raw[a.RunlistOffset : a.RecordOffset+newLen]
	clear(pairs)
	copy(pairs, enc)
	return nil
}
