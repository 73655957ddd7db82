package registry

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// NewOptions describes a hive made by New; the zero value is valid.
type NewOptions struct {
	MinorVersion uint32    // 3 to 6; 0 means 5, the version Windows XP and later write
	RootName     string    // the root key's name; "" means "ROOT"
	FileName     string    // recorded in the base block, e.g. `\SystemRoot\System32\Config\SYSTEM`
	Time         time.Time // timestamps of the base block and root key; zero means time.Now
}

// Defaults of New.
const (
	newDefaultMinorVersion = 5
	newDefaultRootName     = "ROOT"
	newClusteringFactor    = 1
)

// New builds an empty, clean hive: a root key with a default security
// descriptor (SYSTEM and Administrators full control, Everyone read) in one
// 4 KiB hive bin. Edit it with NewEditor to build synthetic hives.
func New(opts NewOptions) (*Hive, error) {
	minor := opts.MinorVersion
	if minor == 0 {
		minor = newDefaultMinorVersion
	}
	if minor < regfMinMinorVersion || minor > regfMaxMinorVersion {
		return nil, fmt.Errorf("registry: New: minor version %d not in %d..%d", minor, regfMinMinorVersion, regfMaxMinorVersion)
	}
	rootName := opts.RootName
	if rootName == "" {
		rootName = newDefaultRootName
	}
	nameBytes, comp, units := encodeName(rootName)
	if units > maxKeyNameUnits || strings.ContainsRune(rootName, '\\') {
		return nil, fmt.Errorf("%w: root name %q", ErrInvalidName, rootName)
	}
	now := opts.Time
	if now.IsZero() {
		now = time.Now()
	}
	sd := defaultSecurityDescriptor()
	skOff := uint32(hbinHeaderSize)
	skSize := cellSizeFor(skFixedSize + len(sd))
	rootOff := skOff + skSize
	rootSize := cellSizeFor(nkFixedSize + len(nameBytes))
	freeOff := rootOff + rootSize
	if freeOff+minCellSize > hbinAlignment {
		return nil, fmt.Errorf("%w: root name %q too long for the first bin", ErrInvalidName, rootName)
	}

	data := make([]byte, BaseBlockSize+hbinAlignment)
	le := binary.LittleEndian
	bb := &BaseBlock{
		PrimarySequence: 1, SecondarySequence: 1, LastWritten: now,
		MajorVersion: regfMajorVersion, MinorVersion: minor,
		FileType: FileTypePrimary, FileFormat: FileFormatMemory,
		RootCellOffset: rootOff, HiveBinsDataSize: hbinAlignment,
		ClusteringFactor: newClusteringFactor, FileName: opts.FileName,
	}
	bb.Encode(data)

	bin := data[BaseBlockSize:]
	copy(bin[hbinSignatureOffset:], hbinSignature[:])
	le.PutUint32(bin[hbinSizeOffset:], hbinAlignment)
	le.PutUint64(bin[hbinTimestampOffset:], timeToFiletime(now))

	le.PutUint32(bin[skOff:], uint32(-int32(skSize)))
	sk := bin[skOff+cellSizeFieldSize:]
	copy(sk, sigSK[:])
	le.PutUint32(sk[skFlinkOffset:], skOff)
	le.PutUint32(sk[skBlinkOffset:], skOff)
	le.PutUint32(sk[skReferenceCountOffset:], 1)
	le.PutUint32(sk[skDescriptorSizeOffset:], uint32(len(sd)))
	copy(sk[skDescriptorOffset:], sd)

	le.PutUint32(bin[rootOff:], uint32(-int32(rootSize)))
	nk := bin[rootOff+cellSizeFieldSize:]
	copy(nk, sigNK[:])
	flags := uint16(KeyHiveEntry | KeyNoDelete)
	if comp {
		flags |= KeyCompName
	}
	le.PutUint16(nk[nkFlagsOffset:], flags)
	le.PutUint64(nk[nkLastWrittenOffset:], timeToFiletime(now))
	for _, f := range []int{nkParentOffset, nkSubkeyListOffset, nkVolatileSubkeyListOffset, nkValueListOffset, nkClassNameOffset} {
		le.PutUint32(nk[f:], noCell)
	}
	le.PutUint32(nk[nkSecurityOffset:], skOff)
	le.PutUint16(nk[nkNameLengthOffset:], uint16(len(nameBytes)))
	copy(nk[nkNameOffset:], nameBytes)

	le.PutUint32(bin[freeOff:], hbinAlignment-freeOff)
	return Open(data)
}

// Security descriptor facts (SECURITY_DESCRIPTOR_RELATIVE, ACL, ACE and SID
// layouts as Windows defines them) for New's default descriptor.
const (
	sdDaclPresent     = 0x0004
	sdOwnerOff        = 4
	sdGroupOff        = 8
	sdDaclOff         = 16
	aclRevision       = 2
	aclHeaderSize     = 8
	aceAccessAllowed  = 0
	aceContainerInher = 0x02
	aceHeaderSize     = 8
	sidRevision       = 1
	keyAllAccess      = 0xF003F
	keyRead           = 0x20019

	sidAuthorityWorld = 1 // S-1-1
	sidAuthorityNT    = 5 // S-1-5
	ridWorld          = 0
	ridLocalSystem    = 18
	ridBuiltin        = 32
	ridAdmins         = 544
)

// sid encodes a SID with the given identifier authority and sub-authorities.
func sid(authority byte, subs ...uint32) []byte {
	b := make([]byte, 8+4*len(subs))
	b[0], b[1], b[7] = sidRevision, byte(len(subs)), authority
	for i, s := range subs {
		binary.LittleEndian.PutUint32(b[8+4*i:], s)
	}
	return b
}

// defaultSecurityDescriptor builds the self-relative descriptor of New's root
// key: owner Administrators, group SYSTEM, and a DACL giving SYSTEM and
// Administrators full control and Everyone read access, inherited by subkeys.
func defaultSecurityDescriptor() []byte {
	le := binary.LittleEndian
	admins := sid(sidAuthorityNT, ridBuiltin, ridAdmins)
	system := sid(sidAuthorityNT, ridLocalSystem)
	world := sid(sidAuthorityWorld, ridWorld)
	aces := []struct {
		mask uint32
		sid  []byte
	}{{keyAllAccess, system}, {keyAllAccess, admins}, {keyRead, world}}
	var acl []byte
	for _, a := range aces {
		ace := make([]byte, aceHeaderSize+len(a.sid))
		ace[0], ace[1] = aceAccessAllowed, aceContainerInher
		le.PutUint16(ace[2:], uint16(len(ace)))
		le.PutUint32(ace[4:], a.mask)
		copy(ace[aceHeaderSize:], a.sid)
		acl = append(acl, ace...)
	}
	hdr := make([]byte, aclHeaderSize)
	hdr[0] = aclRevision
	le.PutUint16(hdr[2:], uint16(aclHeaderSize+len(acl)))
	le.PutUint16(hdr[4:], uint16(len(aces)))
	acl = append(hdr, acl...)

	sd := make([]byte, sdHeaderSize)
	sd[0] = sdRevision
	le.PutUint16(sd[sdControlOff:], sdSelfRelative|sdDaclPresent)
	le.PutUint32(sd[sdOwnerOff:], uint32(len(sd)))
	sd = append(sd, admins...)
	le.PutUint32(sd[sdGroupOff:], uint32(len(sd)))
	sd = append(sd, system...)
	le.PutUint32(sd[sdDaclOff:], uint32(len(sd)))
	return append(sd, acl...)
}
