package ntfs

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kvmify/kvmify/disk"
)

// Write kinds, naming the structure a planned write changes.
const (
	WriteData      = "data"
	WriteMFTRecord = "mft-record"
	WriteBitmap    = "bitmap"
	WriteIndex     = "index"
)

// Planner sentinels, matched with errors.Is.
var (
	ErrUnsafeVolume = errors.New("volume state is unsafe to write")
	ErrNotPlannable = errors.New("file cannot be rewritten in place")
	ErrNoSpace      = errors.New("not enough free clusters")
	ErrRunlistFull  = errors.New("extended runlist does not fit the MFT record")
)

// firstUserRecord is the first MFT record not reserved for system files;
// lower records (some mirrored in $MFTMirr) are never rewritten.
const firstUserRecord = 16

// PlanOptions tunes PlanRewrite.
type PlanOptions struct {
	// AllowUnsafeVolume plans even on a dirty, unclean or hibernated volume.
	AllowUnsafeVolume bool
}

// PlanRewrite returns the writes that make the file at path (optionally
// "file:stream") read back as content, without applying any of them.
//
// The plan depends only on the volume's current bytes. Writes are sorted
// by offset and never overlap; data and $Bitmap writes are whole sectors,
// MFT records and INDX blocks are written whole with a new update
// sequence number (split where a record spans non-adjacent clusters).
// Only sectors whose bytes change are written, so rewriting a hive with a
// few edited pages plans a few sector writes. A length change also
// rewrites the $DATA sizes, the file's $FILE_NAME sizes and its parents'
// $I30 entries; growth past the allocation takes free clusters from
// $Bitmap next to or near the last run and re-encodes the runlist in the
// record (ErrRunlistFull when it no longer fits). Resident, compressed,
// encrypted and sparse streams, directories and system files are refused
// with ErrNotPlannable, an unsafe volume with ErrUnsafeVolume unless
// opts.AllowUnsafeVolume is set.
func (v *Volume) PlanRewrite(path string, content []byte, opts PlanOptions) ([]disk.Write, error) {
	f, stream, err := v.Lookup(path)
	if err != nil {
		return nil, err
	}
	return v.PlanRewriteFile(f, stream, content, opts)
}

// PlanRewriteFile is PlanRewrite for an already opened file and the name
// of its $DATA stream ("" for the unnamed one).
func (v *Volume) PlanRewriteFile(f *File, stream string, content []byte, opts PlanOptions) ([]disk.Write, error) {
	if !opts.AllowUnsafeVolume {
		if err := v.checkSafe(); err != nil {
			return nil, err
		}
	}
	recOff := f.Record.Extents[0].Offset
	if f.Number() < firstUserRecord {
		return nil, formatErr(recOff, "MFT record", ErrNotPlannable, f.Number(), "record %d is an NTFS system file", f.Number())
	}
	if f.IsDirectory() && stream == "" {
		return nil, formatErr(recOff, "MFT record", ErrNotPlannable, f.Number(), "record %d is a directory", f.Number())
	}
	s, err := f.Stream(stream)
	if err != nil {
		return nil, err
	}
	if err := plannable(s, f.Number()); err != nil {
		return nil, err
	}
	p := &planner{v: v, f: f, s: s, records: map[uint64][]byte{}, recordExtents: map[uint64][]Extent{}}
	return p.plan(content)
}

func (v *Volume) checkSafe() error {
	st, err := v.State()
	if err != nil {
		return fmt.Errorf("ntfs: cannot establish volume state before planning writes: %w", err)
	}
	if st.Safe() {
		return nil
	}
	var why []string
	if st.Dirty {
		why = append(why, "$Volume dirty flag set")
	}
	if !st.LogFileEmpty && !st.LogFileClean {
		why = append(why, "$LogFile not cleanly shut down (version "+st.LogFileVersion+")")
	}
	if st.Hibernation != "" {
		why = append(why, "hiberfil.sys signature "+fmt.Sprintf("%q", st.Hibernation))
	}
	if st.BitLocker {
		why = append(why, "BitLocker")
	}
	return formatErr(0, "volume", ErrUnsafeVolume, nil, "%s; boot and shut down Windows fully (no Fast Startup) or override", strings.Join(why, ", "))
}

// plannable refuses streams whose bytes do not map one to one onto clusters.
func plannable(s *Stream, rec uint64) error {
	var why string
	switch {
	case s.Resident():
		why = "resident (stored inside the MFT record)"
	case s.Compressed():
		why = "compressed"
	case s.Encrypted():
		why = "encrypted"
	case s.Sparse():
		why = "sparse"
	default:
		return nil
	}
	return formatErr(s.headerOffset, "attribute", ErrNotPlannable, rec, "%s stream of record %d is %s", s.Type, rec, why)
}

