package nbd

import (
	"net"
	"sync"
)

// smallReplyMax is the largest reply that carries no payload: an error
// chunk without a message.
const smallReplyMax = structReplyLen + errorChunkLen

// reply is one whole reply waiting for the socket.
type reply struct {
	buf    *[]byte // pooled buffer holding the reply from start on, or nil
	start  int
	budget int64  // bytes charged to the budgets, given back once written
	data   []byte // a reply in memory of its own, or nil
	small  [smallReplyMax]byte
	smallN int
}

func (r *reply) bytes() []byte {
	switch {
	case r.buf != nil:
		return (*r.buf)[r.start:]
	case r.data != nil:
		return r.data
	}
	return r.small[:r.smallN]
}

// replyQueue lets workers hand over finished replies without waiting for
// the socket. Whoever holds the connection's write lock sends everything
// queued with one writev, so under load many replies cost one system call
// and one wake-up of the client instead of one each.
type replyQueue struct {
	mu      sync.Mutex
	pending []reply
	spare   []reply // the other of two arrays that swap roles, so queueing allocates nothing
	iov     net.Buffers
}

// queue hands r over and returns at once unless nobody is writing, in
// which case this goroutine writes; r's buffer then belongs to the queue.
func (c *conn) queue(r *reply) {
	q := &c.replies
	q.mu.Lock()
	q.pending = append(q.pending, *r)
	q.mu.Unlock()
	c.drainReplies()
}

// drainReplies writes queued replies until none are left, or leaves them
// to the goroutine holding the write lock, which looks at the queue again
// after it unlocks, so no reply is stranded.
func (c *conn) drainReplies() {
	q := &c.replies
	for c.wmu.TryLock() {
		c.writeQueued()
		c.wmu.Unlock()
		q.mu.Lock()
		empty := len(q.pending) == 0
		q.mu.Unlock()
		if empty {
			return
		}
	}
}

// writeQueued sends everything queued so far; the caller holds wmu.
func (c *conn) writeQueued() {
	q := &c.replies
	for {
		q.mu.Lock()
		batch := q.pending
		if len(batch) == 0 {
			q.mu.Unlock()
			return
		}
		// pending and spare must never share an array: queue appends to
		// pending while the batch taken from it is being written.
		q.pending, q.spare = q.spare[:0], nil
		q.mu.Unlock()
		iov := q.iov[:0]
		for i := range batch {
			iov = append(iov, batch[i].bytes())
		}
		q.iov = iov
		// After a failed write the stream is unusable; buffers are still
		// given back so the request loop cannot starve on its budget.
		if !c.brokeErr.Load() {
			if err := c.writeBuffers(iov); err != nil {
				c.broken()
			}
		}
		var charged int64
		for i := range batch {
			if b := batch[i].buf; b != nil {
				c.srv.pool.put(b)
			}
			charged += batch[i].budget
			batch[i] = reply{}
		}
		c.release(charged)
		clear(q.iov[:cap(q.iov)])
		// Only the writer, holding wmu, touches spare outside mu.
		q.spare = batch[:0]
	}
}
