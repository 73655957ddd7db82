package nbd

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

// optBytes encodes one option request.
func optBytes(opt uint32, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, ihaveOpt)
	binary.Write(&b, binary.BigEndian, opt)
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

// metaData encodes LIST/SET_META_CONTEXT data: export name, query count,
// queries.
func metaData(export string, queries ...string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(export)))
	b.WriteString(export)
	binary.Write(&b, binary.BigEndian, uint32(len(queries)))
	for _, q := range queries {
		binary.Write(&b, binary.BigEndian, uint32(len(q)))
		b.WriteString(q)
	}
	return b.Bytes()
}

// goData encodes OPT_GO data with no information requests.
func goData(name string) []byte { return goHandshake(name)[4+optHeaderLen:] }

// optReplyMsg is one option reply as received.
type optReplyMsg struct {
	opt, typ uint32
	data     []byte
}

// negotiator drives option haggling by hand.
type negotiator struct {
	t testing.TB
	c net.Conn
}

func dialOpts(t testing.TB, sock string) *negotiator {
	t.Helper()
	c := dialRaw(t, sock)
	if _, err := io.ReadFull(c, make([]byte, serverGreetingLen)); err != nil {
		t.Fatal(err)
	}
	var cf [4]byte
	binary.BigEndian.PutUint32(cf[:], clientFixedNewstyle|clientNoZeroes)
	if _, err := c.Write(cf[:]); err != nil {
		t.Fatal(err)
	}
	return &negotiator{t: t, c: c}
}

