package nbd

import "encoding/binary"

// optStructuredReply answers NBD_OPT_STRUCTURED_REPLY; false means the
// connection is dead.
func (c *conn) optStructuredReply(data []byte) bool {
	// The option carries no data, and the spec lets a server refuse a
	// repeated state-changing option rather than guess what was meant.
	if len(data) != 0 || c.structured {
		return c.optReply(optStructuredRepl, repErrInvalid, nil)
	}
	c.structured = true
	return c.optReply(optStructuredRepl, repAck, nil)
}

// metaRequest is the decoded data of NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. Strings alias the option data.
type metaRequest struct {
	export  string
	queries []string
}

// decodeMetaRequest parses export name, query count and queries, checking
// every length against the bytes present before using it. It returns the
// option reply type to send on failure, or repAck.
func decodeMetaRequest(data []byte) (metaRequest, uint32) {
	var m metaRequest
	rest := data
	next := func() ([]byte, bool) {
		if len(rest) < metaLenFieldLen {
			return nil, false
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-metaLenFieldLen) || n > maxNameLen {
			return nil, false
		}
		s := rest[metaLenFieldLen : metaLenFieldLen+n]
		rest = rest[metaLenFieldLen+n:]
		return s, true
	}
	name, ok := next()
	if !ok || len(rest) < metaLenFieldLen {
		return m, repErrInvalid
	}
	m.export = string(name)
	count := binary.BigEndian.Uint32(rest)
	rest = rest[metaLenFieldLen:]
	// Each query needs at least its length field, so a count the data
	// cannot hold is refused before anything is allocated for it.
	if uint64(count) > uint64(len(rest)/metaLenFieldLen) {
		return m, repErrInvalid
	}
	if count > maxMetaQueries {
		return m, repErrTooBig
	}
	m.queries = make([]string, 0, count)
	for range count {
		q, ok := next()
		if !ok {
			return m, repErrInvalid
		}
		m.queries = append(m.queries, string(q))
	}
	if len(rest) != 0 {
		return m, repErrInvalid
	}
	return m, repAck
}

// optMetaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT for the one context served, base:allocation;
// false means the connection is dead.
func (c *conn) optMetaContext(opt uint32, data []byte) bool {
	if opt == optSetMetaContext {
		// SET replaces the selection even when it fails (spec).
		c.metaExport, c.metaAlloc = "", false
	}
	// Without structured replies there is no way to send block status, and
	// old clients must see the server exactly as before.
	if !c.structured {
		return c.optReply(opt, repErrInvalid, nil)
	}
	m, rep := decodeMetaRequest(data)
	if rep != repAck {
		return c.optReply(opt, rep, nil)
	}
	if _, ok := c.srv.Exports[m.export]; !ok {
		return c.optReply(opt, repErrUnknown, nil)
	}
	found := false
	for _, q := range m.queries {
		// Unknown namespaces and leaf names are ignored (spec); "base:" is
		// a wildcard when listing and selects nothing when setting.
		found = found || q == metaBaseAllocation || (opt == optListMetaContext && q == metaNamespaceBase)
	}
	if opt == optListMetaContext && len(m.queries) == 0 {
		found = true
	}
	if found {
		// Context ids in LIST replies are reserved and zero.
		id := uint32(0)
		if opt == optSetMetaContext {
			id = baseAllocationID
		}
		b := make([]byte, metaContextIDLen, metaContextIDLen+len(metaBaseAllocation))
		binary.BigEndian.PutUint32(b, id)
		b = append(b, metaBaseAllocation...)
		if !c.optReply(opt, repMetaContext, b) {
			return false
		}
	}
	if opt == optSetMetaContext {
		c.metaExport, c.metaAlloc = m.export, found
	}
	return c.optReply(opt, repAck, nil)
}
