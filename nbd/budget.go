package nbd

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// byteBudget is a counting semaphore on bytes that bounds what one
// connection buffers: every request is charged before it is read or served
// and its reply gives the charge back once written. The request reader
// blocks in acquire, which pushes back on the client instead of buffering
// without limit.
type byteBudget struct {
	limit   int64
	avail   atomic.Int64
	waiting atomic.Int32 // acquire calls asleep on cond
	mu      sync.Mutex
	cond    sync.Cond
}

func (b *byteBudget) init(n int64) {
	b.limit = n
	b.avail.Store(n)
	b.cond.L = &b.mu
}

// tryAcquire takes n bytes if they are free now. It is lock-free: it runs
// for every request.
func (b *byteBudget) tryAcquire(n int64) bool {
	for {
		a := b.avail.Load()
		if a < n {
			return false
		}
		if b.avail.CompareAndSwap(a, a-n) {
			return true
		}
	}
}

// acquire waits until n bytes are free and takes them; n must not exceed
// the limit.
func (b *byteBudget) acquire(n int64) {
	if b.tryAcquire(n) {
		return
	}
	b.mu.Lock()
	// Announced before trying again, so a release that comes after the
	// failed try sees a waiter and wakes it.
	b.waiting.Add(1)
	for !b.tryAcquire(n) {
		b.cond.Wait()
	}
	b.waiting.Add(-1)
	b.mu.Unlock()
}

func (b *byteBudget) release(n int64) {
	b.avail.Add(n)
	if b.waiting.Load() > 0 {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	}
}

// sharedBudget is the server-wide byte budget that every connection's
// charges also come from. It never blocks: a connection that finds it spent
// serves its request directly (serveDirect) instead of waiting for other
// connections, whose clients may never read their replies.
type sharedBudget struct {
	avail atomic.Int64
}

func (b *sharedBudget) tryTake(n int64) bool {
	for {
		a := b.avail.Load()
		if a < n {
			return false
		}
		if b.avail.CompareAndSwap(a, a-n) {
			return true
		}
	}
}

func (b *sharedBudget) give(n int64) { b.avail.Add(n) }

// bufPool hands out payload buffers in power-of-two size classes with room
// for a reply header in front, so steady-state requests allocate nothing.
type bufPool struct {
	classes [maxClass + 1]sync.Pool
}

const (
	minClass = 12 // 4 KiB
	maxClass = 25 // 32 MiB == MaxBlockSize
)

// bufSize is the size of the buffer get(n) returns, headroom aside.
func bufSize(n int) int64 {
	k := minClass
	if n > 1<<minClass {
		k = bits.Len(uint(n - 1))
	}
	return 1 << k
}

// get returns a buffer of length headroom+n; n must be at most MaxBlockSize.
func (p *bufPool) get(n int) *[]byte {
	k := minClass
	if n > 1<<minClass {
		k = bits.Len(uint(n - 1))
	}
	if v := p.classes[k].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:replyHeadroom+n]
		return b
	}
	b := make([]byte, replyHeadroom+n, replyHeadroom+1<<k)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	k := bits.Len(uint(cap(*b) - replyHeadroom - 1))
	if k < minClass || k > maxClass || cap(*b)-replyHeadroom != 1<<k {
		return
	}
	p.classes[k].Put(b)
}
