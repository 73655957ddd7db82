package nbd

// Wire constants of the NBD protocol, named as in doc/proto.md.

// Handshake magics.
const (
	nbdMagic       uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	ihaveOpt       uint64 = 0x49484156454f5054 // "IHAVEOPT"
	optReplyMagic  uint64 = 0x0003e889045565a9
	requestMagic   uint32 = 0x25609513
	simpleRepMagic uint32 = 0x67446698
	structRepMagic uint32 = 0x668e33ef
)

// Handshake flags sent by the server.
const (
	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1
)

// Client flags.
const (
	clientFixedNewstyle uint32 = 1 << 0
	clientNoZeroes      uint32 = 1 << 1
	clientKnownFlags           = clientFixedNewstyle | clientNoZeroes
)

// Option types.
const (
	optExportName      uint32 = 1
	optAbort           uint32 = 2
	optList            uint32 = 3
	optStartTLS        uint32 = 5
	optInfo            uint32 = 6
	optGo              uint32 = 7
	optStructuredRepl  uint32 = 8
	optListMetaContext uint32 = 9
	optSetMetaContext  uint32 = 10
)

// Option reply types; errors have the top bit set.
const (
	repAck         uint32 = 1
	repServer      uint32 = 2
	repInfo        uint32 = 3
	repMetaContext uint32 = 4

	repFlagError        uint32 = 1 << 31
	repErrUnsup                = repFlagError | 1
	repErrPolicy               = repFlagError | 2
	repErrInvalid              = repFlagError | 3
	repErrPlatform             = repFlagError | 4
	repErrTLSReqd              = repFlagError | 5
	repErrUnknown              = repFlagError | 6
	repErrShutdown             = repFlagError | 7
	repErrBlockSizeReqd        = repFlagError | 8
	repErrTooBig               = repFlagError | 9
)

// Information types for OPT_INFO and OPT_GO.
const (
	infoExport      uint16 = 0
	infoName        uint16 = 1
	infoDescription uint16 = 2
	infoBlockSize   uint16 = 3
)

// Transmission flags.
const (
	tflagHasFlags        uint16 = 1 << 0
	tflagReadOnly        uint16 = 1 << 1
	tflagSendFlush       uint16 = 1 << 2
	tflagSendFUA         uint16 = 1 << 3
	tflagRotational      uint16 = 1 << 4
	tflagSendTrim        uint16 = 1 << 5
	tflagSendWriteZeroes uint16 = 1 << 6
	tflagSendDF          uint16 = 1 << 7
	tflagCanMultiConn    uint16 = 1 << 8
	tflagSendResize      uint16 = 1 << 9
	tflagSendCache       uint16 = 1 << 10
	tflagSendFastZero    uint16 = 1 << 11
)

// Cmd is an NBD transmission command type.
type Cmd uint16

// Commands.
const (
	CmdRead        Cmd = 0
	CmdWrite       Cmd = 1
	CmdDisc        Cmd = 2
	CmdFlush       Cmd = 3
	CmdTrim        Cmd = 4
	CmdCache       Cmd = 5
	CmdWriteZeroes Cmd = 6
	CmdBlockStatus Cmd = 7
)

var cmdNames = map[Cmd]string{
	CmdRead:        "READ",
	CmdWrite:       "WRITE",
	CmdDisc:        "DISC",
	CmdFlush:       "FLUSH",
	CmdTrim:        "TRIM",
	CmdCache:       "CACHE",
	CmdWriteZeroes: "WRITE_ZEROES",
	CmdBlockStatus: "BLOCK_STATUS",
}

// String gives the command's name from the spec.
func (c Cmd) String() string {
	if s, ok := cmdNames[c]; ok {
		return "NBD_CMD_" + s
	}
	return "NBD_CMD_UNKNOWN"
}

// Command flags.
const (
	cmdFlagFUA      uint16 = 1 << 0
	cmdFlagNoHole   uint16 = 1 << 1
	cmdFlagDF       uint16 = 1 << 2
	cmdFlagReqOne   uint16 = 1 << 3
	cmdFlagFastZero uint16 = 1 << 4
)

// Structured reply chunk flags and types.
const (
	replyFlagDone uint16 = 1 << 0

	replyTypeNone        uint16 = 0
	replyTypeOffsetData  uint16 = 1
	replyTypeOffsetHole  uint16 = 2
	replyTypeBlockStatus uint16 = 5
	replyTypeError       uint16 = 1<<15 | 1
	replyTypeErrorOffset uint16 = 1<<15 | 2
)

