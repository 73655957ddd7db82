package ntfs

import (
	"bytes"
	"errors"
)

// $VOLUME_INFORMATION layout and flags.
const (
	viMajorOff      = 8
	viMinorOff      = 9
	viFlagsOff      = 10
	viSize          = 12
	VolumeFlagDirty = 0x0001
)

// $LogFile restart page and restart area layout.
const (
	rstrSignature      = "RSTR"
	rstrChkdskSig      = "CHKD"
	rstrSysPageSizeOff = 16
	rstrAreaOffsetOff  = 24
	rstrMinorOff       = 26
	rstrMajorOff       = 28
	rstrMinPage        = 512
	raClientInUseOff   = 12
	raFlagsOff         = 14
	raFlagClean        = 0x0002
	logNoClient        = 0xffff
)

// hiberfil.sys header signatures: active hibernation image, Windows 8+
// fast-startup / resume markers.
var hibernationSignatures = []string{"hibr", "HIBR", "wake", "WAKE", "RSTR", "rstr"}

// State is what kvmify must know before it dares to change the volume.
type State struct {
	MajorVersion, MinorVersion int
	VolumeFlags                uint16
	Dirty                      bool
	// LogFileEmpty is set when $LogFile was reset (all 0xff, as after a
	// clean ntfs-3g unmount or mkntfs).
	LogFileEmpty bool
	// LogFileClean means the restart area records no pending client.
	LogFileClean bool
	// LogFileVersion is "1.1" (Windows 7 and earlier) or "2.0" (Windows
	// 8+, which may leave metadata cached for Fast Startup).
	LogFileVersion string
	// Hibernation is hiberfil.sys's signature when it marks a hibernated
	// or fast-started system ("" if no such file or a zeroed header).
	Hibernation string
	BitLocker   bool
}

// Safe reports whether the volume was cleanly shut down with nothing
// cached elsewhere: not dirty, log clean, not hibernated.
func (s State) Safe() bool {
	return !s.Dirty && (s.LogFileEmpty || s.LogFileClean) && s.Hibernation == "" && !s.BitLocker
}

// State reads $Volume, $LogFile and hiberfil.sys.
func (v *Volume) State() (State, error) {
	var st State
	vol, err := v.OpenRecord(RecordVolume)
	if err != nil {
		return st, err
	}
	vi, err := vol.stream(AttrVolumeInformation, "")
	if err != nil {
		return st, err
	}
	b := make([]byte, viSize)
	if vi.Size() < viSize {
		return st, formatErr(vi.headerOffset, "$VOLUME_INFORMATION", ErrBadAttribute, vi.Size(), "value too short")
	}
	if _, err := vi.ReadAt(b, 0); err != nil {
		return st, err
	}
	st.MajorVersion, st.MinorVersion = int(b[viMajorOff]), int(b[viMinorOff])
	st.VolumeFlags = le16(b[viFlagsOff:])
	st.Dirty = st.VolumeFlags&VolumeFlagDirty != 0
	if err := v.logFileState(&st); err != nil {
		return st, err
	}
	if err := v.hibernationState(&st); err != nil {
		return st, err
	}
	return st, nil
}

func (v *Volume) logFileState(st *State) error {
	lf, err := v.OpenRecord(RecordLogFile)
	if err != nil {
		return err
	}
	s, err := lf.Stream("")
	if err != nil {
		return err
	}
	head := make([]byte, rstrMinPage)
	if s.Size() < rstrMinPage {
		return formatErr(s.headerOffset, "$LogFile", ErrBadRecord, s.Size(), "$LogFile too small")
	}
	if _, err := s.ReadAt(head, 0); err != nil {
		return err
	}
	if bytes.Count(head, []byte{0xff}) == len(head) {
		st.LogFileEmpty, st.LogFileClean = true, true
		return nil
	}
	abs := int64(-1)
	if ex, err := s.diskExtents(0, 1); err == nil && len(ex) > 0 {
		abs = ex[0].Offset
	}
	if sig := string(head[:4]); sig != rstrSignature && sig != rstrChkdskSig {
		return formatErr(abs, "$LogFile restart page", ErrBadRecord, sig, "no RSTR signature")
	}
	page := int64(le32(head[rstrSysPageSizeOff:]))
	if page < rstrMinPage || page > maxRecordSize || page&(page-1) != 0 || page > s.Size() {
		return formatErr(abs+rstrSysPageSizeOff, "$LogFile restart page", ErrBadRecord, page, "bad system page size")
	}
	buf := make([]byte, page)
	if _, err := s.ReadAt(buf, 0); err != nil {
		return err
	}
	if err := applyFixups(buf, abs, "$LogFile restart page"); err != nil {
		return err
	}
	st.LogFileVersion = itoa16(le16(buf[rstrMajorOff:])) + "." + itoa16(le16(buf[rstrMinorOff:]))
	ra := int(le16(buf[rstrAreaOffsetOff:]))
	if ra+raFlagsOff+2 > len(buf) {
		return formatErr(abs+rstrAreaOffsetOff, "$LogFile restart page", ErrBadRecord, ra, "restart area outside the page")
	}
	inUse := le16(buf[ra+raClientInUseOff:])
	flags := le16(buf[ra+raFlagsOff:])
	st.LogFileClean = inUse == logNoClient || flags&raFlagClean != 0
	return nil
}

func itoa16(n uint16) string { return uitoa(uint64(n)) }

func (v *Volume) hibernationState(st *State) error {
	s, err := v.OpenStream("hiberfil.sys")
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrIsDirectory) {
		return nil
	}
	if err != nil {
		return err
	}
	if s.Size() < 4 {
		return nil
	}
	sig := make([]byte, 4)
	if _, err := s.ReadAt(sig, 0); err != nil {
		return err
	}
	for _, h := range hibernationSignatures {
		if string(sig) == h {
			st.Hibernation = h
		}
	}
	return nil
}
