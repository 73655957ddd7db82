package ntfs

// planFileNames updates the sizes duplicated in the file's own $FILE_NAME
// attributes and in the $I30 entries that name it in each parent
// directory. Windows refreshes these lazily, but ntfs-3g's listings and
// chkdsk compare them with the $DATA attribute.
func (p *planner) planFileNames(allocSize, dataSize int64) error {
	parents := map[uint64]bool{}
	for _, a := range p.f.Attrs {
		if a.Type != AttrFileName || a.NonResident {
			continue
		}
		raw, err := p.record(a.Record)
		if err != nil {
			return err
		}
		valueOff := a.RecordOffset + int(le16(raw[a.RecordOffset+attrValueOffsetOff:]))
		fn, err := parseFileName(raw[valueOff:a.RecordOffset+a.Length], p.v.attrDiskOffset(a))
		if err != nil {
			return err
		}
		parents[fn.Parent] = true
		setFileNameSizes(raw[valueOff:], allocSize, dataSize)
	}
	for parent := range parents {
		if err := p.planIndexEntries(parent, allocSize, dataSize); err != nil {
			return err
		}
	}
	return nil
}

func setFileNameSizes(fn []byte, allocSize, dataSize int64) {
	put64(fn[fnAllocatedSizeOff:], uint64(allocSize))
	put64(fn[fnDataSizeOff:], uint64(dataSize))
}

// planIndexEntries patches every $I30 entry of directory dir that points at
// the file, in $INDEX_ROOT (part of dir's MFT record) or in INDX blocks,
// which are then written whole with new fixups.
func (p *planner) planIndexEntries(dir uint64, allocSize, dataSize int64) error {
	df, err := p.v.OpenRecord(dir)
	if err != nil {
		return err
	}
	entries, err := p.v.IndexEntries(df)
	if err != nil {
		return err
	}
	nodes := map[int64]*IndexNode{}
	found := false
	for _, e := range entries {
		if e.Record != p.f.Number() || e.Last {
			continue
		}
		found = true
		if e.Key.AllocatedSize == allocSize && e.Key.DataSize == dataSize {
			continue
		}
		if e.NodeVCN < 0 {
			raw, err := p.record(dir)
			if err != nil {
				return err
			}
			setFileNameSizes(raw[e.Offset+ieKeyOff:], allocSize, dataSize)
			continue
		}
		node, ok := nodes[e.NodeVCN]
		if !ok {
			if node, err = p.v.IndexNode(df, e.NodeVCN); err != nil {
				return err
			}
			nodes[e.NodeVCN] = node
		}
		setFileNameSizes(node.Raw[e.Offset+ieKeyOff:], allocSize, dataSize)
	}
	if !found {
		return formatErr(df.Record.Extents[0].Offset, "$I30 index", ErrBadIndex, p.f.Number(),
			"directory %d, named as parent of record %d, has no entry for it", dir, p.f.Number())
	}
	for _, node := range nodes {
		if err := protectFixups(node.Raw, node.Extents[0].Offset, "INDX block"); err != nil {
			return err
		}
		p.writes = append(p.writes, splitWrite(node.Raw, node.Extents, WriteIndex)...)
	}
	return nil
}