// Metadata context names and the base:allocation state flags.
const (
	metaNamespaceBase         = "base:"
	metaBaseAllocation        = "base:allocation"
	stateHole          uint32 = 1 << 0
	stateZero          uint32 = 1 << 1
	// baseAllocationID is the context id given to base:allocation on
	// NBD_OPT_SET_META_CONTEXT; any nonzero value would do, as it is the
	// only context.
	baseAllocationID uint32 = 1
)

// Errno values carried in replies; they are Linux's numbers, which the
// protocol fixes regardless of platform.
const (
	errnoOK       uint32 = 0
	errnoPerm     uint32 = 1
	errnoIO       uint32 = 5
	errnoNoMem    uint32 = 12
	errnoInval    uint32 = 22
	errnoNoSpc    uint32 = 28
	errnoOverflow uint32 = 75
	errnoNotSup   uint32 = 95
	errnoShutdown uint32 = 108
)

// Sizes of fixed wire structures.
const (
	serverGreetingLen  = 8 + 8 + 2 // NBDMAGIC, IHAVEOPT, handshake flags
	optHeaderLen       = 8 + 4 + 4 // IHAVEOPT, option, length
	optReplyHeaderLen  = 8 + 4 + 4 + 4
	exportNameReplyLen = 8 + 2 // size, transmission flags
	exportNameZeroPad  = 124
	requestLen         = 4 + 2 + 2 + 8 + 8 + 4
	simpleReplyLen     = 4 + 4 + 8
	structReplyLen     = 4 + 2 + 2 + 8 + 4 // magic, flags, type, handle, length
	offsetDataHdrLen   = 8                 // NBD_REPLY_TYPE_OFFSET_DATA offset
	errorChunkLen      = 4 + 2             // error, message length
	blockDescLen       = 4 + 4             // extent length, status flags
	blockDescFlagsOff  = 4                 // status flags within a descriptor
	blockStatusHdrLen  = 4                 // metadata context id
	metaContextIDLen   = 4
	metaLenFieldLen    = 4 // u32 before the export name, each query, and the query count

	// replyHeadroom is reserved in front of every payload buffer so a READ
	// reply's header, simple or structured, is written in place and the
	// whole reply leaves in one write without copying the data. It is a
	// whole cache line, not just the largest header, so the data keeps the
	// buffer's alignment: with the data at byte 28, the kernel's copies into
	// and out of it ran at about half speed (nbdcopy --synchronous went from
	// ~1.1 to ~1.9 GiB/s with this alone).
	replyHeadroom = 64
)

// The headroom must hold the largest READ reply header; this fails to
// compile if it does not.
var _ [replyHeadroom - max(simpleReplyLen, structReplyLen+offsetDataHdrLen)]struct{}

// Limits protecting the server from hostile or broken clients.
const (
	// maxOptionLen bounds option data; names are at most 4096 bytes by the
	// spec, so anything much bigger is refused rather than buffered.
	maxOptionLen = 64 << 10
	// maxNameLen is the spec's limit on export names and descriptions.
	maxNameLen = 4096
	// maxMetaQueries bounds the queries of one LIST or SET_META_CONTEXT;
	// real clients send one or two.
	maxMetaQueries = 128
	// maxBlockDescs caps the descriptors in one BLOCK_STATUS reply (16 KiB);
	// the client asks again from where the reply stopped.
	maxBlockDescs = 2048
	// maxDescLen is the longest single descriptor: the u32 length field,
	// rounded down to a multiple of 512 as the spec prefers.
	maxDescLen = 1<<32 - 512
	// maxInfoRequests bounds the information types a client may ask for.
	maxInfoRequests = (maxOptionLen - 4 - maxNameLen - 2) / 2

	// MinBlockSize, PreferredBlockSize and MaxBlockSize are advertised in
	// NBD_INFO_BLOCK_SIZE; MaxBlockSize also caps READ and WRITE lengths.
	MinBlockSize       = 1
	PreferredBlockSize = 4096
	MaxBlockSize       = 32 << 20

	// maxDrainLen is the largest rejected write payload skipped to keep a
	// connection alive; beyond it the connection is closed instead.
	maxDrainLen = 256 << 20
	// maxInFlight bounds concurrently served requests per connection.
	maxInFlight = 64
	// zeroChunk is the write size used to emulate WRITE_ZEROES on backends
	// that are not Zeroers.
	zeroChunk = 1 << 20
)

// rawRequest is the request header as on the wire.
type rawRequest struct {
	Magic  uint32
	Flags  uint16
	Type   Cmd
	Handle uint64
	Offset uint64
	Length uint32
}