// opt sends one option and reads replies until the final one (ACK or an
// error), returning all of them.
func (n *negotiator) opt(opt uint32, data []byte) []optReplyMsg {
	n.t.Helper()
	if _, err := n.c.Write(optBytes(opt, data)); err != nil {
		n.t.Fatal(err)
	}
	var reps []optReplyMsg
	for {
		var h [optReplyHeaderLen]byte
		if _, err := io.ReadFull(n.c, h[:]); err != nil {
			n.t.Fatalf("option %d: %v", opt, err)
		}
		if m := binary.BigEndian.Uint64(h[:]); m != optReplyMagic {
			n.t.Fatalf("option %d: reply magic %#x", opt, m)
		}
		r := optReplyMsg{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
		r.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
		if _, err := io.ReadFull(n.c, r.data); err != nil {
			n.t.Fatal(err)
		}
		if r.opt != opt {
			n.t.Fatalf("reply for option %d to option %d", r.opt, opt)
		}
		reps = append(reps, r)
		if r.typ == repAck || r.typ&repFlagError != 0 {
			return reps
		}
	}
}

// final is the type of the last reply to an option.
func final(reps []optReplyMsg) uint32 { return reps[len(reps)-1].typ }

// contexts lists the META_CONTEXT replies as "id name".
func contexts(reps []optReplyMsg) []string {
	var out []string
	for _, r := range reps {
		if r.typ == repMetaContext && len(r.data) >= 4 {
			out = append(out, fmt.Sprintf("%d %s", binary.BigEndian.Uint32(r.data), r.data[4:]))
		}
	}
	return out
}

// goTo ends negotiation with OPT_GO and returns the transmission client.
func (n *negotiator) goTo(name string) *client {
	n.t.Helper()
	cl := &client{t: n.t, c: n.c}
	for _, r := range n.opt(optGo, goData(name)) {
		if r.typ == repInfo && binary.BigEndian.Uint16(r.data) == infoExport {
			cl.size = binary.BigEndian.Uint64(r.data[2:])
			cl.flags = binary.BigEndian.Uint16(r.data[10:])
		}
		if r.typ&repFlagError != 0 {
			n.t.Fatalf("OPT_GO refused: %#x", r.typ)
		}
	}
	return cl
}

// chunk is one structured reply chunk, or a simple reply (simple set).
type chunk struct {
	simple  bool
	flags   uint16
	typ     uint16
	handle  uint64
	errno   uint32
	payload []byte
}

// next reads one reply of either kind; a simple reply's data is not read.
func (cl *client) next() chunk {
	cl.t.Helper()
	var m [4]byte
	if _, err := io.ReadFull(cl.c, m[:]); err != nil {
		cl.t.Fatal(err)
	}
	switch binary.BigEndian.Uint32(m[:]) {
	case simpleRepMagic:
		var h [simpleReplyLen - 4]byte
		if _, err := io.ReadFull(cl.c, h[:]); err != nil {
			cl.t.Fatal(err)
		}
		return chunk{simple: true, errno: binary.BigEndian.Uint32(h[0:]), handle: binary.BigEndian.Uint64(h[4:])}
	case structRepMagic:
		var h [structReplyLen - 4]byte
		if _, err := io.ReadFull(cl.c, h[:]); err != nil {
			cl.t.Fatal(err)
		}
		ch := chunk{flags: binary.BigEndian.Uint16(h[0:]), typ: binary.BigEndian.Uint16(h[2:]), handle: binary.BigEndian.Uint64(h[4:])}
		ch.payload = make([]byte, binary.BigEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(cl.c, ch.payload); err != nil {
			cl.t.Fatal(err)
		}
		if ch.typ&(1<<15) != 0 {
			if len(ch.payload) < errorChunkLen {
				cl.t.Fatalf("error chunk of %d bytes", len(ch.payload))
			}
			ch.errno = binary.BigEndian.Uint32(ch.payload)
			if ml := int(binary.BigEndian.Uint16(ch.payload[4:])); ml > len(ch.payload)-errorChunkLen {
				cl.t.Fatalf("error message length %d in a %d-byte chunk", ml, len(ch.payload))
			}
		}
		return ch
	default:
		cl.t.Fatalf("reply magic %#x", m)
		return chunk{}
	}
}

// blockStatus sends BLOCK_STATUS and returns the descriptors of its single
// chunk, or the errno of an error chunk.
func (cl *client) blockStatus(flags uint16, off uint64, length uint32) ([]blockDesc, uint32) {
	cl.t.Helper()
	cl.send(CmdBlockStatus, flags, 9, off, length, nil)
	ch := cl.next()
	if ch.simple || ch.handle != 9 || ch.flags&replyFlagDone == 0 {
		cl.t.Fatalf("BLOCK_STATUS reply %+v: want one structured chunk marked done for handle 9", ch)
	}
	if ch.typ == replyTypeError {
		return nil, ch.errno
	}
	p := ch.payload
	if ch.typ != replyTypeBlockStatus || len(p) < blockStatusHdrLen+blockDescLen || (len(p)-blockStatusHdrLen)%blockDescLen != 0 {
		cl.t.Fatalf("BLOCK_STATUS chunk type %d, %d bytes", ch.typ, len(p))
	}
	if id := binary.BigEndian.Uint32(p); id != baseAllocationID {
		cl.t.Fatalf("context id %d, SET gave %d", id, baseAllocationID)
	}
	var ds []blockDesc
	for p = p[blockStatusHdrLen:]; len(p) > 0; p = p[blockDescLen:] {
		ds = append(ds, blockDesc{binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])})
	}
	return ds, 0
}

// structuredClient negotiates structured replies and base:allocation and
// goes to the default export.
func structuredClient(t testing.TB, sock string) *client {
	t.Helper()
	n := dialOpts(t, sock)
	if r := n.opt(optStructuredRepl, nil); final(r) != repAck {
		t.Fatalf("STRUCTURED_REPLY: %#x", final(r))
	}
	if r := n.opt(optSetMetaContext, metaData("", metaBaseAllocation)); final(r) != repAck || len(contexts(r)) != 1 {
		t.Fatalf("SET_META_CONTEXT: %#x %v", final(r), contexts(r))
	}
	return n.goTo("")
}