// planner gathers the writes of one rewrite. records holds modified copies
// of fixed-up MFT records, written whole (with new fixups) at the end.
type planner struct {
	v             *Volume
	f             *File
	s             *Stream
	records       map[uint64][]byte
	recordExtents map[uint64][]Extent
	writes        []disk.Write
}

func (p *planner) plan(content []byte) ([]disk.Write, error) {
	v, s := p.v, p.s
	cs := v.ClusterSize
	newLen := int64(len(content))
	runs := append([]Run(nil), s.Runs...)
	have := int64(0)
	if n := len(runs); n > 0 {
		have = runs[n-1].VCN + runs[n-1].Length
	}
	need := (newLen + cs - 1) / cs
	grow := need > have
	var bm *clusterBitmap
	if grow {
		if len(s.Fragments) != 1 {
			return nil, formatErr(s.headerOffset, "attribute", ErrNotPlannable, len(s.Fragments),
				"%s of record %d is split over %d attribute records; growing it is not supported", s.Type, p.f.Number(), len(s.Fragments))
		}
		var err error
		if bm, err = v.openBitmap(); err != nil {
			return nil, err
		}
		goal := int64(0)
		if n := len(runs); n > 0 {
			goal = runs[n-1].LCN + runs[n-1].Length
		}
		added, err := bm.allocate(need-have, goal)
		if err != nil {
			return nil, err
		}
		runs = appendRuns(runs, added)
	}
	if err := p.planData(runs, content); err != nil {
		return nil, err
	}
	allocSize := s.AllocatedSize()
	if grow {
		allocSize = need * cs
	}
	first := s.Fragments[0]
	if newLen != s.Size() || newLen != s.InitializedSize() || grow {
		raw, err := p.record(first.Record)
		if err != nil {
			return nil, err
		}
		a := raw[first.RecordOffset:]
		put64(a[attrDataSizeOff:], uint64(newLen))
		put64(a[attrInitSizeOff:], uint64(newLen))
		put64(a[attrAllocatedSizeOff:], uint64(allocSize))
		if s.Name == "" {
			if err := p.planFileNames(allocSize, newLen); err != nil {
				return nil, err
			}
		}
		if grow {
			put64(a[attrHighestVCNOff:], uint64(need-1))
			if err := p.resizeRunlist(first, runs); err != nil {
				return nil, err
			}
		}
	}
	if err := p.flushRecords(); err != nil {
		return nil, err
	}
	if bm != nil {
		w, err := bm.writes()
		if err != nil {
			return nil, err
		}
		p.writes = append(p.writes, w...)
	}
	sortWrites(p.writes)
	return p.writes, nil
}

// appendRuns adds newly allocated runs after the last one, merging a run
// that continues the previous one on disk.
func appendRuns(runs, added []Run) []Run {
	vcn := int64(0)
	if n := len(runs); n > 0 {
		vcn = runs[n-1].VCN + runs[n-1].Length
	}
	for _, r := range added {
		r.VCN = vcn
		vcn += r.Length
		if n := len(runs); n > 0 && !runs[n-1].Sparse && runs[n-1].LCN+runs[n-1].Length == r.LCN {
			runs[n-1].Length += r.Length
			continue
		}
		runs = append(runs, r)
	}
	return runs
}

// record returns the planner's modifiable copy of MFT record n.
func (p *planner) record(n uint64) ([]byte, error) {
	if raw, ok := p.records[n]; ok {
		return raw, nil
	}
	var rec *Record
	for _, r := range append([]*Record{p.f.Record}, p.f.Extensions...) {
		if r.Number == n {
			rec = r
		}
	}
	if rec == nil {
		var err error
		if rec, err = p.v.ReadRecord(n); err != nil {
			return nil, err
		}
	}
	raw := bytes.Clone(rec.Raw)
	p.records[n] = raw
	p.recordExtents[n] = rec.Extents
	return raw, nil
}

// flushRecords re-protects every modified record and emits it whole.
func (p *planner) flushRecords() error {
	for n, raw := range p.records {
		ext := p.recordExtents[n]
		if err := protectFixups(raw, ext[0].Offset, "MFT record"); err != nil {
			return err
		}
		p.writes = append(p.writes, splitWrite(raw, ext, WriteMFTRecord)...)
	}
	return nil
}

// splitWrite cuts b into one write per disk extent.
func splitWrite(b []byte, extents []Extent, what string) []disk.Write {
	var out []disk.Write
	pos := int64(0)
	for _, e := range extents {
		out = append(out, disk.Write{Offset: e.Offset, Data: b[pos : pos+e.Length], What: what})
		pos += e.Length
	}
	return out
}

func sortWrites(w []disk.Write) {
	sort.Slice(w, func(i, j int) bool { return w[i].Offset < w[j].Offset })
}