func TestMetaContextOptions(t *testing.T) {
	const size = 1 << 20
	path := makeImage(t, "m.img", size, 71)
	fd := openFileDisk(t, path)
	srv := oneExport(fd, false)
	srv.Exports["other"] = Export{Name: "other", Backend: fd}
	sock := startServer(t, srv)

	n := dialOpts(t, sock)
	// Before structured replies both options are refused.
	for _, o := range []uint32{optListMetaContext, optSetMetaContext} {
		if r := n.opt(o, metaData("", metaBaseAllocation)); final(r) != repErrInvalid || len(r) != 1 {
			t.Errorf("option %d without structured replies: %#x, %d replies", o, final(r), len(r))
		}
	}
	if r := n.opt(optStructuredRepl, nil); final(r) != repAck {
		t.Fatalf("STRUCTURED_REPLY: %#x", final(r))
	}
	huge := metaData("", make([]string, maxMetaQueries+1)...)
	longName := string(bytes.Repeat([]byte{'n'}, maxNameLen+1))
	for _, tc := range []struct {
		name string
		opt  uint32
		data []byte
		rep  uint32
		ctx  []string
	}{
		{"list all", optListMetaContext, metaData(""), repAck, []string{"0 base:allocation"}},
		{"list base:", optListMetaContext, metaData("", "base:"), repAck, []string{"0 base:allocation"}},
		{"list exact twice", optListMetaContext, metaData("", "base:allocation", "base:allocation"), repAck, []string{"0 base:allocation"}},
		{"list unknown", optListMetaContext, metaData("", "x-foo:bar", "qemu:dirty-bitmap:a", "base:nothing", "nocolon", ""), repAck, nil},
		{"list other export", optListMetaContext, metaData("other"), repAck, []string{"0 base:allocation"}},
		{"list unknown export", optListMetaContext, metaData("nope"), repErrUnknown, nil},
		{"set base: selects nothing", optSetMetaContext, metaData("", "base:"), repAck, nil},
		{"set unknown", optSetMetaContext, metaData("", "x-foo:bar", "base:Allocation"), repAck, nil},
		{"set none", optSetMetaContext, metaData(""), repAck, nil},
		{"set", optSetMetaContext, metaData("", "x-a:b", "base:allocation"), repAck, []string{fmt.Sprintf("%d base:allocation", baseAllocationID)}},
		{"set unknown export", optSetMetaContext, metaData("nope", "base:allocation"), repErrUnknown, nil},
		{"empty data", optSetMetaContext, nil, repErrInvalid, nil},
		{"name past data", optListMetaContext, []byte{0, 0, 0, 9, 'a', 0, 0, 0, 0}, repErrInvalid, nil},
		{"no query count", optListMetaContext, []byte{0, 0, 0, 1, 'a'}, repErrInvalid, nil},
		{"count past data", optSetMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0}, repErrInvalid, nil},
		{"count huge", optSetMetaContext, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, repErrInvalid, nil},
		{"query past data", optSetMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 20, 'b'}, repErrInvalid, nil},
		{"trailing bytes", optListMetaContext, append(metaData("", "base:"), 0), repErrInvalid, nil},
		{"name too long", optListMetaContext, metaData(longName), repErrInvalid, nil},
		{"query too long", optListMetaContext, metaData("", "base:"+longName), repErrInvalid, nil},
		{"too many queries", optListMetaContext, huge, repErrTooBig, nil},
		{"option too big", optSetMetaContext, make([]byte, maxOptionLen+1), repErrTooBig, nil},
	} {
		r := n.opt(tc.opt, tc.data)
		if final(r) != tc.rep || fmt.Sprint(contexts(r)) != fmt.Sprint(tc.ctx) || len(r) != 1+len(tc.ctx) {
			t.Errorf("%s: replies %#x %v (%d), want %#x %v", tc.name, final(r), contexts(r), len(r), tc.rep, tc.ctx)
		}
	}
	// The last SET failed, which cleared the selection: BLOCK_STATUS is
	// refused although structured replies work.
	cl := n.goTo("")
	if cl.flags&tflagSendDF == 0 {
		t.Errorf("flags %#x lack SEND_DF after structured replies", cl.flags)
	}
	if _, errno := cl.blockStatus(0, 0, 4096); errno != errnoInval {
		t.Errorf("BLOCK_STATUS after a failed SET: errno %d, want EINVAL", errno)
	}
	stillServes(t, sock, patternBytes(71, size))
}

// TestMetaContextOtherExport checks the spec's rule that a selection made
// for one export is not used when another is chosen.
func TestMetaContextOtherExport(t *testing.T) {
	path := makeImage(t, "o.img", 1<<20, 72)
	fd := openFileDisk(t, path)
	srv := oneExport(fd, false)
	srv.Exports["other"] = Export{Name: "other", Backend: fd}
	sock := startServer(t, srv)
	for _, tc := range []struct {
		set, use string
		want     uint32
	}{{"other", "", errnoInval}, {"", "other", errnoInval}, {"other", "other", 0}} {
		n := dialOpts(t, sock)
		n.opt(optStructuredRepl, nil)
		if r := n.opt(optSetMetaContext, metaData(tc.set, metaBaseAllocation)); len(contexts(r)) != 1 {
			t.Fatalf("SET for %q: %v", tc.set, contexts(r))
		}
		cl := n.goTo(tc.use)
		if _, errno := cl.blockStatus(0, 0, 4096); errno != tc.want {
			t.Errorf("SET for %q, GO to %q: errno %d, want %d", tc.set, tc.use, errno, tc.want)
		}
	}
}

// TestPlainClientSeesNoChange checks that a client that negotiates nothing
// gets exactly the old flags and simple replies.
func TestPlainClientSeesNoChange(t *testing.T) {
	path := makeImage(t, "p.img", 1<<20, 73)
	fd := openFileDisk(t, path)
	sock := startServer(t, oneExport(fd, false))
	cl := dialGo(t, sock, "")
	if want := resolveExport(Export{Backend: fd}).flags; cl.flags != want || cl.flags&tflagSendDF != 0 {
		t.Errorf("flags %#x, want %#x without SEND_DF", cl.flags, want)
	}
	cl.send(CmdBlockStatus, 0, 9, 0, 4096, nil)
	if ch := cl.next(); !ch.simple || ch.errno != errnoInval {
		t.Errorf("BLOCK_STATUS without negotiation: %+v, want simple EINVAL", ch)
	}
}

func TestStructuredReadsAndErrors(t *testing.T) {
	const size = 1 << 20
	path := makeImage(t, "s.img", size, 74)
	img := patternBytes(74, size)
	sum := testutil.FileSHA256(t, path)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sock := startServer(t, oneExport(src, false))
	cl := structuredClient(t, sock)

	for _, rd := range []struct {
		off   uint64
		n     uint32
		flags uint16
	}{{0, 4096, 0}, {12345, 70000, cmdFlagDF}, {size - 1, 1, cmdFlagDF}, {0, size, 0}} {
		cl.send(CmdRead, rd.flags, 5, rd.off, rd.n, nil)
		ch := cl.next()
		if ch.simple || ch.typ != replyTypeOffsetData || ch.flags != replyFlagDone || ch.handle != 5 {
			t.Fatalf("READ %d@%d: reply %+v, want one OFFSET_DATA chunk marked done", rd.n, rd.off, ch)
		}
		if got := binary.BigEndian.Uint64(ch.payload); got != rd.off {
			t.Errorf("READ at %d: chunk offset %d", rd.off, got)
		}
		if !bytes.Equal(ch.payload[offsetDataHdrLen:], img[rd.off:rd.off+uint64(rd.n)]) {
			t.Errorf("READ %d@%d: wrong data", rd.n, rd.off)
		}
	}
	// A zero-length read cannot be a data chunk; it is a NONE chunk.
	cl.send(CmdRead, 0, 6, 4096, 0, nil)
	if ch := cl.next(); ch.simple || ch.typ != replyTypeNone || ch.flags != replyFlagDone || len(ch.payload) != 0 {
		t.Errorf("empty READ: %+v", ch)
	}
	// Errors on READ and BLOCK_STATUS are error chunks, never simple
	// replies; other commands may keep simple replies.
	for _, tc := range []struct {
		name   string
		typ    Cmd
		flags  uint16
		off    uint64
		length uint32
		want   uint32
	}{
		{"read past end", CmdRead, 0, size - 10, 4096, errnoInval},
		{"read REQ_ONE", CmdRead, cmdFlagReqOne, 0, 512, errnoInval},
		{"read oversized", CmdRead, cmdFlagDF, 0, MaxBlockSize + 1, errnoInval},
		{"status zero length", CmdBlockStatus, 0, 0, 0, errnoInval},
		{"status past end", CmdBlockStatus, 0, size - 512, 1024, errnoInval},
		{"status offset past end", CmdBlockStatus, 0, size + 512, 1, errnoInval},
		{"status offset overflow", CmdBlockStatus, 0, ^uint64(0) - 10, 4096, errnoInval},
		{"status DF", CmdBlockStatus, cmdFlagDF, 0, 512, errnoInval},
		{"write to read-only source", CmdWrite, 0, 0, 0, errnoPerm},
		{"unknown command", Cmd(42), 0, 0, 512, errnoInval},
	} {
		cl.send(tc.typ, tc.flags, 8, tc.off, tc.length, nil)
		ch := cl.next()
		if ch.handle != 8 || ch.errno != tc.want || (tc.typ == CmdRead || tc.typ == CmdBlockStatus) && (ch.simple || ch.typ != replyTypeError || ch.flags != replyFlagDone) {
			t.Errorf("%s: reply %+v, want errno %d (an error chunk for READ and BLOCK_STATUS)", tc.name, ch, tc.want)
		}
	}
	// The connection still answers, and REQ_ONE gives exactly one
	// descriptor no longer than asked for.
	ds, errno := cl.blockStatus(cmdFlagReqOne, 4096, 512)
	if errno != 0 || len(ds) != 1 || ds[0].Length == 0 || ds[0].Length > 512 {
		t.Errorf("REQ_ONE: errno %d descriptors %v", errno, ds)
	}
	stillServes(t, sock, img)
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("source changed")
	}
}

// TestSTARTTLSDiscardsNegotiation checks the spec's rule that nothing
// negotiated before STARTTLS survives it.
func TestSTARTTLSDiscardsNegotiation(t *testing.T) {
	cfg, _ := selfSignedTLS(t)
	path := makeImage(t, "tlsd.img", 1<<20, 76)
	srv := oneExport(openFileDisk(t, path), false)
	srv.TLSConfig = cfg
	sock := startServer(t, srv)
	upgrade := func(renegotiate bool) *client {
		n := dialOpts(t, sock)
		n.opt(optStructuredRepl, nil)
		if r := n.opt(optSetMetaContext, metaData("", metaBaseAllocation)); len(contexts(r)) != 1 {
			t.Fatalf("SET before STARTTLS: %v", contexts(r))
		}
		if r := n.opt(optStartTLS, nil); final(r) != repAck {
			t.Fatalf("STARTTLS: %#x", final(r))
		}
		tc := tls.Client(n.c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		n.c = tc
		if renegotiate {
			// Accepted again, not refused as a repeat.
			if r := n.opt(optStructuredRepl, nil); final(r) != repAck {
				t.Fatalf("STRUCTURED_REPLY after STARTTLS: %#x", final(r))
			}
		}
		return n.goTo("")
	}
	cl := upgrade(false)
	if cl.flags&tflagSendDF != 0 {
		t.Errorf("flags %#x advertise DF although structured replies were discarded", cl.flags)
	}
	cl.send(CmdBlockStatus, 0, 3, 0, 4096, nil)
	if ch := cl.next(); !ch.simple || ch.errno != errnoInval {
		t.Errorf("BLOCK_STATUS after STARTTLS: %+v, want a simple EINVAL", ch)
	}
	cl = upgrade(true)
	if cl.flags&tflagSendDF == 0 {
		t.Errorf("flags %#x lack DF after renegotiating structured replies", cl.flags)
	}
	if _, errno := cl.blockStatus(0, 0, 4096); errno != errnoInval {
		t.Errorf("BLOCK_STATUS with the selection made before STARTTLS: errno %d, want EINVAL", errno)
	}
}
